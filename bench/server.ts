/**
 * A benchmark target: one HTTP server process serving GET /resource through one
 * of the systems compared. Runs as a child of `bench/run.ts`, so the load
 * generator and the server do not share an event loop.
 *
 *   BENCH_SYSTEM=none|tandem|tandem-local|rlflex|seed-lua  PORT=...  REDIS_URL=...
 *
 * Prints `ready <port>` once listening. `GET /__bench/stats` gives CPU time, RSS,
 * peak RSS and the limiter's counters; `GET /__bench/decisions` every decision
 * this process made (wall-clock ms, API key, status), for the accuracy figures.
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { loadConfig } from '../src/config/config.js';
import { silentLogger } from '../src/log/logger.js';
import { createService } from '../src/service.js';
import { rlflexApp, seedLuaApp } from './peers/peers.js';

const system = process.env.BENCH_SYSTEM ?? 'none';
const port = Number(process.env.PORT ?? 0);
const redisUrl = process.env.REDIS_URL ?? '';

type Target = { app: Hono; stats: () => Record<string, unknown> };

function build(): Target {
  if (system === 'none') {
    // The ceiling: the same route and body shape, no limiter.
    const app = new Hono();
    app.get('/resource', (c) => c.json({ ok: true, rate_limit: null }));
    return { app, stats: () => ({}) };
  }
  if (system === 'tandem' || system === 'tandem-local') {
    const env = system === 'tandem' ? { REDIS_URL: redisUrl } : {};
    // Lease settings can be overridden from the bench's environment to compare them.
    const lease = { LEASE_TTL_MS: process.env.LEASE_TTL_MS, LEASE_COLD_TOKENS: process.env.LEASE_COLD_TOKENS, LEASE_MAX_TOKENS: process.env.LEASE_MAX_TOKENS };
    const svc = createService(loadConfig({ ...env, ...lease }), { logger: silentLogger() });
    void svc.start(5000);
    return {
      app: svc.app as unknown as Hono,
      stats: () => ({ localKeys: svc.manager.size, ...svc.manager.stats }),
    };
  }
  if (system === 'rlflex') return { app: rlflexApp(redisUrl), stats: () => ({}) };
  if (system === 'seed-lua') return { app: seedLuaApp(redisUrl), stats: () => ({}) };
  throw new Error(`unknown BENCH_SYSTEM ${system}`);
}

const target = build();
const times: number[] = [];
const keys: string[] = [];
const statuses: number[] = [];

const outer = new Hono();
outer.get('/__bench/stats', (c) => {
  const u = process.cpuUsage();
  return c.json({
    system,
    cpuMicros: u.user + u.system,
    rssBytes: process.memoryUsage().rss,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    ...target.stats(),
  });
});
outer.get('/__bench/decisions', (c) => c.json({ times, keys, statuses }));
// Every system pays the same for this record: one timestamp and three pushes.
// The time is the request's arrival, when an ideal limiter would decide.
outer.use('/resource', async (c, next) => {
  const t = performance.timeOrigin + performance.now();
  await next();
  times.push(t);
  keys.push(c.req.header('x-api-key') ?? '');
  statuses.push(c.res.status);
});
outer.route('/', target.app);
const server = serve({ fetch: outer.fetch, port, hostname: '127.0.0.1' }, (info) => {
  process.stdout.write(`ready ${info.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
