/** What the bench reads from its own redis-server: INFO fields, CPU time, memory per key. */
import type { Redis } from 'ioredis';

export async function redisInfo(r: Redis, section: string, field: string): Promise<number> {
  const info = await r.info(section);
  return Number(new RegExp(`${field}:([\\d.]+)`).exec(info)?.[1] ?? 0);
}

/** Seconds of CPU (user + system) the server has used since it started. */
export async function redisCpuSeconds(r: Redis): Promise<number> {
  return (await redisInfo(r, 'cpu', 'used_cpu_sys')) + (await redisInfo(r, 'cpu', 'used_cpu_user'));
}

export type KeyMemory = {
  /** Keys measured. */
  sampled: number;
  /** Mean `MEMORY USAGE` (bytes): the value, the key name and Redis's overhead. */
  memoryUsage: number;
  /** Mean `STRLEN` of the string values among them (NaN when none is a string). */
  valueBytes: number;
};

/**
 * Samples up to `limit` keys with SCAN (those matching the glob `match`, if given,
 * and not `skip`ped) and averages their `MEMORY USAGE` and value length.
 */
export async function keyMemory(r: Redis, o: { limit: number; match?: string; skip?: (key: string) => boolean }): Promise<KeyMemory> {
  const sample: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = o.match ? await r.scan(cursor, 'MATCH', o.match, 'COUNT', 500) : await r.scan(cursor, 'COUNT', 500);
    cursor = next;
    for (const k of keys) if (!o.skip?.(k) && sample.length < o.limit) sample.push(k);
  } while (cursor !== '0' && sample.length < o.limit);
  let measured = 0;
  let usage = 0;
  let length = 0;
  let strings = 0;
  for (const k of sample) {
    const bytes = await r.memory('USAGE', k);
    if (bytes === null) continue; // expired since the scan
    measured++;
    usage += Number(bytes);
    if ((await r.type(k)) === 'string') {
      length += await r.strlen(k);
      strings++;
    }
  }
  return {
    sampled: measured,
    memoryUsage: measured ? usage / measured : 0,
    valueBytes: strings ? length / strings : Number.NaN,
  };
}
