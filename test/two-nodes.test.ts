/**
 * Two service instances sharing one real Redis, over real HTTP: the global limit
 * holds across nodes, a split burst is not under-admitted, and a node returns its
 * unused tokens when it shuts down.
 */
import { describe, expect, it } from 'vitest';
import type { BucketState } from '../src/protocol/lease-step.js';
import { leasedOf, readBucket } from './helpers/bucket-state.js';
import { sharedRedis } from './helpers/shared-redis.js';
import { type Node, hit, startNode } from './helpers/service.js';

const fx = sharedRedis();

async function twoNodes(env: Record<string, string> = {}): Promise<[Node, Node]> {
  // A deadline no load on this machine reaches: these tests check the guarantee with Redis
  // healthy, and a timed-out call would decide in degraded mode (per-node shares).
  const a = await startNode({ REDIS_URL: fx.redis.url, REDIS_TIMEOUT_MS: '2000', ...env });
  const b = await startNode({ REDIS_URL: fx.redis.url, REDIS_TIMEOUT_MS: '2000', ...env });
  fx.nodes.push(a, b);
  return [a, b];
}

describe('two nodes, one Redis', () => {
  it('a simultaneous burst of 50 split across both admits between capacity - 2 and capacity, every time', async () => {
    const [a, b] = await twoNodes();
    // Several keys: the first burst on fresh connections arrives slower than later ones.
    for (let k = 0; k < 10; k++) {
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => hit(i % 2 === 0 ? a : b, `burst-key-${k}`)));
      const elapsedSec = (performance.now() - t0) / 1000;
      const ok = results.filter((r) => r.status === 200).length;
      expect(results.every((r) => r.status === 200 || r.status === 429)).toBe(true);
      expect(ok).toBeGreaterThanOrEqual(38);
      expect(ok).toBeLessThanOrEqual(40 + Math.floor(10 * elapsedSec));
    }
  });

  it('interleaved bursts over 3 s never admit more than capacity + refill × elapsed', async () => {
    const [a, b] = await twoNodes();
    const t0 = performance.now();
    let ok = 0;
    let total = 0;
    // Ten waves of 30 concurrent requests, alternating which node gets more.
    for (let wave = 0; wave < 10; wave++) {
      const res = await Promise.all(
        Array.from({ length: 30 }, (_, i) => hit((i + wave) % 3 === 0 ? a : b, 'interleaved')),
      );
      ok += res.filter((r) => r.status === 200).length;
      total += res.length;
      await new Promise((r) => setTimeout(r, 300));
    }
    const elapsedSec = (performance.now() - t0) / 1000;
    expect(total).toBe(300);
    expect(ok).toBeLessThanOrEqual(40 + 10 * elapsedSec);
    // And not far below it: the limit is enforced, not starved.
    expect(ok).toBeGreaterThanOrEqual(40 + 10 * (elapsedSec - 0.5) - 10);
  });

  it('keeps keys apart and most requests off Redis for a steady key', async () => {
    const [a, b] = await twoNodes({ RATE_LIMIT_CAPACITY: '1000', RATE_LIMIT_REFILL_PER_SEC: '1000' });
    for (let i = 0; i < 200; i++) {
      const r = await hit(i % 2 ? a : b, 'steady');
      expect(r.status).toBe(200);
    }
    const calls = a.manager.stats.leaseCalls + b.manager.stats.leaseCalls;
    expect(calls).toBeLessThan(60);
  });

  it('a node returns its unused tokens to Redis when it shuts down', async () => {
    const [a] = await twoNodes();
    for (let i = 0; i < 5; i++) {
      expect((await hit(a, 'returner')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 150)); // ~6 req/s, within the 10/s refill
    }
    const inspect = fx.redis.client();
    const leasedBefore = leasedOf((await readBucket(inspect, 'returner')) as BucketState<unknown>);
    expect(leasedBefore).toBeGreaterThan(5); // warm key: tokens leased ahead of demand
    await a.close(2000);
    fx.nodes.splice(fx.nodes.indexOf(a), 1);
    expect(a.manager.stats.returnCalls).toBe(1);
    const after = (await readBucket(inspect, 'returner')) as BucketState<{ tokens: number }>;
    inspect.disconnect();
    expect(leasedOf(after)).toBe(0); // the return reports the spent ones too
    expect(after.alg.tokens).toBeGreaterThanOrEqual(35);
  });
});
