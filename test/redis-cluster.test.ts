/**
 * Against a real Redis Cluster (three masters, three replicas) that the test
 * builds itself: limits hold across two service instances, and killing a master
 * while traffic flows leaves every request answered (200 or 429: global or
 * degraded), never hung, never 5xx; the service is back in global mode after
 * the failover.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Policy } from '../src/core/types.js';
import { RedisStore } from '../src/store/redis-store.js';
import { RedisCluster } from './helpers/redis-cluster.js';
import { type Node, hit, startNode } from './helpers/service.js';

let cluster: RedisCluster;
let a: Node;
let b: Node;
beforeAll(async () => {
  cluster = await RedisCluster.start();
  a = await startNode({ REDIS_CLUSTER_NODES: cluster.seeds, REDIS_TIMEOUT_MS: '100' });
  b = await startNode({ REDIS_CLUSTER_NODES: cluster.seeds, REDIS_TIMEOUT_MS: '100' });
}, 60_000);
const extra: Node[] = [];
afterAll(async () => {
  await Promise.all([a?.close(1000), b?.close(1000), ...extra.map((n) => n.close(1000))]);
  await cluster?.stop();
});

const health = async (node: Node) => (await (await fetch(`${node.url}/health`)).json()) as Record<string, unknown>;

describe('Redis Cluster', () => {
  it('is in global mode and holds the limit across two instances, for keys on every master', async () => {
    // Exactness with Redis healthy: a deadline no load on this machine reaches, so no call is
    // decided in degraded mode (per-node shares) by a timeout.
    const a = await startNode({ REDIS_CLUSTER_NODES: cluster.seeds, REDIS_TIMEOUT_MS: '2000' });
    const b = await startNode({ REDIS_CLUSTER_NODES: cluster.seeds, REDIS_TIMEOUT_MS: '2000' });
    extra.push(a, b);
    expect(await health(a)).toMatchObject({ mode: 'global', redis: 'up' });
    for (let k = 0; k < 6; k++) {
      const key = `cluster-key-${k}`;
      const t0 = performance.now();
      const res = await Promise.all(Array.from({ length: 50 }, (_, i) => hit(i % 2 ? a : b, key)));
      const elapsedMs = performance.now() - t0;
      expect(res.every((r) => r.status === 200 || r.status === 429)).toBe(true);
      const ok = res.filter((r) => r.status === 200).length;
      expect(ok).toBeGreaterThanOrEqual(38);
      // The guarantee: capacity + refill × T, T the burst's measured length (a slow burst refills).
      expect(ok).toBeLessThanOrEqual(40 + Math.floor((10 * elapsedMs) / 1000));
    }
    expect(a.manager.stats.storeFailures + b.manager.stats.storeFailures).toBe(0);
  });

  it('batches the calls of one event-loop turn per master: one script call per node carrying keys of many slots', async () => {
    const nodes = cluster.seeds.split(',').map((x) => ({ host: x.split(':')[0] as string, port: Number(x.split(':')[1]) }));
    // Script calls as this store sends them (the nodes of the other tests heartbeat on the
    // same cluster with scripts too, so Redis's own counters would count theirs).
    let leaseCalls = 0;
    const store = new RedisStore({
      clusterNodes: nodes,
      commandTimeoutMs: 2000,
      keyPrefix: 'batch:',
      onCall: (command, _s, error) => {
        if (command === 'lease' && !error) leaseCalls++;
      },
    });
    try {
      expect(await store.ready(5000)).toBe(true);
      const p: Policy = { name: 'p', algorithm: 'token_bucket', capacity: 5, refillPerSec: 1 };
      const masters = await cluster.masters();
      await Promise.all(Array.from({ length: 30 }, (_, i) => store.lease(`warm-${i}`, p, { need: 1, extra: 0, leaseTtlMs: 1000 })));
      const before = leaseCalls;
      const replies = await Promise.all(Array.from({ length: 90 }, (_, i) => store.lease(`cold-${i}`, p, { need: 2, extra: 0, leaseTtlMs: 1000 })));
      expect(replies.every((r) => r.granted === 2)).toBe(true);
      // 90 keys of (almost surely) every master: one successful script call per master.
      expect(leaseCalls - before).toBe(masters.length);
    } finally {
      await store.close();
    }
  });

  it('a master killed while traffic flows: every request answered, none hung or 5xx, back to global', async () => {
    const [victim] = await cluster.masters();
    let stop = false;
    const seen: { status: number; ms: number }[] = [];
    const load = (async () => {
      let i = 0;
      while (!stop) {
        const batch = await Promise.all(Array.from({ length: 20 }, () => hit(i++ % 2 ? a : b, `flow-${i % 300}`)));
        seen.push(...batch);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    await victim?.kill();
    await cluster.waitFailover(); // a replica takes over the victim's slots
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await load;
    expect(seen.length).toBeGreaterThan(200);
    for (const r of seen) {
      expect(r.status === 200 || r.status === 429).toBe(true);
      expect(r.ms).toBeLessThan(1000);
    }
    const t0 = Date.now();
    while ((await health(a)).mode !== 'global' && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 100));
    expect(await health(a)).toMatchObject({ mode: 'global' });
    // Keys on every slot, the promoted replica's too, are decided through Redis again: no
    // store failure and no degraded decision (a degraded 200 would look the same to a client).
    const before = { failures: a.manager.stats.storeFailures, degraded: a.manager.stats.degradedDecisions };
    const res = await Promise.all(Array.from({ length: 30 }, (_, i) => hit(a, `after-failover-${i}`)));
    expect(res.every((r) => r.status === 200)).toBe(true);
    expect(a.manager.stats.storeFailures).toBe(before.failures);
    expect(a.manager.stats.degradedDecisions).toBe(before.degraded);
  }, 60_000);
});
