/**
 * @module service
 *
 * The composition root: builds the store, the circuit breaker, the health
 * monitor, the lease manager and the app from a config, serves it, and shuts it
 * all down in order. `main.ts` calls it with the environment; integration tests
 * and benchmarks call it with their own config.
 */
import type { Server } from 'node:http';
import net from 'node:net';
import type { Hono } from 'hono';
import type { Config } from './config/config.js';
import { type HealthReport, createApp } from './http/app.js';
import { createNodeServer } from './http/node-server.js';
import { SERVED_METHODS } from './http/policy-handler.js';
import { createForwarder } from './http/upstream.js';
import { createAdminApp } from './admin/admin-app.js';
import { createAdminAuth } from './admin/auth.js';
import type { RateLimitEnv } from './http/rate-limit-middleware.js';
import { systemClock } from './core/clock.js';
import type { BucketAdmin, BucketStore, Clock, FleetStore, Policy, PolicyStore, StoreHealth } from './core/types.js';
import { LeaseManager } from './lease/lease-manager.js';
import { createClientIp } from './policy/client-ip.js';
import { PolicyEngine } from './policy/engine.js';
import { createJwtVerifier } from './policy/jwt.js';
import { documentFromPolicy, loadPolicyFile } from './policy/load.js';
import { ClientRegistry } from './policy/registry.js';
import { PolicyRuntime } from './policy/runtime.js';
import { ViolationLog } from './log/violations.js';
import { type RedisCallObserver, createMetrics } from './metrics/registry.js';
import { RequestCounters } from './metrics/request-counters.js';
import type { Registry } from 'prom-client';
import type { CompiledPolicies } from './policy/rules.js';
import { FilePolicyStore, writeFileAtomic } from './store/file-policy-store.js';
import { RedisPolicyStore } from './store/redis-policy-store.js';
import { type Logger, throttled } from './log/logger.js';
import { CircuitBreaker } from './resilience/circuit-breaker.js';
import { HealthMonitor } from './resilience/health-monitor.js';
import { createKeyHasher } from './store/key-name.js';
import { MemoryStore } from './store/memory-store.js';
import { RedisStore } from './store/redis-store.js';

export type Service = {
  app: Hono<RateLimitEnv>;
  manager: LeaseManager;
  store: BucketStore & BucketAdmin & FleetStore & StoreHealth;
  breaker: CircuitBreaker;
  monitor: HealthMonitor | undefined;
  /** The policy of the environment (the document's only one without POLICY_FILE). */
  policy: Policy;
  engine: PolicyEngine;
  /** The node's Prometheus metrics (served by the admin listener). */
  metrics: Registry;
  runtime: PolicyRuntime;
  policyStore: PolicyStore;
  registry: ClientRegistry;
  /** The compiled document in force. */
  policies(): CompiledPolicies;
  /** The node's state as last observed (no Redis call). */
  health(): HealthReport;
  /** Public /health answers 503 from now on. */
  startDraining(): void;
  /** Starts the background health monitor; waits up to `readyTimeoutMs` for Redis first. */
  start(readyTimeoutMs?: number): Promise<void>;
  /** Returns unused tokens, leaves the fleet, closes Redis. */
  close(): Promise<void>;
};

export type ListeningService = Service & {
  server: Server;
  port: number;
  /** The operators' listener (admin API, detailed health). */
  adminServer: Server;
  adminPort: number;
  /**
   * Drains (health 503, `Connection: close` on every response, still accepting) for
   * `SHUTDOWN_DRAIN_MS` (at most half the bound), stops accepting, lets in-flight
   * requests finish, then `Service.close()`; all within `timeoutMs`.
   */
  close(timeoutMs?: number): Promise<void>;
};

export function createService(config: Config, deps: { logger: Logger; clock?: Clock }): Service {
  const { logger } = deps;
  // Set once the metrics exist; the Redis store reports every call through it.
  let observeRedisCall: RedisCallObserver = () => {};
  const clock = deps.clock ?? systemClock;
  const usesRedis = Boolean(config.redisUrl || config.redisClusterNodes);
  const hashKey = createKeyHasher(config.keyHashSecret);
  if (usesRedis && !config.keyHashSecret) {
    logger.warn('KEY_HASH_SECRET is not set: Redis key names use an unkeyed hash of each API key; set the same secret on every node');
  }
  const store: BucketStore & BucketAdmin & FleetStore & StoreHealth = usesRedis
    ? new RedisStore({
        url: config.redisUrl,
        clusterNodes: config.redisClusterNodes,
        commandTimeoutMs: config.redisTimeoutMs,
        keyPrefix: config.redisKeyPrefix,
        hashKey,
        onCall: (command, seconds, error) => observeRedisCall(command, seconds, error),
      })
    : new MemoryStore({ clock });
  let monitor: HealthMonitor | undefined;
  // A flapping Redis must not flood the log: each direction at most once per 10 s, with a count.
  const logOpen = throttled(10_000);
  const logClosed = throttled(10_000);
  const transitions = { degraded: 0, global: 0 };
  const breaker = new CircuitBreaker({
    onChange: (state, reason) => {
      transitions[state === 'open' ? 'degraded' : 'global']++;
      if (state === 'open') {
        logOpen((suppressed) =>
          logger.warn('redis unavailable: switching to degraded mode', { degradedMode: config.degradedMode, liveNodes: monitor?.liveNodes, reason, suppressed }),
        );
      } else {
        logClosed((suppressed) => logger.info('redis answering again: back to global mode', { reason, suppressed }));
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
    newKeysPerSec: config.newKeysPerSec,
    breaker: usesRedis ? breaker : undefined,
    degradedMode: config.degradedMode,
    liveNodes: () => monitor?.liveNodes ?? 1,
    clientLabel: hashKey,
    maxHoldMs: 2 * config.redisTimeoutMs + 200,
    // Embedded: the buckets are in this process, so requests are decided against them, no leases.
    direct: !usesRedis,
  });
  const policy: Policy = config.policy;
  // A bad policy or clients file throws here: the process does not start with it.
  const seed = config.policyFile ? loadPolicyFile(config.policyFile) : documentFromPolicy(policy);
  const seedClients = config.clientsFile ? ClientRegistry.fromFile(config.clientsFile, hashKey) : undefined;
  const registry = new ClientRegistry(hashKey);
  const policyStore: PolicyStore =
    store instanceof RedisStore
      ? new RedisPolicyStore(store.redis, { keyPrefix: config.redisKeyPrefix, commandTimeoutMs: Math.max(config.redisTimeoutMs, 500) })
      : new FilePolicyStore(config.dataDir);
  const runtime = new PolicyRuntime({
    store: policyStore,
    seed,
    seedName: config.policyFile ? `POLICY_FILE ${config.policyFile}` : 'the environment (RATE_LIMIT_*)',
    registry,
    seedClients,
    logger,
    dataDir: usesRedis ? config.dataDir : undefined,
    saveLocalCopy: writeFileAtomic,
    onPoliciesChanged: (names) => manager.forgetPolicies(names),
    file: config.policySource === 'file' ? config.policyFile : undefined,
  });
  const jwt = createJwtVerifier({ secret: config.jwtSecret, jwksFile: config.jwksFile });
  if (runtime.compiled.usesClaims && !jwt) logger.warn('the policy document uses JWT claims but neither JWT_SECRET nor JWKS_FILE is set: claim rules never match');
  const engine = new PolicyEngine({
    limiter: manager,
    policies: () => runtime.compiled,
    registry,
    jwt,
    clientIp: createClientIp({ trustedProxies: config.trustedProxies, ipv6Prefix: config.ipv6Prefix }),
    // Without an upstream the built-in answer serves GET and HEAD; with one, every method a rule matches is forwarded.
    servedMethods: config.upstreamUrl ? undefined : SERVED_METHODS,
  });
  let draining = false;
  let closing: Promise<void> | undefined;

  const health = (): HealthReport => {
    const status = draining ? 'draining' : 'ok';
    if (!usesRedis) return { status, mode: 'local-only', redis: 'not used' };
    return {
      status,
      mode: breaker.isOpen ? 'degraded' : 'global',
      // Open: the calls that matter fail, whatever the last heartbeat said.
      redis: breaker.state !== 'open' && monitor?.redisUp ? 'up' : 'down',
      degradedMode: config.degradedMode,
      liveNodes: monitor?.liveNodes ?? 1,
      // Since start: decisions made without Redis, and of those the ones allowed only by fail-open.
      degradedDecisions: manager.stats.degradedDecisions,
      failOpenAllowed: manager.stats.failOpenAllowed,
    };
  };
  const counters = new RequestCounters();
  const violations = new ViolationLog({ logger });
  const metrics = createMetrics({
    counters,
    lease: () => manager.stats,
    localKeys: () => manager.size,
    waiting: () => manager.waiting,
    breaker: () => (usesRedis ? breaker.state : 'closed'),
    transitions: () => transitions,
    liveNodes: () => monitor?.liveNodes ?? 1,
    policy: () => ({ version: runtime.state.version, reloadsOk: runtime.reloads.ok, reloadsRefused: runtime.reloads.refused, lastReloadMs: runtime.reloads.lastMs }),
    violationsNotLogged: () => violations.droppedTotal,
  });
  observeRedisCall = metrics.observeRedisCall;
  const forward = config.upstreamUrl ? createForwarder({ url: config.upstreamUrl, timeoutMs: config.upstreamTimeoutMs }) : undefined;
  const app = createApp({ engine, health, logger, handler: { counters, violations, hashClient: hashKey, forward } });

  return {
    app,
    manager,
    store,
    breaker,
    monitor,
    policy,
    engine,
    metrics: metrics.registry,
    runtime,
    policyStore,
    registry,
    policies: () => runtime.compiled,
    health,
    startDraining() {
      draining = true;
    },
    async start(readyTimeoutMs = 2000) {
      if (usesRedis && !(await store.ready(readyTimeoutMs))) {
        // Start anyway; the monitor's probe upgrades to global mode when Redis appears.
        breaker.trip('redis not answering at start-up');
      }
      await monitor?.start();
      await runtime.start();
      if (store instanceof RedisStore) void checkEvictionPolicy(store, logger);
    },
    close() {
      // Idempotent: a second caller waits for the same shutdown instead of closing Redis under it.
      closing ??= (async () => {
        await runtime.stop();
        await monitor?.stop();
        await manager.close();
        await store.close();
      })();
      return closing;
    },
  };
}

/** Creates the service and listens on `config.port` (0 picks a free port). */
export async function startService(config: Config, deps: { logger: Logger; clock?: Clock }): Promise<ListeningService> {
  const svc = createService(config, deps);
  await svc.start();
  const node = createNodeServer(svc.app.fetch);
  const server = node.server;
  const listen = (srv: Server, p: number, host: string) =>
    new Promise<number>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(p, host, () => {
        srv.off('error', reject);
        resolve((srv.address() as { port: number }).port);
      });
    });
  const port = await listen(server, config.port, config.host);
  const auth = createAdminAuth({ tokens: config.adminTokens, tokensFile: config.adminTokensFile });
  if (!auth.configured) deps.logger.warn('no admin token configured: the admin policy and client routes answer 503; set ADMIN_TOKENS (name:secret,...) or ADMIN_TOKENS_FILE');
  const admin = createAdminApp({
    auth,
    store: svc.policyStore,
    buckets: svc.store,
    forgetClient: (clientId) => svc.manager.forgetClient(clientId),
    runtime: svc.runtime,
    registry: svc.registry,
    logger: deps.logger,
    health: () => ({ ...svc.health(), nodeId: svc.monitor?.nodeId, policy: svc.runtime.state, lease: svc.manager.stats, engine: svc.engine.stats }),
    metrics: svc.metrics,
  });
  const adminNode = createNodeServer(admin.fetch as Parameters<typeof createNodeServer>[0]);
  const adminPort = await listen(adminNode.server, config.adminPort, config.adminHost);
  let closing: Promise<void> | undefined;
  return {
    ...svc,
    server,
    port,
    adminServer: adminNode.server,
    adminPort,
    close(timeoutMs: number = config.shutdownTimeoutMs) {
      closing ??= (async () => {
        const deadline = performance.now() + timeoutMs;
        const left = () => Math.max(0, deadline - performance.now());
        // Draining: /health answers 503 so a balancer stops sending; requests are served as usual.
        svc.startDraining();
        await sleep(Math.min(config.shutdownDrainMs, timeoutMs / 2));
        // Then stop listening, and answer every request from now on with `Connection: close`,
        // so a keep-alive client ends its connection after the answer it is reading and its
        // next attempt is refused cleanly instead of reset. (Sending `Connection: close` while
        // still listening would make clients reconnect, and closing the listener resets the
        // connections waiting in its accept queue.) Not http.Server.close(): it also closes
        // idle keep-alive sockets at once, under a request that may be on its way. Sockets
        // still idle after a short grace are closed, and whatever is left as the bound nears.
        node.startDraining();
        const closed = new Promise<void>((resolve) => net.Server.prototype.close.call(server, () => resolve()));
        await Promise.race([closed, sleep(Math.min(1000, left() * 0.3))]);
        server.closeIdleConnections();
        await Promise.race([closed, sleep(left() * 0.6)]);
        server.closeAllConnections();
        adminNode.server.close();
        adminNode.server.closeAllConnections();
        await Promise.race([svc.close(), sleep(left())]);
      })();
      return closing;
    },
  };
}

/**
 * The policy document and the client registry live in Redis: an `allkeys-*` eviction
 * policy could drop them under memory pressure. Warn once at start if so.
 */
async function checkEvictionPolicy(store: RedisStore, logger: Logger): Promise<void> {
  try {
    const nodes = 'nodes' in store.redis ? store.redis.nodes('master') : [store.redis];
    for (const node of nodes) {
      const reply = (await Promise.race([node.config('GET', 'maxmemory-policy'), sleep(2000).then(() => undefined)])) as string[] | undefined;
      const policyName = reply?.[1];
      if (policyName?.startsWith('allkeys-')) {
        logger.warn(`redis maxmemory-policy is ${policyName}: it may evict the policy document and the client registry; use noeviction or a volatile-* policy (bucket keys carry a TTL)`);
        return;
      }
    }
  } catch {
    // CONFIG may be disabled (managed Redis): nothing to check.
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
