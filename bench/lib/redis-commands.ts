/**
 * Counts the commands clients send to Redis with MONITOR. Commands a script runs
 * inside Redis are reported by MONITOR with the source "lua" and are not counted:
 * a script call counts once, as the service sent it.
 */
import { Redis } from 'ioredis';

export type CommandCounter = { count(): number; matching(): number; stop(): Promise<void> };

/** `match` picks out the commands of interest (say, those naming one client's key). */
export async function countCommands(url: string, match?: (args: string[]) => boolean): Promise<CommandCounter> {
  const client = new Redis(url);
  const monitor = await client.monitor();
  let n = 0;
  let m = 0;
  // ioredis can lose track of a MONITOR stream under load ("Command queue state error",
  // emitted as an 'error' event): without a listener that would kill the whole bench. The
  // count then misses what followed, which is said on stderr rather than hidden.
  let warned = false;
  const onError = (err: Error) => {
    if (warned) return;
    warned = true;
    console.error(`MONITOR connection error (commands counted from here on may be missing): ${err.message.slice(0, 120)}`);
  };
  client.on('error', onError);
  monitor.on('error', onError);
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua') return;
    n++;
    if (match?.(args)) m++;
  });
  return {
    count: () => n,
    matching: () => m,
    stop: async () => {
      monitor.disconnect();
      client.disconnect();
    },
  };
}
