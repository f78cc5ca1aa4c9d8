/**
 * One redis-server for a test file, flushed between its tests (each brings its own
 * policy, and the one an earlier test stored in Redis would win), with the nodes a
 * test starts closed after it.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import { RedisProcess } from './redis-server.js';
import type { Node } from './service.js';

export type SharedRedis = { redis: RedisProcess; nodes: Node[] };

export function sharedRedis(): SharedRedis {
  const fx = { redis: undefined as unknown as RedisProcess, nodes: [] as Node[] };
  beforeAll(async () => {
    fx.redis = await RedisProcess.start();
  });
  afterEach(async () => {
    await Promise.all(fx.nodes.splice(0).map((n) => n.close(1000)));
    const c = fx.redis.client();
    await c.flushall();
    c.disconnect();
  });
  afterAll(async () => {
    await fx.redis?.stop();
  });
  return fx;
}
