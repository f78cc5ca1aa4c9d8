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
 *
 * `match` receives each command's arguments as MONITOR prints them (Redis's
 * escaped form: quotes, backslashes and non-printable bytes escaped), which for
 * ASCII key names and hashes is the argument itself.
 */
import { type Socket, connect } from 'node:net';

export type CommandCounter = { count(): number; matching(): number; stop(): Promise<void> };

/** A command as a RESP array (safe for any bytes in its arguments, unlike the inline form). */
function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** `match` picks out the commands of interest (say, those naming one client's key). */
export async function countCommands(url: string, match?: (args: string[]) => boolean): Promise<CommandCounter> {
  const u = new URL(url);
  if (u.protocol !== 'redis:') throw new Error(`countCommands: only redis:// URLs (got ${u.protocol})`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const socket: Socket = connect({ host, port: Number(u.port || 6379) });
  socket.setEncoding('latin1');
  let n = 0;
  let m = 0;
  let buf = '';
  let monitoring = false;
  let stopped = false;
  const password = u.password ? decodeURIComponent(u.password) : '';
  // With a password, AUTH's +OK comes first, then MONITOR's.
  let oks = password ? 2 : 1;
  let warned = false;
  const warn = (msg: string) => {
    if (warned) return;
    warned = true;
    console.error(`MONITOR connection: ${msg.slice(0, 160)} (commands counted from here on may be missing)`);
  };
  // A monitored line: +<time> [<db> <source>] "<command>" "<arg>" ...
  const onLine = (line: string) => {
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
    // Any failure before MONITOR's +OK closes the socket: nothing keeps streaming to it.
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`MONITOR on ${u.host}: no +OK within 5 s`)), 5000);
    socket.once('error', fail);
    socket.once('close', () => {
      if (!monitoring) fail(new Error(`MONITOR on ${u.host}: connection closed before +OK`));
    });
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\r\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        nl = buf.indexOf('\r\n');
        if (monitoring) {
          onLine(line);
        } else if (line === '+OK' && --oks === 0) {
          monitoring = true;
          clearTimeout(timer);
          resolve();
        } else if (line.startsWith('-')) {
          fail(new Error(`MONITOR refused: ${line.slice(1)}`));
          return;
        }
      }
    });
    const user = u.username ? decodeURIComponent(u.username) : '';
    const auth = password ? resp(user ? ['AUTH', user, password] : ['AUTH', password]) : '';
    socket.write(`${auth}${resp(['MONITOR'])}`);
  });
  socket.on('error', (err) => warn(err.message));
  socket.on('close', () => {
    if (!stopped) warn('connection closed');
  });
  return {
    count: () => n,
    matching: () => m,
    stop: async () => {
      stopped = true;
      socket.destroy();
    },
  };
}
