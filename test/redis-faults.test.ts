/**
 * Real Redis faults while the service runs: killed (SIGKILL), frozen (SIGSTOP),
 * restarted empty, scripts flushed, absent at start-up, an outdated script.
 * Each checks: no request took longer than the deadline plus a margin, no 5xx
 * in `local` and `open` modes, /health shows the mode change and the change
 * back, and in `local` mode two nodes together admit about one global limit.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../src/core/clock.js';
import { LeaseManager } from '../src/lease/lease-manager.js';
import { createLogger } from '../src/log/logger.js';
import { RedisStore } from '../src/store/redis-store.js';
import { RedisProcess, freePort } from './helpers/redis-server.js';
import { type Node, hit, startNode } from './helpers/service.js';

const DEADLINE_MS = 100;
// Generous for a shared two-core machine under load: this catches hangs (a request that
// never ends, or waits for a reconnect), not scheduling jitter (510 ms seen under load).
const MARGIN_MS = 1500;

let redis: RedisProcess | undefined;
let nodes: Node[] = [];
let n = 0;
const freshKey = () => `fault-${n++}`;

afterEach(async () => {
  redis?.thaw();
  await Promise.all(nodes.map((x) => x.close(1000)));
  nodes = [];
  await redis?.stop();
  redis = undefined;
});

async function setup(count: number, env: Record<string, string> = {}): Promise<Node[]> {
  redis = await RedisProcess.start();
  for (let i = 0; i < count; i++) {
    nodes.push(await startNode({ REDIS_URL: redis.url, REDIS_TIMEOUT_MS: String(DEADLINE_MS), ...env }));
  }
  return nodes;
}

const health = async (node: Node) => (await (await fetch(`${node.url}/health`)).json()) as Record<string, unknown>;

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await cond()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

/** Fires `count` requests spread over the nodes and checks none was slow or 5xx. */
async function traffic(count: number, key: () => string, allow5xx = false) {
  const res = await Promise.all(Array.from({ length: count }, (_, i) => hit(nodes[i % nodes.length] as Node, key())));
  for (const r of res) {
    expect(r.ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
    if (!allow5xx) expect(r.status === 200 || r.status === 429).toBe(true);
  }
  return res;
}

describe('degraded mode local (default)', () => {
  it('Redis killed: answers fast, no 5xx, two nodes admit about one limit, recovers after an empty restart', async () => {
    const [a, b] = await setup(2);
    // Both nodes have heartbeated: each knows there are two. The first node counts the
    // second at its next heartbeat (every 250 ms): the window in which a Redis failure
    // would leave it dividing the limit by a stale count.
    const convergedMs = await until('two live nodes', async () => (await health(a as Node)).liveNodes === 2 && (await health(b as Node)).liveNodes === 2);
    console.log(`fleet count converged ${Math.round(convergedMs)} ms after the second node was up`);
    await traffic(40, freshKey);

    await redis?.kill();
    await traffic(60, freshKey); // the first failures open the breaker
    await until('degraded on both', async () => (await health(a as Node)).mode === 'degraded' && (await health(b as Node)).mode === 'degraded');
    expect(await health(a as Node)).toMatchObject({ mode: 'degraded', redis: 'down', degradedMode: 'local' });

    // One fresh key hammered through both nodes: each enforces half the limit.
    const t0 = performance.now();
    const burst = await traffic(120, () => 'degraded-hot');
    const seconds = (performance.now() - t0) / 1000;
    const admitted = burst.filter((r) => r.status === 200).length;
    expect(admitted).toBeGreaterThanOrEqual(36);
    // Each node's share: 20 tokens refilling 5/s; together 40 + 10 × the burst's length.
    expect(admitted).toBeLessThanOrEqual(40 + Math.floor(10 * seconds));

    await redis?.restart(); // empty: no keys, no scripts
    const recoveredIn = await until('global again', async () => (await health(a as Node)).mode === 'global' && (await health(b as Node)).mode === 'global');
    expect(recoveredIn).toBeLessThan(3000);
    await traffic(40, freshKey);
    expect((a as Node).manager.stats.degradedDecisions + (b as Node).manager.stats.degradedDecisions).toBeGreaterThan(0);
  });

  it('Redis frozen (SIGSTOP): requests finish within the deadline, mode changes and changes back', async () => {
    const [a] = await setup(1);
    await traffic(10, freshKey);
    redis?.freeze();
    await traffic(30, freshKey);
    await until('degraded', async () => (await health(a as Node)).mode === 'degraded');
    await traffic(30, freshKey);
    redis?.thaw();
    await until('global again', async () => (await health(a as Node)).mode === 'global');
    await traffic(10, freshKey);
  });

  it('survives SCRIPT FLUSH and FLUSHALL while running', async () => {
    await setup(1);
    await traffic(10, freshKey);
    const c = (redis as RedisProcess).client();
    await c.script('FLUSH');
    await c.flushall();
    c.disconnect();
    const res = await traffic(10, freshKey);
    expect(res.every((r) => r.status === 200)).toBe(true);
  });

  it('starts without Redis in degraded mode and upgrades when Redis appears', async () => {
    const port = await freePort();
    const t0 = performance.now();
    const node = await startNode({ REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_TIMEOUT_MS: String(DEADLINE_MS) });
    nodes.push(node);
    expect(performance.now() - t0).toBeLessThan(4000);
    expect(await health(node)).toMatchObject({ mode: 'degraded', redis: 'down', liveNodes: 1 });
    await traffic(20, freshKey);
    redis = await RedisProcess.startOnPort(port);
    await until('global', async () => (await health(node)).mode === 'global');
    await traffic(20, freshKey);
  });
});

describe('degraded modes open and closed', () => {
  it('open: allows everything while Redis is away, and counts it', async () => {
    const [a] = await setup(1, { DEGRADED_MODE: 'open' });
    await redis?.kill();
    const res = await traffic(100, () => 'open-key');
    expect(res.every((r) => r.status === 200)).toBe(true);
    expect((a as Node).manager.stats.failOpenAllowed).toBeGreaterThanOrEqual(100);
    // Counted where operators look.
    expect(Number((await health(a as Node)).failOpenAllowed)).toBeGreaterThanOrEqual(100);
  });

  it('closed: denies with 503 and Retry-After, quickly', async () => {
    await setup(1, { DEGRADED_MODE: 'closed' });
    await redis?.kill();
    const res = await traffic(20, freshKey, true);
    for (const r of res) {
      expect(r.status).toBe(503);
      expect(r.headers.get('Retry-After')).toBe('1');
      expect(r.body).toEqual({ detail: 'Rate limiter unavailable' });
    }
  });
});

describe('a script reply of the wrong shape', () => {
  it('is logged clearly and decided in degraded mode, without a crash', async () => {
    redis = await RedisProcess.start();
    const lines: string[] = [];
    const logger = createLogger('error');
    logger.clear();
    const { Writable } = await import('node:stream');
    const winston = (await import('winston')).default;
    logger.add(new winston.transports.Stream({ stream: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) }));
    const store = new RedisStore({
      url: redis.url,
      commandTimeoutMs: DEADLINE_MS,
      keyPrefix: 'rl:',
      leaseScripts: { token_bucket: "return {1, 'old-version'}" },
    });
    await store.ready(2000);
    const clock = new FakeClock();
    const manager = new LeaseManager({ store, clock, logger, maxKeys: 10, leaseTtlMs: 1000, maxLeaseTokens: 5, degradedMode: 'local' });
    const d = await manager.check('k', { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 });
    expect(d.allowed).toBe(true);
    expect(manager.stats.degradedDecisions).toBe(1);
    expect(lines.join('')).toContain('unexpected lease script reply');
    expect(lines.join('')).not.toContain('"k"');
    await manager.close();
    await store.close();
  });
});
