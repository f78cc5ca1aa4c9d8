/**
 * @module service
 *
 * The composition root: builds the store, the circuit breaker, the health
 * monitor, the lease manager and the app from a config, serves it, and shuts it
 * all down in order. `main.ts` calls it with the environment; integration tests
 * and benchmarks call it with their own config.
 */
import { type ServerType, serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Config } from './config/config.js';
import { type HealthReport, createApp } from './http/app.js';
import type { RateLimitEnv } from './http/rate-limit-middleware.js';
import { type Clock, systemClock } from './lease/clock.js';
import { LeaseManager, type Policy } from './lease/lease-manager.js';
import type { Logger } from './log/logger.js';
import { CircuitBreaker } from './resilience/circuit-breaker.js';
import { HealthMonitor } from './resilience/health-monitor.js';
import type { GlobalStore } from './store/global-store.js';
import { MemoryStore } from './store/memory-store.js';
import { RedisStore } from './store/redis-store.js';

export type Service = {
  app: Hono<RateLimitEnv>;
  manager: LeaseManager;
  store: GlobalStore;
  breaker: CircuitBreaker;
  monitor: HealthMonitor | undefined;
  policy: Policy;
  health(): Promise<HealthReport>;
  /** Starts the background health monitor; waits up to `readyTimeoutMs` for Redis first. */
  start(readyTimeoutMs?: number): Promise<void>;
  /** Returns unused tokens, leaves the fleet, closes Redis. */
  close(): Promise<void>;
};

export type ListeningService = Service & {
  server: ServerType;
  port: number;
  /** Stops accepting, lets in-flight requests finish, then `Service.close()`; bounded by `timeoutMs`. */
  close(timeoutMs?: number): Promise<void>;
};

export function createService(config: Config, deps: { logger: Logger; clock?: Clock }): Service {
  const { logger } = deps;
  const clock = deps.clock ?? systemClock;
  const usesRedis = Boolean(config.redisUrl || config.redisClusterNodes);
  const store: GlobalStore = usesRedis
    ? new RedisStore({
        url: config.redisUrl,
        clusterNodes: config.redisClusterNodes,
        commandTimeoutMs: config.redisTimeoutMs,
        keyPrefix: config.redisKeyPrefix,
      })
    : new MemoryStore({ clock });
  let monitor: HealthMonitor | undefined;
  const breaker = new CircuitBreaker({
    onChange: (state, reason) => {
      if (state === 'open') {
        logger.warn('redis unavailable: switching to degraded mode', { degradedMode: config.degradedMode, liveNodes: monitor?.liveNodes, reason });
      } else {
        logger.info('redis answering again: back to global mode', { reason });
      }
    },
  });
  if (usesRedis) monitor = new HealthMonitor({ store, breaker, logger });
  const manager = new LeaseManager({
    store,
    clock,
    logger,
    maxKeys: config.localMaxKeys,
    leaseTtlMs: config.leaseTtlMs,
    maxLeaseTokens: config.leaseMaxTokens,
    coldLeaseTokens: config.leaseColdTokens,
    breaker: usesRedis ? breaker : undefined,
    degradedMode: config.degradedMode,
    liveNodes: () => monitor?.liveNodes ?? 1,
  });
  const policy: Policy = config.policy;

  const health = async (): Promise<HealthReport> => {
    if (!usesRedis) return { status: 'ok', mode: 'local-only', redis: 'not used' };
    const up = await store.ping();
    return {
      status: 'ok',
      mode: breaker.isOpen ? 'degraded' : 'global',
      redis: up ? 'up' : 'down',
      degradedMode: config.degradedMode,
      liveNodes: monitor?.liveNodes ?? 1,
      // Since start: decisions made without Redis, and of those the ones allowed only by fail-open.
      degradedDecisions: manager.stats.degradedDecisions,
      failOpenAllowed: manager.stats.failOpenAllowed,
    };
  };
  const app = createApp({ limiter: manager, health, policy, logger });

  return {
    app,
    manager,
    store,
    breaker,
    monitor,
    policy,
    health,
    async start(readyTimeoutMs = 2000) {
      if (usesRedis && !(await store.ready(readyTimeoutMs))) {
        // Start anyway; the monitor's probe upgrades to global mode when Redis appears.
        breaker.trip('redis not answering at start-up');
      }
      monitor?.start();
    },
    async close() {
      await monitor?.stop();
      await manager.close();
      await store.close();
    },
  };
}

/** Creates the service and listens on `config.port` (0 picks a free port). */
export async function startService(config: Config, deps: { logger: Logger; clock?: Clock }): Promise<ListeningService> {
  const svc = createService(config, deps);
  await svc.start();
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
    async close(timeoutMs: number = config.shutdownTimeoutMs) {
      const deadline = Date.now() + timeoutMs;
      const left = () => Math.max(0, deadline - Date.now());
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Idle keep-alive sockets would hold close() open; busy ones close after their response.
      if ('closeIdleConnections' in server) server.closeIdleConnections();
      await Promise.race([closed, sleep(left() * 0.6)]);
      if ('closeAllConnections' in server) server.closeAllConnections();
      await Promise.race([svc.close(), sleep(left())]);
    },
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
