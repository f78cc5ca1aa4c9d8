/**
 * A benchmark target: one HTTP server process serving GET /resource through one
 * of the systems compared. Runs as a child of `bench/run.ts`, so the load
 * generator and the server do not share an event loop.
 *
 *   BENCH_SYSTEM=none|none-b|none-busy|tandem|tandem-local|rlflex|seed-lua|hono-rate-limiter  PORT=...  REDIS_URL=...
 *
 * `none-b` is `none` under another name: a second bare process, for the noise floor
 * between two identical systems (bench/cold.ts). `none-busy` is the bare app spending
 * BENCH_BUSY_US µs (default 20) of pure CPU per request (a spin on the monotonic clock):
 * a limiter of known cost, to measure what a µs of work per request costs the server
 * in CPU and throughput at full speed on the machine at hand.
 *
 * Prints `ready <port>` once listening. `GET /__bench/stats` gives CPU time, RSS,
 * peak RSS and the limiter's counters; `GET /__bench/decisions` every decision
 * this process made (wall-clock ms, API key, status), for the accuracy figures.
 *
 * For the tandem systems, POLICY_FILE, CLIENTS_FILE, KEY_HASH_SECRET, ADMIN_TOKENS
 * and REDIS_TIMEOUT_MS in this process's environment reach loadConfig (the policy
 * scenarios); with ADMIN_TOKENS set, the admin API is mounted under `/__admin`
 * (e.g. `PUT /__admin/admin/clients`), built as startService builds it. Decisions are
 * recorded on /resource, and on the paths listed in BENCH_RECORD_PATHS
 * (comma-separated, e.g. `/resource,/payments`) when set; with BENCH_RECORD_DECIDED=1
 * also the time each response was ready (`decided`), to tell a late decision from
 * an over-admission.
 *
 * With BENCH_PROFILE_DIR set, `GET /__bench/profile/start` starts V8's CPU profiler
 * (node:inspector, 200 µs interval) and `GET /__bench/profile/stop` writes the
 * `.cpuprofile` there and answers its path: a profile of the measured load only,
 * without start-up (module loading, compilation) or warm-up.
 *
 * With BENCH_LOOP_DELAY=1 (the spike scenario) the process also measures its own
 * event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution), per
 * wall-clock second: `GET /__bench/loop` gives per-second figures (with CPU ms and
 * the limiter's lease and return calls in that second) and named windows
 * registered beforehand with `GET /__bench/loop/window?name=..&from=<epoch ms>&to=<epoch ms>`,
 * each with V8's collections that began in it (perf_hooks `gc` entries: count, total
 * and longest pause, and how many were scavenges).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { type IntervalHistogram, PerformanceObserver, constants as perfConstants, monitorEventLoopDelay } from 'node:perf_hooks';
import { serve } from '@hono/node-server';
import { type Context, Hono, type Next } from 'hono';
import { createAdminApp } from '../src/admin/admin-app.js';
import { createAdminAuth } from '../src/admin/auth.js';
import { loadConfig } from '../src/config/config.js';
import { silentLogger } from '../src/log/logger.js';
import { createService } from '../src/service.js';
import { honoRateLimiterApp, rlflexApp, seedLuaApp } from './peers/peers.js';

const system = process.env.BENCH_SYSTEM ?? 'none';
const port = Number(process.env.PORT ?? 0);
const redisUrl = process.env.REDIS_URL ?? '';

type Target = { app: Hono; admin?: Hono | undefined; stats: () => Record<string, unknown> };

function build(): Target {
  if (system === 'none' || system === 'none-b') {
    // The ceiling: the same route and body shape, no limiter.
    const app = new Hono();
    app.get('/resource', (c) => c.json({ ok: true, rate_limit: null }));
    return { app, stats: () => ({}) };
  }
  if (system === 'none-busy') {
    const busyMs = Number(process.env.BENCH_BUSY_US ?? 20) / 1000;
    const app = new Hono();
    app.get('/resource', (c) => {
      const until = performance.now() + busyMs;
      while (performance.now() < until);
      return c.json({ ok: true, rate_limit: null });
    });
    return { app, stats: () => ({ busyUs: busyMs * 1000 }) };
  }
  if (system === 'tandem' || system === 'tandem-local') {
    const env = system === 'tandem' ? { REDIS_URL: redisUrl } : {};
    // Lease settings can be overridden from the bench's environment to compare them.
    const lease = { LEASE_TTL_MS: process.env.LEASE_TTL_MS, LEASE_COLD_TOKENS: process.env.LEASE_COLD_TOKENS, LEASE_MAX_TOKENS: process.env.LEASE_MAX_TOKENS };
    // The policy scenarios' document, client registry and key-hash secret (unset: the environment's single policy).
    const policy = {
      POLICY_FILE: process.env.POLICY_FILE,
      CLIENTS_FILE: process.env.CLIENTS_FILE,
      KEY_HASH_SECRET: process.env.KEY_HASH_SECRET,
      ADMIN_TOKENS: process.env.ADMIN_TOKENS,
      REDIS_TIMEOUT_MS: process.env.REDIS_TIMEOUT_MS,
    };
    const config = loadConfig({ ...env, ...lease, ...policy });
    const logger = silentLogger();
    const svc = createService(config, { logger });
    void svc.start(5000);
    let admin: Hono | undefined;
    if (config.adminTokens) {
      admin = createAdminApp({
        auth: createAdminAuth({ tokens: config.adminTokens }),
        store: svc.policyStore,
        buckets: svc.store,
        forgetClient: (clientId) => svc.manager.forgetClient(clientId),
        runtime: svc.runtime,
        registry: svc.registry,
        logger,
        health: () => ({ ...svc.health(), policy: svc.runtime.state }),
      }) as unknown as Hono;
    }
    return {
      app: svc.app as unknown as Hono,
      admin,
      stats: () => ({ localKeys: svc.manager.size, ...svc.manager.stats }),
    };
  }
  if (system === 'rlflex') return { app: rlflexApp(redisUrl), stats: () => ({}) };
  if (system === 'seed-lua') return { app: seedLuaApp(redisUrl), stats: () => ({}) };
  if (system === 'hono-rate-limiter') return { app: honoRateLimiterApp(), stats: () => ({}) };
  throw new Error(`unknown BENCH_SYSTEM ${system}`);
}

const target = build();
const times: number[] = [];
const keys: string[] = [];
const statuses: number[] = [];
const decided: number[] = [];
const recordDecided = process.env.BENCH_RECORD_DECIDED === '1';

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

// Event-loop delay, opt-in so the other scenarios run exactly as before.
const LOOP_RESOLUTION_MS = 1;
type LoopFigures = { samples: number; p50Ms: number; p99Ms: number; maxMs: number; meanMs: number };
/** V8's collections (with BENCH_LOOP_DELAY=1): when each began (epoch ms), how long it paused, and whether it was a scavenge. */
const gcPauses: { at: number; ms: number; minor: boolean }[] = [];
type GcFigures = { gcCount: number; gcMs: number; gcMaxMs: number; scavenges: number; scavengeMs: number };
/** The collections that began in [from, to] (epoch ms). */
function gcFigures(from: number, to: number): GcFigures {
  const f: GcFigures = { gcCount: 0, gcMs: 0, gcMaxMs: 0, scavenges: 0, scavengeMs: 0 };
  for (const g of gcPauses) {
    if (g.at < from || g.at > to) continue;
    f.gcCount++;
    f.gcMs += g.ms;
    f.gcMaxMs = Math.max(f.gcMaxMs, g.ms);
    if (g.minor) {
      f.scavenges++;
      f.scavengeMs += g.ms;
    }
  }
  return f;
}
/** The histogram holds intervals between timer ticks; the delay is what exceeds the resolution. */
function loopFigures(h: IntervalHistogram): LoopFigures {
  const ms = (ns: number) => (h.count === 0 ? 0 : Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS));
  return { samples: h.count, p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max), meanMs: ms(h.mean) };
}
const loopSeconds: Array<LoopFigures & { t: number; cpuMs: number; leaseCalls?: number; returnCalls?: number }> = [];
const loopWindows = new Map<string, { from: number; to: number; h: IntervalHistogram }>();
if (process.env.BENCH_LOOP_DELAY === '1') {
  const h = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  h.enable();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      gcPauses.push({ at: performance.timeOrigin + e.startTime, ms: e.duration, minor: kind === perfConstants.NODE_PERFORMANCE_GC_MINOR });
    }
    // A bench run lasts minutes: the last 100,000 collections are plenty.
    if (gcPauses.length > 100_000) gcPauses.splice(0, gcPauses.length - 100_000);
  }).observe({ entryTypes: ['gc'] });
  const counters = () => {
    const st = target.stats();
    return { cpu: process.cpuUsage(), leaseCalls: st.leaseCalls as number | undefined, returnCalls: st.returnCalls as number | undefined };
  };
  let last = counters();
  // Snapshots at every whole wall-clock second; second t covers [t, t + 1) s since the epoch.
  let boundary = Math.ceil(Date.now() / 1000) * 1000;
  const tick = () => {
    const now = Date.now();
    const c = counters();
    const cpuMs = (c.cpu.user + c.cpu.system - last.cpu.user - last.cpu.system) / 1000;
    const delta = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : a - b);
    loopSeconds.push({ t: boundary / 1000 - 1, ...loopFigures(h), cpuMs, leaseCalls: delta(c.leaseCalls, last.leaseCalls), returnCalls: delta(c.returnCalls, last.returnCalls) });
    h.reset();
    last = c;
    boundary += 1000;
    while (boundary <= now) boundary += 1000; // a tick held up past a boundary: its seconds are merged
    setTimeout(tick, boundary - now).unref();
  };
  setTimeout(tick, boundary - Date.now()).unref();
}
outer.get('/__bench/loop/window', (c) => {
  const name = c.req.query('name') ?? 'window';
  const from = Number(c.req.query('from'));
  const to = Number(c.req.query('to'));
  const h = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loopWindows.set(name, { from, to, h });
  setTimeout(() => h.enable(), Math.max(0, from - Date.now())).unref();
  setTimeout(() => h.disable(), Math.max(0, to - Date.now())).unref();
  return c.json({ ok: true });
});
outer.get('/__bench/loop', (c) =>
  c.json({
    resolutionMs: LOOP_RESOLUTION_MS,
    seconds: loopSeconds,
    windows: Object.fromEntries([...loopWindows].map(([name, w]) => [name, { from: w.from, to: w.to, ...loopFigures(w.h), ...gcFigures(w.from, w.to) }])),
  }),
);
const profileDir = process.env.BENCH_PROFILE_DIR;
if (profileDir) {
  const session = new Session();
  session.connect();
  outer.get('/__bench/profile/start', async (c) => {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.start');
    return c.json({ ok: true });
  });
  // What the measured load allocates that outlives a young-generation collection (V8's
  // sampling heap profiler, keeping the objects full collections freed but not those
  // scavenges freed): what scavenges copy and promote. With --expose-gc, a last scavenge
  // before the stop frees what the latest requests left, which no scavenge has seen yet.
  outer.get('/__bench/heap/start', async (c) => {
    await session.post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
    return c.json({ ok: true });
  });
  outer.get('/__bench/heap/stop', async (c) => {
    const gc = (globalThis as { gc?: (o: { type: 'minor' | 'major' }) => void }).gc;
    gc?.({ type: 'minor' });
    const { profile } = await session.post('HeapProfiler.stopSampling');
    const file = join(profileDir, `${system}-${Date.now()}.heapprofile`);
    writeFileSync(file, JSON.stringify(profile));
    return c.json({ file });
  });
  outer.get('/__bench/profile/stop', async (c) => {
    const { profile } = await session.post('Profiler.stop');
    const file = join(profileDir, `${system}-${Date.now()}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    return c.json({ file });
  });
}
outer.get('/__bench/decisions', (c) => c.json(recordDecided ? { times, keys, statuses, decided } : { times, keys, statuses }));
// Every system pays the same for this record: one timestamp and three pushes.
// The time is the request's arrival, when an ideal limiter would decide.
const record = async (c: Context, next: Next) => {
  const t = performance.timeOrigin + performance.now();
  await next();
  times.push(t);
  keys.push(c.req.header('x-api-key') ?? '');
  statuses.push(c.res.status);
  if (recordDecided) decided.push(performance.timeOrigin + performance.now());
};
const recordPaths = (process.env.BENCH_RECORD_PATHS ?? '/resource').split(',').filter(Boolean);
// Hono's `/x/*` matches `/x` too: one registration per path, or a request is recorded twice.
for (const path of new Set(['/resource', ...recordPaths])) outer.use(path === '/resource' ? path : `${path}/*`, record);
if (target.admin) outer.route('/__admin', target.admin);
outer.route('/', target.app);
const server = serve({ fetch: outer.fetch, port, hostname: '127.0.0.1' }, (info) => {
  process.stdout.write(`ready ${info.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
