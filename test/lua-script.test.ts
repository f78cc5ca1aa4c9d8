/**
 * The Lua script against a real Redis: it must give exactly the answers of the
 * pure `leaseStep`, keep key names hashed and bounded, expire idle buckets, and
 * survive SCRIPT FLUSH.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { algorithmOf } from '../src/algorithms/registry.js';
import type { LeaseReport, Policy } from '../src/core/types.js';
import { type BucketState, leaseStep } from '../src/protocol/lease-step.js';
import { decodeBucketValue } from '../src/store/bucket-format.js';
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

const tb = (capacity: number, refillPerSec: number, name = 'p'): Policy => ({ name, algorithm: 'token_bucket', capacity, refillPerSec });

describe('the lease script (lua/algorithms/<name>.lua + lua/protocol.lua)', () => {
  it.each([
    tb(25, 40),
    { name: 'g', algorithm: 'gcra', capacity: 25, refillPerSec: 30 },
    // Short windows, so the sequence crosses many of them; 300 ms is not a divisor of 1 s.
    { name: 'f', algorithm: 'fixed_window', capacity: 25, refillPerSec: 25 / 0.3, windowMs: 300 },
    { name: 's', algorithm: 'sliding_window', capacity: 25, refillPerSec: 25 / 0.3, windowMs: 300 },
  ] as Policy[])('answers exactly like leaseStep over a random sequence of leases, renewals, returns and generation rolls ($algorithm)', async (policy) => {
    const alg = algorithmOf(policy);
    const key = bucketKeyName(PREFIX, 'diff-client', policy, createKeyHasher());
    let model: BucketState<unknown> | undefined;
    // Three holders (nodes) with one lease each, so leases of several generations coexist.
    const held: ({ grantedAtMs: number; registered: number } | undefined)[] = [undefined, undefined, undefined];
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    let rolls = 0;
    for (let i = 0; i < 400; i++) {
      const who = Math.floor(rnd() * held.length);
      const h = held[who];
      const keep = rnd() > 0.2;
      let report: LeaseReport | undefined;
      if (h) {
        const unused = Math.floor(rnd() * (h.registered + 1));
        // Up to 20 groups (the script reads 16), oldest first.
        const groups: [number, number][] = [];
        let left = h.registered - unused;
        let age = Math.floor(rnd() * 60);
        while (left > 0) {
          const c = 1 + Math.floor(rnd() * Math.min(left, 3));
          groups.push([age, c]);
          left -= c;
          age = Math.max(0, age - Math.floor(rnd() * 5));
        }
        report = { ...h, unused, spends: groups, keep };
      }
      const req = { need: Math.floor(rnd() * 6), extra: Math.floor(rnd() * 10), leaseTtlMs: 20 + Math.floor(rnd() * 100), report };
      const reply = await store.lease('diff-client', policy, req);
      const stored = decodeBucketValue((await inspect.getBuffer(key)) as Buffer, alg) as BucketState<unknown>;
      // The step's time is what the script stored as updatedMs.
      const expected = leaseStep(alg, model, policy, req, stored.updatedMs);
      expect(reply).toEqual(expected.reply);
      expect(stored.alg).toEqual(expected.state.alg);
      expect(stored.cur.leased).toBe(expected.state.cur.leased);
      expect(stored.prev.leased).toBe(expected.state.prev.leased);
      expect(stored.cur.startMs).toBe(expected.state.cur.startMs);
      if (model && stored.cur.startMs !== model.cur.startMs) rolls++;
      model = stored;
      const registered = (reply.kept && report ? report.unused : 0) + reply.granted;
      held[who] = registered > 0 ? { grantedAtMs: reply.grantedAtMs, registered } : undefined;
      if (rnd() < 0.3) await new Promise((r) => setTimeout(r, rnd() * 40));
    }
    expect(rolls).toBeGreaterThan(5); // generations really rolled during the run
  });

  it('stores one short key per client, named by a hash, never the raw API key, expiring when full', async () => {
    const apiKey = 'sk_live_SECRET-api-key-value';
    const policy = tb(40, 10, 'default');
    await store.lease(apiKey, policy, { need: 5, extra: 0, leaseTtlMs: 1000 });
    const keys = await inspect.keys(`${PREFIX}*`);
    const mine = keys.filter((k) => k === bucketKeyName(PREFIX, apiKey, policy, createKeyHasher()));
    expect(mine).toHaveLength(1);
    expect(keys.some((k) => k.includes('SECRET'))).toBe(false);
    expect(mine[0]).toMatch(/^luatest:\{[A-Za-z0-9_-]{22}\}:tb:default$/);
    const pttl = await inspect.pttl(mine[0] as string);
    // 1 s lease + 0.5 s to refill 5 tokens + 1 s margin
    expect(pttl).toBeGreaterThan(2000);
    expect(pttl).toBeLessThanOrEqual(2500);
    // The value stays within Redis's embedded-string class (at most 44 bytes), whatever the
    // Redis version's MEMORY USAGE accounting (about 130 bytes per key on 7.0 with this prefix).
    expect(await inspect.strlen(mine[0] as string)).toBeLessThanOrEqual(44);
    // A 10 KB key still makes a 32-character key name.
    await store.lease('k'.repeat(10_000), policy, { need: 1, extra: 0, leaseTtlMs: 1000 });
    expect(Math.max(...(await inspect.keys(`${PREFIX}*`)).map((k) => k.length))).toBe(PREFIX.length + 24 + ':tb:default'.length);
  });

  it('hashes a client id once per key and policy object, not per call, and names the same key either way', async () => {
    let hashed = 0;
    const hasher = createKeyHasher('memo-secret');
    const counting = new RedisStore({ url: redis.url, commandTimeoutMs: 1000, keyPrefix: PREFIX, hashKey: (id) => (hashed++, hasher(id)) });
    try {
      expect(await counting.ready(5000)).toBe(true);
      const p1 = tb(40, 10, 'memo');
      const memo = {};
      for (let i = 0; i < 3; i++) await counting.lease('memo-client', p1, { need: 1, extra: 0, leaseTtlMs: 1000, memo });
      expect(hashed).toBe(1);
      // A new policy object (a reload, maybe another algorithm): named again.
      const p2 = { ...p1, algorithm: 'gcra' as const };
      await counting.lease('memo-client', p2, { need: 1, extra: 0, leaseTtlMs: 1000, memo });
      expect(hashed).toBe(2);
      const names = (await inspect.keys(`${PREFIX}*`)).filter((k) => k.endsWith(':memo'));
      expect(names.sort()).toEqual([bucketKeyName(PREFIX, 'memo-client', p2, hasher), bucketKeyName(PREFIX, 'memo-client', p1, hasher)].sort());
      // The bucket kept its count across the memoised calls: 3 of 40 taken.
      expect((await counting.peek('memo-client', p1))?.leased).toBe(3);
    } finally {
      await counting.close();
    }
  });

  it('answers leases when the call observer (metrics) throws, and answers a frozen Redis with a timeout by the deadline', async () => {
    let observed = 0;
    const throwing = new RedisStore({
      url: redis.url,
      commandTimeoutMs: 200,
      keyPrefix: PREFIX,
      onCall: () => {
        observed++;
        throw new Error('metrics bug');
      },
    });
    try {
      expect(await throwing.ready(5000)).toBe(true);
      const reply = await throwing.lease('observer-client', tb(40, 10, 'observer'), { need: 1, extra: 0, leaseTtlMs: 1000 });
      expect(reply.granted).toBe(1);
      expect(observed).toBe(1);
      redis.freeze();
      const t0 = performance.now();
      const late = throwing.lease('observer-client', tb(40, 10, 'observer'), { need: 1, extra: 0, leaseTtlMs: 1000 });
      // The store's own deadline (ioredis's per-command timeout is not set).
      await expect(late).rejects.toThrow(/no answer within 200 ms/);
      // The deadline bounds the wait (with room for a busy machine's timers), and the
      // observer saw the timeout too.
      expect(performance.now() - t0).toBeLessThan(200 + 1500);
      expect(observed).toBe(2);
    } finally {
      redis.thaw();
      await throwing.close();
    }
  });

  it('fails each batch of a frozen Redis at its own deadline, never before it, with one timer for all of them', async () => {
    const bounded = new RedisStore({ url: redis.url, commandTimeoutMs: 300, keyPrefix: PREFIX });
    try {
      expect(await bounded.ready(5000)).toBe(true);
      await bounded.lease('deadline-warm', tb(40, 10, 'deadline'), { need: 1, extra: 0, leaseTtlMs: 1000 });
      redis.freeze();
      // Three batches sent 100 ms apart: the shared timer, armed for the first, must fail the
      // later ones at their own deadlines, not with the first.
      const settledAfter = (i: number) => {
        const t0 = performance.now();
        return bounded.lease(`deadline-${i}`, tb(40, 10, 'deadline'), { need: 1, extra: 0, leaseTtlMs: 1000 }).then(
          () => Number.NaN,
          (err: Error) => {
            expect(err.message).toMatch(/no answer within 300 ms/);
            return performance.now() - t0;
          },
        );
      };
      const waits: Promise<number>[] = [];
      for (let i = 0; i < 3; i++) {
        waits.push(settledAfter(i));
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const ms of await Promise.all(waits)) {
        // Never early (the timer may round to 1 ms), and bounded (room for a busy machine's timers).
        expect(ms).toBeGreaterThanOrEqual(298);
        expect(ms).toBeLessThan(300 + 1500);
      }
      redis.thaw();
      // Redis back: a call is answered, not failed by a timer left armed.
      const reply = await bounded.lease('deadline-after', tb(40, 10, 'deadline'), { need: 1, extra: 0, leaseTtlMs: 1000 });
      expect(reply.granted).toBe(1);
    } finally {
      redis.thaw();
      await bounded.close();
    }
  });

  it('carries the calls of one event-loop turn in one script call per algorithm, each key answered as if alone', async () => {
    const scriptCalls = async () => {
      const info = await inspect.info('commandstats');
      return [...info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const fixed: Policy = { name: 'f', algorithm: 'fixed_window', capacity: 10, refillPerSec: 10, windowMs: 60_000 };
    // Warm the scripts first (a first EVALSHA may be answered NOSCRIPT and sent again as EVAL).
    await Promise.all([store.lease('warm', tb(5, 1), { need: 1, extra: 0, leaseTtlMs: 1000 }), store.lease('warm', fixed, { need: 1, extra: 0, leaseTtlMs: 1000 })]);
    const before = await scriptCalls();
    const replies = await Promise.all([
      ...Array.from({ length: 120 }, (_, i) => store.lease(`batch-${i}`, tb(5, 1), { need: 1 + (i % 3), extra: 0, leaseTtlMs: 1000 })),
      ...Array.from({ length: 30 }, (_, i) => store.lease(`batch-${i}`, fixed, { need: 12, extra: 0, leaseTtlMs: 1000 })),
    ]);
    expect(await scriptCalls()).toBe(before + 2);
    // Each key its own step: what it needed of a fresh bucket of 5, and 10 of a fixed window of 10.
    expect(replies.slice(0, 120).map((r) => r.granted)).toEqual(Array.from({ length: 120 }, (_, i) => 1 + (i % 3)));
    expect(replies.slice(120).every((r) => r.granted === 10 && r.remaining === 0)).toBe(true);
  });

  it('answers every call of a batch through leaseTo exactly once, even when one caller\'s callback throws', async () => {
    const outcomes: (number | string)[][] = Array.from({ length: 20 }, () => []);
    const all = new Promise<void>((resolve) => {
      let left = 20;
      for (let i = 0; i < 20; i++) {
        store.leaseTo(`to-${i}`, tb(5, 1, 'to'), { need: 1, extra: 0, leaseTtlMs: 1000 }, (err, reply) => {
          outcomes[i]?.push(err ? err.message : (reply?.granted ?? -1));
          if (--left === 0) resolve();
          // A caller's bug in the middle of the batch: the calls after it are still answered.
          if (i === 3) throw new Error('caller bug');
        });
      }
    });
    await all;
    // Nothing calls back a second time, however late.
    await new Promise((r) => setTimeout(r, 50));
    expect(outcomes).toEqual(Array.from({ length: 20 }, () => [1]));
  });

  it('keeps working after SCRIPT FLUSH (EVALSHA falls back to EVAL)', async () => {
    const policy = tb(40, 10);
    expect((await store.lease('flush', policy, { need: 1, extra: 0, leaseTtlMs: 1000 })).granted).toBe(1);
    await inspect.script('FLUSH');
    expect((await store.lease('flush', policy, { need: 1, extra: 0, leaseTtlMs: 1000 })).granted).toBe(1);
  });

  it('decides with Redis TIME, never the caller clock: a caller clock minutes ahead refills nothing', async () => {
    const policy = tb(3, 0.01);
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
