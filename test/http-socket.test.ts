/**
 * The HTTP contract over a real socket (embedded mode, no Redis): on Node the
 * middleware writes its headers straight onto the ServerResponse, which
 * app.request() tests do not exercise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Node, hit, startNode } from './helpers/service.js';

let node: Node;
beforeAll(async () => {
  // A slow refill, so that no token comes back while the test's burst is in flight.
  node = await startNode({ RATE_LIMIT_REFILL_PER_SEC: '0.1' });
});
afterAll(async () => {
  await node.close(1000);
});

describe('over a real socket', () => {
  it('sends every rate-limit header on 200 and on 429', async () => {
    const first = await hit(node, 'socket-key');
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toContain('application/json');
    expect(first.headers.get('ratelimit-policy')).toBe('"default";q=40;w=400');
    expect(first.headers.get('ratelimit')).toBe('"default";r=39;t=10');
    expect(first.headers.get('x-ratelimit-limit')).toBe('40');
    expect(first.headers.get('x-ratelimit-remaining')).toBe('39');
    expect(first.headers.get('x-ratelimit-reset')).toBe('10');

    await Promise.all(Array.from({ length: 45 }, () => hit(node, 'socket-key')));
    const limited = await hit(node, 'socket-key');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('content-type')).toContain('application/json');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(10);
    expect(limited.headers.get('ratelimit')).toMatch(/^"default";r=0;t=\d+$/);
    expect(limited.body).toMatchObject({ detail: 'Too Many Requests' });
  });

  it('answers bad keys with JSON 4xx and health without limit headers', async () => {
    const res = await fetch(`${node.url}/resource`, { headers: { 'X-API-Key': 'x'.repeat(300) } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ detail: expect.any(String) });
    const health = await fetch(`${node.url}/health`);
    expect(health.headers.get('ratelimit')).toBeNull();
    expect(await health.json()).toEqual({ status: 'ok', mode: 'local-only', redis: 'not used' });
  });
});
