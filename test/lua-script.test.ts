/**
 * The Lua script against a real Redis: it must give exactly the answers of the
 * pure `leaseStep`, keep key names hashed and bounded, expire idle buckets, and
 * survive SCRIPT FLUSH.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type GlobalBucketState, type LeaseReport, leaseStep } from '../src/bucket/global-bucket.js';
import { bucketKeyName, createKeyHasher } from '../src/store/key-name.js';
import { RedisStore } from '../src/store/redis-store.js';
import { RedisProcess } from './helpers/redis-server.js';

let redis: RedisProcess;
let store: RedisStore;
let inspect: Redis;
const PREFIX = 'luatest:';

beforeAll(async () => {
  redis = await RedisProcess.start();
  store = new RedisStore({ url: redis.url, commandTimeoutMs: 1000, keyPrefix: PREFIX });
  expect(await store.ready(5000)).toBe(true);
  inspect = redis.client();
});
afterAll(async () => {
  await store.close();
  inspect.disconnect();
  await redis.stop();
});

function parseState(raw: string): GlobalBucketState {
  const [t, u, l, d, e] = raw.split(' ').map(Number) as [number, number, number, number, number];
  return { tokens: t, updatedMs: u, leased: l, leaseDeadlineMs: u + d, epochMs: e < 0 ? 0 : u - e };
}

describe('lua/lease.lua', () => {
  it('answers exactly like leaseStep over a random sequence of leases, renewals and returns', async () => {
    const policy = { capacity: 25, refillPerSec: 40 };
    let model: GlobalBucketState | undefined;
    let held: { grantedAtMs: number; registered: number } | undefined;
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let i = 0; i < 300; i++) {
      const keep = rnd() > 0.2;
      let report: LeaseReport | undefined;
      if (held) {
        const unused = Math.floor(rnd() * (held.registered + 1));
        // Up to 20 groups (the script reads 16), oldest first.
        const groups: [number, number][] = [];
        let left = held.registered - unused;
        let age = Math.floor(rnd() * 60);
        while (left > 0) {
          const c = 1 + Math.floor(rnd() * Math.min(left, 3));
          groups.push([age, c]);
          left -= c;
          age = Math.max(0, age - Math.floor(rnd() * 5));
        }
        report = { ...held, unused, spends: groups, keep };
      }
      const req = { need: Math.floor(rnd() * 6), extra: Math.floor(rnd() * 10), leaseTtlMs: 20 + Math.floor(rnd() * 200), report };
      const reply = await store.lease('diff-client', policy, req);
      const expected = leaseStep(model, policy, req, reply.grantedAtMs);
      expect(reply).toEqual(expected.reply);
      const stored = await inspect.get(bucketKeyName(PREFIX, 'diff-client', createKeyHasher()));
      model = parseState(stored as string);
      expect(model.tokens).toBeCloseTo(expected.state.tokens, 6);
      expect(model.leased).toBe(expected.state.leased);
      const registered = (reply.kept && report ? report.unused : 0) + reply.granted;
      held = registered > 0 ? { grantedAtMs: reply.grantedAtMs, registered } : undefined;
      if (rnd() < 0.3) await new Promise((r) => setTimeout(r, rnd() * 40));
    }
  });

  it('stores one short key per client, named by a hash, never the raw API key, expiring when full', async () => {
    const apiKey = 'sk_live_SECRET-api-key-value';
    await store.lease(apiKey, { capacity: 40, refillPerSec: 10 }, { need: 5, extra: 0, leaseTtlMs: 1000 });
    const keys = await inspect.keys(`${PREFIX}*`);
    const mine = keys.filter((k) => k === bucketKeyName(PREFIX, apiKey, createKeyHasher()));
    expect(mine).toHaveLength(1);
    expect(keys.some((k) => k.includes('SECRET'))).toBe(false);
    expect(mine[0]).toMatch(/^luatest:\{[A-Za-z0-9_-]{22}\}$/);
    const pttl = await inspect.pttl(mine[0] as string);
    // 1 s lease + 0.5 s to refill 5 tokens + 1 s margin
    expect(pttl).toBeGreaterThan(2000);
    expect(pttl).toBeLessThanOrEqual(2500);
    // The value stays within Redis's embedded-string class (at most 44 bytes), whatever the
    // Redis version's MEMORY USAGE accounting (about 130 bytes per key on 7.0 with this prefix).
    expect(await inspect.strlen(mine[0] as string)).toBeLessThanOrEqual(44);
    // A 10 KB key still makes a 32-character key name.
    await store.lease('k'.repeat(10_000), { capacity: 40, refillPerSec: 10 }, { need: 1, extra: 0, leaseTtlMs: 1000 });
    expect(Math.max(...(await inspect.keys(`${PREFIX}*`)).map((k) => k.length))).toBe(PREFIX.length + 24);
  });

  it('keeps working after SCRIPT FLUSH (EVALSHA falls back to EVAL)', async () => {
    const policy = { capacity: 40, refillPerSec: 10 };
    expect((await store.lease('flush', policy, { need: 1, extra: 0, leaseTtlMs: 1000 })).granted).toBe(1);
    await inspect.script('FLUSH');
    expect((await store.lease('flush', policy, { need: 1, extra: 0, leaseTtlMs: 1000 })).granted).toBe(1);
  });

  it('decides with Redis TIME, never the caller clock: a caller clock minutes ahead refills nothing', async () => {
    const policy = { capacity: 3, refillPerSec: 0.01 };
    expect((await store.lease('clock', policy, { need: 3, extra: 0, leaseTtlMs: 60_000 })).granted).toBe(3);
    // The caller's clocks jump ten minutes ahead (timers stay real, so ioredis runs as usual).
    vi.useFakeTimers({ now: Date.now() + 600_000, toFake: ['Date', 'performance'] });
    try {
      const reply = await store.lease('clock', policy, { need: 1, extra: 0, leaseTtlMs: 60_000 });
      expect(reply.granted).toBe(0); // ten minutes of caller time would have refilled 6 tokens
      const [sec] = (await inspect.time()) as unknown as [string, string];
      expect(Math.abs(reply.grantedAtMs - Number(sec) * 1000)).toBeLessThan(2000);
      expect(Date.now() - reply.grantedAtMs).toBeGreaterThan(590_000);
    } finally {
      vi.useRealTimers();
    }
  });
});
