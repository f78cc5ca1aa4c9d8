/**
 * Real Redis faults while the service runs: killed, frozen, restarted empty,
 * scripts flushed. Until degraded mode exists, a request that needs Redis gets
 * a 503 JSON within the command deadline; never a hang, a crash or a 500.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisProcess } from './helpers/redis-server.js';
import { type Node, hit, startNode } from './helpers/service.js';

let redis: RedisProcess;
let node: Node;
let n = 0;
const freshKey = () => `fault-${n++}`;

beforeAll(async () => {
  redis = await RedisProcess.start();
  node = await startNode({ REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '100' });
});
afterAll(async () => {
  await node.close(1000);
  await redis.stop();
});

async function untilOk(timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if ((await hit(node, freshKey())).status === 200) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no 200 within ${timeoutMs} ms`);
}

describe('Redis faults', () => {
  it('survives SCRIPT FLUSH', async () => {
    expect((await hit(node, freshKey())).status).toBe(200);
    const c = redis.client();
    await c.script('FLUSH');
    c.disconnect();
    expect((await hit(node, freshKey())).status).toBe(200);
  });

  it('answers 503 JSON quickly while Redis is dead, keeps serving held leases, and recovers on restart', async () => {
    // A warm key holds tokens ahead of demand before the fault.
    for (let i = 0; i < 5; i++) expect((await hit(node, 'warm')).status).toBe(200);
    await redis.kill();
    const results = await Promise.all(Array.from({ length: 20 }, () => hit(node, freshKey())));
    for (const r of results) {
      expect(r.status).toBe(503);
      expect(r.body).toEqual({ detail: 'Rate limiter unavailable' });
      expect(r.headers.get('Retry-After')).toBe('1');
      expect(r.ms).toBeLessThan(1000); // bounded: no waiting for a reconnect
    }
    expect((await hit(node, 'warm')).status).toBe(200); // leased tokens stay usable
    const health = await (await fetch(`${node.url}/health`)).json();
    expect(health).toMatchObject({ mode: 'global', redis: 'down' });

    await redis.restart(); // empty: no keys, no scripts
    await untilOk(5000);
    expect(await (await fetch(`${node.url}/health`)).json()).toMatchObject({ redis: 'up' });
  });

  it('answers within the deadline while Redis is frozen (SIGSTOP), then recovers', async () => {
    await untilOk(5000);
    redis.freeze();
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => hit(node, freshKey())));
      for (const r of results) {
        expect(r.status).toBe(503);
        expect(r.ms).toBeLessThan(1000);
      }
    } finally {
      redis.thaw();
    }
    await untilOk(5000);
  });
});
