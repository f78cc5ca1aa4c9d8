/**
 * Counts the commands clients send to Redis with MONITOR. Commands a script runs
 * inside Redis are reported by MONITOR with the source "lua" and are not counted:
 * a script call counts once, as the service sent it.
 */
import { Redis } from 'ioredis';

export type CommandCounter = { count(): number; stop(): Promise<void> };

export async function countCommands(url: string): Promise<CommandCounter> {
  const client = new Redis(url);
  const monitor = await client.monitor();
  let n = 0;
  monitor.on('monitor', (_time: string, _args: string[], source: string) => {
    if (source !== 'lua') n++;
  });
  return {
    count: () => n,
    stop: async () => {
      monitor.disconnect();
      client.disconnect();
    },
  };
}
