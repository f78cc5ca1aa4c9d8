/**
 * @module service
 *
 * The composition root: builds the store, the lease manager and the app from a
 * config, serves it, and shuts it all down in order. `main.ts` calls it with the
 * environment; integration tests and benchmarks call it with their own config.
 */
import { type ServerType, serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Config } from './config/config.js';
import { createApp } from './http/app.js';
import type { RateLimitEnv } from './http/rate-limit-middleware.js';
import { type Clock, systemClock } from './lease/clock.js';
import { LeaseManager, type Policy } from './lease/lease-manager.js';
import type { Logger } from './log/logger.js';
import type { GlobalStore } from './store/global-store.js';
import { MemoryStore } from './store/memory-store.js';
import { RedisStore } from './store/redis-store.js';

export type Service = {
  app: Hono<RateLimitEnv>;
  manager: LeaseManager;
  store: GlobalStore;
  policy: Policy;
  /** Stops taking requests, returns unused tokens, closes Redis. Bounded by `timeoutMs`. */
  close(timeoutMs?: number): Promise<void>;
};

export type ListeningService = Service & { server: ServerType; port: number };

export function createService(config: Config, deps: { logger: Logger; clock?: Clock }): Service {
  const clock = deps.clock ?? systemClock;
  const store: GlobalStore = config.redisUrl
    ? new RedisStore({ url: config.redisUrl, commandTimeoutMs: config.redisTimeoutMs, keyPrefix: config.redisKeyPrefix })
    : new MemoryStore({ clock });
  const manager = new LeaseManager({
    store,
    clock,
    logger: deps.logger,
    maxKeys: config.localMaxKeys,
    leaseTtlMs: config.leaseTtlMs,
    maxLeaseTokens: config.leaseMaxTokens,
  });
  const policy: Policy = config.policy;
  const app = createApp({ limiter: manager, store, policy, logger: deps.logger });
  return {
    app,
    manager,
    store,
    policy,
    async close() {
      await manager.close();
      await store.close();
    },
  };
}

/** Creates the service and listens on `config.port` (0 picks a free port). */
export async function startService(config: Config, deps: { logger: Logger; clock?: Clock }): Promise<ListeningService> {
  const svc = createService(config, deps);
  // Wait briefly for Redis so the first requests are not refused; start anyway if it is away.
  if (!(await svc.store.ready(2000))) deps.logger.error('Redis is not answering at start-up; requests get 503 until it does');
  const { server, port } = await new Promise<{ server: ServerType; port: number }>((resolve, reject) => {
    const s = serve({ fetch: svc.app.fetch, port: config.port, hostname: config.host }, (info) =>
      resolve({ server: s, port: info.port }),
    );
    s.once('error', reject);
  });
  return {
    ...svc,
    server,
    port,
    async close(timeoutMs = 5000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Idle keep-alive sockets would hold close() open; in-flight requests still finish.
      if ('closeIdleConnections' in server) server.closeIdleConnections();
      const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
      await Promise.race([closed, timer]);
      if ('closeAllConnections' in server) server.closeAllConnections();
      await Promise.race([svc.close(), timer]);
    },
  };
}
