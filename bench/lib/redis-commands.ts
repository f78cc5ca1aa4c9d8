/**
 * Counts the commands clients send to Redis with MONITOR. Commands a script runs
 * inside Redis are reported by MONITOR with the source "lua" and are not counted:
 * a script call counts once, as the service sent it.
 *
 * MONITOR is spoken over a plain socket, not ioredis's `monitor()`: ioredis marks
 * its connection as monitoring only in a promise callback after MONITOR's "+OK",
 * so monitored lines that arrive in the same read as the "+OK" are taken for
 * replies to commands it never sent ("Command queue state error", emitted on an
 * instance whose only error listener is its connect promise's): the bench smoke
 * run died of it on a busy machine. Here every line after "+OK" is a monitored
 * command, whatever chunk it came in.
 */
import { type Socket, connect } from 'node:net';

export type CommandCounter = { count(): number; matching(): number; stop(): Promise<void> };

/** `match` picks out the commands of interest (say, those naming one client's key). */
export async function countCommands(url: string, match?: (args: string[]) => boolean): Promise<CommandCounter> {
  const u = new URL(url);
  const socket: Socket = connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) });
  socket.setEncoding('latin1');
  let n = 0;
  let m = 0;
  let buf = '';
  let monitoring = false;
  // With a password, AUTH's +OK comes first, then MONITOR's.
  let oks = u.password ? 2 : 1;
  let warned = false;
  const warn = (msg: string) => {
    if (warned) return;
    warned = true;
    console.error(`MONITOR connection: ${msg.slice(0, 160)} (commands counted from here on may be missing)`);
  };
  // A monitored line: +<time> [<db> <source>] "<command>" "<arg>" ...
  const onLine = (line: string) => {
    if (!monitoring) return;
    const open = line.indexOf('[');
    const close = line.indexOf(']', open);
    if (open < 0 || close < 0) return;
    if (line.slice(open + 1, close).endsWith(' lua')) return;
    n++;
    if (match) {
      const first = line.indexOf('"', close);
      const args = first < 0 ? [] : line.slice(first + 1, -1).split('" "');
      if (match(args)) m++;
    }
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`MONITOR on ${u.host}: no +OK within 5 s`)), 5000);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\r\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        nl = buf.indexOf('\r\n');
        if (!monitoring) {
          if (line === '+OK' && --oks === 0) {
            monitoring = true;
            clearTimeout(timer);
            resolve();
          } else if (line.startsWith('-')) {
            clearTimeout(timer);
            reject(new Error(`MONITOR refused: ${line.slice(1)}`));
          }
          continue;
        }
        onLine(line);
      }
    });
    const auth = u.password ? `AUTH ${decodeURIComponent(u.username || 'default')} ${decodeURIComponent(u.password)}\r\n` : '';
    socket.write(`${auth}MONITOR\r\n`);
  });
  socket.on('error', (err) => warn(err.message));
  return {
    count: () => n,
    matching: () => m,
    stop: async () => {
      socket.destroy();
    },
  };
}
