/**
 * `npm run bench:cold`: the limiter measured the way users meet it, on keys it
 * has never seen. Every system, every round and every mix gets a FRESH population
 * of 12,000 API keys (`makeApiKeys`), so the first requests of every key are cold
 * (no local state, no lease, nothing in Redis); the same population run again
 * right after gives the warm figures beside them.
 *
 *   npm run bench:cold                       2 interleaved rounds (~6 min)
 *   npm run bench:cold -- --smoke            1 round, ~0.5 s runs: checks every figure exists (~1 min)
 *   npm run bench:cold -- --rounds 3 --max-seconds 5 --paced-seconds 4   (defaults 2, 3.5, 2)
 *   npm run bench:cold -- --systems none,none-b,tandem
 *   BENCH_BUSY_US=20 npm run bench:cold -- --systems none,none-busy   what 20 µs of work per request costs here
 *   npm run bench:cold -- --no-pin           without taskset (figures then share the cores)
 *
 * Processes: each system is a server process of its own (bench/server.ts, with
 * BENCH_LOOP_DELAY=1) pinned to core 0 (`taskset -c 0`); the load generator is one
 * long-lived process (bench/lib/cold-loadgen.ts, autocannon) pinned to core 1, as
 * are this script and the redis-server it starts on a free port (the Redis
 * systems' Redis is not on the server's core: on a real deployment it is on
 * another machine). Systems: `none` twice, as two processes (`none`, `none-b`: the
 * bare-vs-bare noise floor), `tandem` (ours, Redis), `tandem-local` (ours,
 * embedded), `rlflex` (rate-limiter-flexible on Redis), `hono-rate-limiter`
 * (its default in-process MemoryStore).
 *
 * One round = every system once, in an order rotated from round to round
 * (mixes too), Redis flushed before each. Per system: start the server, a 1-s
 * JIT warm-up on throwaway keys (so that "cold" means cold keys on a running
 * process, not a process still compiling), then, with a fresh population A per
 * mix (uniform, Zipf(1)):
 *
 *   1. for each mix: closed loop on A (`connections` connections, `max-seconds`)  → max / cold
 *                    then the same on A again                                       → max / warm
 *   2. for each mix: paced `paced-rps` req/s for `paced-seconds` on A              → paced / warm
 *   3. for each mix: the same on a fresh population B                              → paced / cold
 *
 * so that every cold closed loop follows a full-speed run (the warm-up or the
 * other mix's warm run), not a process back from idle (V8 shrinks its heap when
 * idle); A's keys are at most ~15 s old when paced warm (the leases live 30 s).
 *
 * The paced runs are paced as bench/lib/timeline.ts paces them (ten 2-connection
 * autocannon instances started 100 ms apart), keeping every latency so that
 * rounds pool. Figures, per system × mix × cold/warm, pooled over rounds:
 *
 * - req/s of the closed loop; × ceiling = its ratio to `none` in the same round
 *   (mean over rounds); × rlflex likewise;
 * - server CPU µs/req: the server process's CPU time (`/__bench/stats`) over the
 *   closed-loop run divided by its requests; × bare = ratio to `none`'s;
 * - Redis cmds/req over the closed-loop run, from `INFO commandstats` deltas: all
 *   commands clients sent, with a script call counted once: the commands run
 *   inside scripts (every `redis.call` name in lua/ and in rate-limiter-flexible's
 *   script) are not counted, and neither is the bench's own INFO. tandem's direct
 *   GETs (the policy-version poll, ~1/s) fall under the script's GET and go
 *   uncounted too: ≤ 0.0002 cmds/req at these rates. The raw per-command deltas
 *   are in cold.json;
 * - Redis CPU ms per 1,000 requests (`INFO cpu`, used_cpu_sys + used_cpu_user);
 * - gen. core busy (the generator's CPU over wall time: near 100%, it set the pace)
 *   and others on server core (the share of core 0 that other processes took,
 *   from /proc/stat minus the server's own CPU time): how far to trust a req/s.
 *   On a shared machine, a system's round in which other processes took more than
 *   10% of either core during any run is run again, fresh (`--retries`, default 2
 *   per bench run; 0 in --smoke); the re-runs are listed in the output;
 * - at the paced rate: client-side latency p50/p99/p99.9 (all rounds' samples
 *   pooled), p99 added = system p99 − `none` p99 (and `none-b`'s is the noise
 *   floor), and the server's event-loop delay p99 over the run (a
 *   `/__bench/loop/window`, ms beyond the 1 ms sampling interval; mean over rounds),
 *   and V8's collections in that window (GC pause ms per 1,000 requests, and the
 *   longest pause of any round): whether the tail is the collector's or not.
 *
 * Writes bench/results/cold.md and cold.json (`--smoke`: cold-smoke.*) with the
 * date, the machine and the commit. Exits non-zero when a run produced no figures.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Redis } from 'ioredis';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { makeApiKeys } from './lib/keys.js';
import { type LoadGen, type MaxResult, type PacedResult, canPin, pinPid, startLoadGen } from './lib/pinned.js';
import { type ServerProcess, startServer } from './lib/processes.js';
import { gitCommit } from './lib/git-commit.js';

const ALL = ['none', 'none-b', 'tandem', 'tandem-local', 'rlflex', 'hono-rate-limiter'];
const REDIS_SYSTEMS = new Set(['tandem', 'rlflex']);
const MIXES = ['uniform', 'zipf'] as const;
type Mix = (typeof MIXES)[number];
type Variant = 'cold' | 'warm';

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'max-seconds': { type: 'string' },
    'paced-seconds': { type: 'string' },
    'paced-rps': { type: 'string', default: '1200' },
    connections: { type: 'string', default: '50' },
    keys: { type: 'string', default: '12000' },
    systems: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    retries: { type: 'string' },
  },
});
const smoke = values.smoke ?? false;
const rounds = Number(values.rounds ?? (smoke ? 1 : 2));
const maxSeconds = Number(values['max-seconds'] ?? (smoke ? 0.5 : 3.5));
const pacedSeconds = Number(values['paced-seconds'] ?? (smoke ? 0.4 : 2));
const pacedRps = Number(values['paced-rps']);
const connections = Number(values.connections);
const keyCount = Number(values.keys);
const warmupSeconds = smoke ? 0.2 : 1;
/** Run only when named: the bare app plus a known cost per request (BENCH_BUSY_US, bench/server.ts). */
const OPTIONAL = ['none-busy'];
const systems = values.systems ? values.systems.split(',') : ALL;
for (const s of systems) if (!ALL.includes(s) && !OPTIONAL.includes(s)) throw new Error(`unknown system ${s}; known: ${[...ALL, ...OPTIONAL].join(', ')}`);
const pin = !values['no-pin'] && canPin(2);
const SERVER_CPU = pin ? '0' : undefined;
const OTHER_CPU = pin ? '1' : undefined;
/** A system's round is run again (fresh process, fresh keys) when other processes took more than this share of a core. */
const DISTURBED = 0.1;
const retries = Number(values.retries ?? (smoke ? 0 : 2));

/** Commands that the systems' scripts run inside Redis: INFO commandstats counts them too. */
function scriptInnerCommands(): Set<string> {
  const names = new Set<string>();
  const scan = (text: string) => {
    for (const m of text.matchAll(/redis\.p?call\(\s*['"]([A-Za-z]+)['"]/g)) names.add((m[1] as string).toLowerCase());
  };
  const luaDir = fileURLToPath(new URL('../lua/', import.meta.url));
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(`${dir}${e.name}/`);
      else if (e.name.endsWith('.lua')) scan(readFileSync(`${dir}${e.name}`, 'utf8'));
    }
  };
  walk(luaDir);
  const require = createRequire(import.meta.url);
  scan(readFileSync(require.resolve('rate-limiter-flexible/lib/RateLimiterRedis.js'), 'utf8'));
  return names;
}
const INNER = scriptInnerCommands();
const NOT_COUNTED = new Set([...INNER, 'info']);

/** Busy jiffies of one CPU (/proc/stat), to see what else ran on the server's core. */
function cpuBusyMs(cpu: string | undefined): number {
  if (cpu === undefined) return Number.NaN;
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
    // user nice system idle iowait irq softirq steal: irq and softirq left out (the bench's own
    // loopback traffic is processed there, charged to no process), steal kept (the hypervisor's).
    const [user = 0, nice = 0, system = 0, , , , , steal = 0] = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
    return ((user + nice + system + steal) * 1000) / 100; // USER_HZ = 100
  } catch {
    return Number.NaN;
  }
}

type RedisSnap = { calls: Map<string, number>; cpuS: number };
async function redisSnap(admin: Redis): Promise<RedisSnap> {
  const stats = await admin.info('commandstats');
  const calls = new Map<string, number>();
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1] as string, Number(m[2]));
  const cpu = await admin.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(cpu)?.[1] ?? 0);
  return { calls, cpuS: field('used_cpu_sys') + field('used_cpu_user') };
}
type RedisDelta = { commands: number; cpuS: number; byCommand: Record<string, number> };
function redisDelta(a: RedisSnap, b: RedisSnap): RedisDelta {
  const byCommand: Record<string, number> = {};
  let commands = 0;
  for (const [cmd, n] of b.calls) {
    const d = n - (a.calls.get(cmd) ?? 0);
    if (d <= 0) continue;
    byCommand[cmd] = d;
    if (!NOT_COUNTED.has(cmd.split('|')[0] as string)) commands += d;
  }
  return { commands, cpuS: b.cpuS - a.cpuS, byCommand };
}

/** One run of one system: what the client, the server and Redis saw. */
type Run = {
  round: number;
  system: string;
  mix: Mix;
  variant: Variant;
  kind: 'max' | 'paced';
  requests: number;
  seconds: number;
  ok: number;
  limited: number;
  errors: number;
  genBusy: number;
  serverCpuUs: number;
  redis: RedisDelta;
  /** The limiter's own counters over the run (tandem systems). */
  counters: Record<string, number>;
  /** Share of the server's core that other processes (not the server) used over the run. */
  foreignCore: number;
  /** Share of the generator's core that processes other than the generator, Redis and this script used. */
  foreignGenCore: number;
  latencies?: number[];
  loopP99Ms?: number;
  /** V8's collections during the paced window: their total and longest pause, ms. */
  gcMs?: number;
  gcMaxMs?: number;
};

const COUNTERS = ['leaseCalls', 'aheadCalls', 'returnCalls', 'degradedDecisions'];

async function measure(
  ctx: { gen: LoadGen; admin: Redis; server: ServerProcess; round: number; system: string },
  mix: Mix,
  variant: Variant,
  kind: 'max' | 'paced',
  keys: string[],
  seed: number,
): Promise<Run> {
  const { gen, admin, server } = ctx;
  const s0 = await server.stats();
  const r0 = await redisSnap(admin);
  const c0 = cpuBusyMs(SERVER_CPU);
  const g0 = cpuBusyMs(OTHER_CPU);
  const self0 = process.cpuUsage();
  const w0 = performance.now();
  let loopName: string | undefined;
  if (kind === 'paced') {
    loopName = `${mix}-${variant}`;
    const from = Date.now();
    await fetch(`${server.url}/__bench/loop/window?name=${loopName}&from=${from}&to=${from + (pacedSeconds + Math.min(1, pacedSeconds)) * 1000 + 200}`);
  }
  const res: MaxResult | PacedResult =
    kind === 'max'
      ? await gen.run({ kind: 'max', urls: [server.url], keys, mix, seed, seconds: maxSeconds, connections })
      : await gen.run({ kind: 'paced', urls: [server.url], keys, mix, seed, seconds: pacedSeconds, rps: pacedRps });
  const c1 = cpuBusyMs(SERVER_CPU);
  const g1 = cpuBusyMs(OTHER_CPU);
  const self = process.cpuUsage(self0);
  const w1 = performance.now();
  const r1 = await redisSnap(admin);
  const s1 = await server.stats();
  const serverCpuUs = Number(s1.cpuMicros) - Number(s0.cpuMicros);
  const counters: Record<string, number> = {};
  for (const c of COUNTERS) if (s1[c] !== undefined) counters[c] = Number(s1[c]) - Number(s0[c] ?? 0);
  const run: Run = {
    round: ctx.round,
    system: ctx.system,
    mix,
    variant,
    kind,
    requests: res.requests,
    seconds: 'seconds' in res ? res.seconds : (res.endedMs - res.startedMs) / 1000,
    ok: res.ok,
    limited: res.limited,
    errors: res.errors,
    genBusy: res.genBusy,
    serverCpuUs,
    redis: redisDelta(r0, r1),
    foreignCore: Math.max(0, (c1 - c0 - serverCpuUs / 1000) / (w1 - w0)),
    foreignGenCore: 0,
    counters,
  };
  run.foreignGenCore = Math.max(0, (g1 - g0 - res.genCpuMs - run.redis.cpuS * 1000 - (self.user + self.system) / 1000) / (w1 - w0));
  if ('latencies' in res) {
    run.latencies = res.latencies;
    const loop = (await (await fetch(`${server.url}/__bench/loop`)).json()) as { windows: Record<string, { p99Ms: number; gcMs: number; gcMaxMs: number }> };
    const w = loop.windows[loopName as string];
    run.loopP99Ms = w?.p99Ms;
    run.gcMs = w?.gcMs;
    run.gcMaxMs = w?.gcMaxMs;
  }
  return run;
}

function rotate<T>(xs: readonly T[], by: number): T[] {
  const k = ((by % xs.length) + xs.length) % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

async function runSystem(gen: LoadGen, redis: RedisProcess, admin: Redis, round: number, system: string, log: (s: string) => void): Promise<Run[]> {
  await admin.flushall();
  const env: Record<string, string> = { BENCH_LOOP_DELAY: '1' };
  if (REDIS_SYSTEMS.has(system)) env.REDIS_URL = redis.url;
  const server = await startServer(system, env, SERVER_CPU);
  const runs: Run[] = [];
  try {
    await new Promise((r) => setTimeout(r, 200)); // connections, script loads, first heartbeat
    // JIT warm-up on throwaway keys: cold keys, not a cold process.
    await gen.run({ kind: 'max', urls: [server.url], keys: makeApiKeys(2000), mix: 'uniform', seed: 99, seconds: warmupSeconds, connections });
    const ctx = { gen, admin, server, round, system };
    const mixes = rotate(MIXES, round);
    const seed = (mix: Mix, n: number) => 1000 * round + (mix === 'zipf' ? 100 : 0) + n;
    const a = new Map(mixes.map((mix) => [mix, makeApiKeys(keyCount)]));
    // Full speed first, each cold run right after a full-speed run (the warm-up or the
    // other mix's warm run), so that no cold run starts on a process just back from idle.
    for (const mix of mixes) {
      runs.push(await measure(ctx, mix, 'cold', 'max', a.get(mix) as string[], seed(mix, 1)));
      runs.push(await measure(ctx, mix, 'warm', 'max', a.get(mix) as string[], seed(mix, 2)));
      const m = runs.filter((r) => r.mix === mix && r.kind === 'max').map((r) => `${r.variant} ${Math.round(r.requests / r.seconds)} req/s`);
      log(`round ${round + 1}/${rounds} ${system} ${mix}: ${m.join(', ')}`);
    }
    // Then paced: warm on the populations just run (well within a lease's TTL), cold on fresh ones.
    for (const mix of mixes) runs.push(await measure(ctx, mix, 'warm', 'paced', a.get(mix) as string[], seed(mix, 3)));
    for (const mix of mixes) runs.push(await measure(ctx, mix, 'cold', 'paced', makeApiKeys(keyCount), seed(mix, 4)));
  } finally {
    await server.stop();
  }
  return runs;
}

// ---- pooling and reporting ----

type Row = {
  system: string;
  mix: Mix;
  variant: Variant;
  rps: number;
  xCeiling: number;
  xRlflex: number;
  limitedPct: number;
  errors: number;
  serverCpuUsPerReq: number;
  xBareCpu: number;
  redisCmdsPerReq: number | null;
  redisCpuMsPer1k: number | null;
  genBusy: number;
  /** Mean share of the server's core other processes took during the closed-loop runs. */
  foreignCore: number;
  pacedRequests: number;
  pacedRuns: number;
  pacedErrors: number;
  p50: number;
  p99: number;
  p999: number;
  p99Added: number;
  loopP99Ms: number;
  /** GC pause ms per 1,000 paced requests, and the longest pause of any paced run. */
  pacedGcMsPer1k: number;
  pacedGcMaxMs: number;
  pacedServerCpuUsPerReq: number;
  pacedRedisCmdsPerReq: number | null;
  pacedRedisCpuMsPer1k: number | null;
  /** Per-round figures, for the spread. */
  perRound: { rps: number[]; xCeiling: number[]; p99: number[] };
  counters: Record<string, number>;
};

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const mean = (xs: number[]) => (xs.length ? sum(xs) / xs.length : Number.NaN);
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function pool(runs: Run[]): Row[] {
  const rows: Row[] = [];
  const pick = (system: string, mix: Mix, variant: Variant, kind: 'max' | 'paced') =>
    runs.filter((r) => r.system === system && r.mix === mix && r.variant === variant && r.kind === kind).sort((a, b) => a.round - b.round);
  const rps = (r: Run) => r.requests / r.seconds;
  const cpu = (r: Run) => r.serverCpuUs / Math.max(1, r.requests);
  const pacedP99 = (system: string, mix: Mix, variant: Variant) => {
    const all = pick(system, mix, variant, 'paced').flatMap((r) => r.latencies ?? []);
    return percentile(all.sort((a, b) => a - b), 99);
  };
  for (const mix of MIXES) {
    for (const variant of ['cold', 'warm'] as Variant[]) {
      const base = pick('none', mix, variant, 'max');
      const flex = pick('rlflex', mix, variant, 'max');
      const baseP99 = pacedP99('none', mix, variant);
      for (const system of systems) {
        const max = pick(system, mix, variant, 'max');
        const paced = pick(system, mix, variant, 'paced');
        if (!max.length) continue;
        // Ratios per round against the same round's run, then the mean over rounds.
        const ratio = (mine: Run[], other: Run[], f: (r: Run) => number) =>
          mean(mine.map((r) => other.find((o) => o.round === r.round)).flatMap((o, i) => (o ? [f(mine[i] as Run) / f(o)] : [])));
        const req = sum(max.map((r) => r.requests));
        const lat = paced.flatMap((r) => r.latencies ?? []).sort((a, b) => a - b);
        const usesRedis = REDIS_SYSTEMS.has(system);
        const pacedReq = sum(paced.map((r) => r.requests));
        const counters: Record<string, number> = {};
        for (const r of max) for (const [k, v] of Object.entries(r.counters)) counters[k] = (counters[k] ?? 0) + v;
        rows.push({
          system,
          mix,
          variant,
          rps: mean(max.map(rps)),
          xCeiling: ratio(max, base, rps),
          xRlflex: ratio(max, flex, rps),
          limitedPct: (100 * sum(max.map((r) => r.limited))) / Math.max(1, req),
          errors: sum(max.map((r) => r.errors)),
          serverCpuUsPerReq: sum(max.map((r) => r.serverCpuUs)) / Math.max(1, req),
          xBareCpu: ratio(max, base, cpu),
          redisCmdsPerReq: usesRedis ? sum(max.map((r) => r.redis.commands)) / Math.max(1, req) : null,
          redisCpuMsPer1k: usesRedis ? (sum(max.map((r) => r.redis.cpuS)) * 1e6) / Math.max(1, req) : null,
          genBusy: Math.max(...max.map((r) => r.genBusy)),
          foreignCore: mean(max.map((r) => r.foreignCore)),
          pacedRequests: pacedReq,
          pacedRuns: paced.length,
          pacedErrors: sum(paced.map((r) => r.errors)),
          p50: percentile(lat, 50),
          p99: percentile(lat, 99),
          p999: percentile(lat, 99.9),
          p99Added: percentile(lat, 99) - baseP99,
          loopP99Ms: mean(paced.flatMap((r) => (r.loopP99Ms === undefined ? [] : [r.loopP99Ms]))),
          pacedGcMsPer1k: (sum(paced.map((r) => r.gcMs ?? Number.NaN)) * 1000) / Math.max(1, pacedReq),
          pacedGcMaxMs: Math.max(...paced.map((r) => r.gcMaxMs ?? Number.NaN)),
          pacedServerCpuUsPerReq: sum(paced.map((r) => r.serverCpuUs)) / Math.max(1, pacedReq),
          pacedRedisCmdsPerReq: usesRedis ? sum(paced.map((r) => r.redis.commands)) / Math.max(1, pacedReq) : null,
          pacedRedisCpuMsPer1k: usesRedis ? (sum(paced.map((r) => r.redis.cpuS)) * 1e6) / Math.max(1, pacedReq) : null,
          perRound: {
            rps: max.map((r) => Math.round(rps(r))),
            xCeiling: max.map((r) => {
              const o = base.find((x) => x.round === r.round);
              return o ? Number((rps(r) / rps(o)).toFixed(3)) : Number.NaN;
            }),
            p99: paced.map((r) => percentile([...(r.latencies ?? [])].sort((a, b) => a - b), 99)),
          },
          counters,
        });
      }
    }
  }
  return rows;
}

const f = (n: number | null | undefined, d = 1) => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d));
const signed = (n: number, d = 2) => (Number.isFinite(n) ? `${n >= 0 ? '+' : ''}${n.toFixed(d)}` : '-');

function table(rows: Row[]): string {
  const head =
    '| mix | keys | system | req/s | × ceiling | × rlflex | 429 % | server CPU µs/req | × bare CPU | Redis cmds/req | Redis CPU ms/1k req | p50 ms | p99 ms | p99.9 ms | p99 added ms | loop delay p99 ms | gen. core busy | others on server core |';
  const sep = `|${'---|'.repeat(3)}${'---:|'.repeat(15)}`;
  const body = rows.map(
    (r) =>
      `| ${r.mix} | ${r.variant} | ${r.system} | ${Math.round(r.rps)} | ${f(r.xCeiling, 3)} | ${f(r.xRlflex, 2)} | ${f(r.limitedPct, 1)} | ${f(r.serverCpuUsPerReq, 1)} | ${f(r.xBareCpu, 2)} | ${f(r.redisCmdsPerReq, 4)} | ${f(r.redisCpuMsPer1k, 2)} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.p999, 2)} | ${r.system === 'none' ? '0' : signed(r.p99Added)} | ${f(r.loopP99Ms, 2)} | ${f(100 * r.genBusy, 0)}% | ${f(100 * r.foreignCore, 0)}% |`,
  );
  return [head, sep, ...body].join('\n');
}

/** The paced runs' costs: at 1,200 req/s a cold key finds little to batch with. */
function pacedTable(rows: Row[]): string {
  const lines = [
    '| mix | keys | system | requests per run | server CPU µs/req | × bare CPU | Redis cmds/req | Redis CPU ms/1k req | loop delay p99 ms | GC ms/1k req | longest GC pause ms |',
    `|${'---|'.repeat(3)}${'---:|'.repeat(8)}`,
  ];
  for (const r of rows) {
    const bare = rows.find((x) => x.system === 'none' && x.mix === r.mix && x.variant === r.variant);
    lines.push(
      `| ${r.mix} | ${r.variant} | ${r.system} | ${Math.round(r.pacedRequests / Math.max(1, r.pacedRuns))} | ${f(r.pacedServerCpuUsPerReq, 1)} | ${f(bare ? r.pacedServerCpuUsPerReq / bare.pacedServerCpuUsPerReq : Number.NaN, 2)} | ${f(r.pacedRedisCmdsPerReq, 3)} | ${f(r.pacedRedisCpuMsPer1k, 2)} | ${f(r.loopP99Ms, 2)} | ${f(r.pacedGcMsPer1k, 2)} | ${f(r.pacedGcMaxMs, 2)} |`,
    );
  }
  return lines.join('\n');
}

type Target = { target: string; cells: Record<string, { measured: string; met: boolean | null }> };

function targets(rows: Row[]): Target[] {
  const get = (system: string, mix: Mix, variant: Variant) => rows.find((r) => r.system === system && r.mix === mix && r.variant === variant);
  const combos = MIXES.flatMap((mix) => (['cold', 'warm'] as Variant[]).map((variant) => ({ mix, variant, name: `${mix} ${variant}` })));
  const out: Target[] = [];
  const add = (target: string, cell: (mix: Mix, variant: Variant) => { measured: string; met: boolean | null } | undefined, only?: string) => {
    const cells: Target['cells'] = {};
    for (const c of combos) {
      if (only && c.name !== only) continue;
      const v = cell(c.mix, c.variant);
      if (v) cells[c.name] = v;
    }
    if (Object.keys(cells).length) out.push({ target, cells });
  };
  const num = (v: number | null | undefined, ok: (x: number) => boolean, show: (x: number) => string) =>
    v === null || v === undefined || !Number.isFinite(v) ? undefined : { measured: show(v), met: ok(v) };
  add('tandem throughput ≥ 0.90 × ceiling', (m, v) => num(get('tandem', m, v)?.xCeiling, (x) => x >= 0.9, (x) => f(x, 3)));
  add('tandem throughput ≥ 1.5 × rlflex', (m, v) => num(get('tandem', m, v)?.xRlflex, (x) => x >= 1.5, (x) => `${f(x, 2)}×`));
  add('tandem server CPU/req ≤ 1.25 × bare', (m, v) => num(get('tandem', m, v)?.xBareCpu, (x) => x <= 1.25, (x) => `${f(x, 2)}×`));
  add('tandem Redis cmds/req ≤ 0.05 (cold Zipf, full speed)', (m, v) => num(get('tandem', m, v)?.redisCmdsPerReq, (x) => x <= 0.05, (x) => f(x, 4)), 'zipf cold');
  add(`tandem p99 added ≤ 0.5 ms at ${pacedRps} req/s`, (m, v) => {
    const r = get('tandem', m, v);
    const floor = get('none-b', m, v);
    return num(r?.p99Added, (x) => x <= 0.5, (x) => `${signed(x)} ms${floor ? ` (floor ${signed(floor.p99Added)})` : ''}`);
  });
  add('tandem-local throughput ≥ hono-rate-limiter', (m, v) => {
    const a = get('tandem-local', m, v);
    const b = get('hono-rate-limiter', m, v);
    return a && b ? num(a.rps / b.rps, (x) => x >= 1, (x) => `${f(x, 3)}×`) : undefined;
  });
  add('tandem-local throughput ≥ 0.90 × ceiling', (m, v) => num(get('tandem-local', m, v)?.xCeiling, (x) => x >= 0.9, (x) => f(x, 3)));
  add('tandem-local server CPU/req ≤ 1.25 × bare', (m, v) => num(get('tandem-local', m, v)?.xBareCpu, (x) => x <= 1.25, (x) => `${f(x, 2)}×`));
  return out;
}

function targetsTable(t: Target[]): string {
  const cols = ['uniform cold', 'uniform warm', 'zipf cold', 'zipf warm'];
  const lines = ['| target | uniform cold | uniform warm | zipf cold | zipf warm |', '|---|---|---|---|---|'];
  for (const x of t) {
    lines.push(`| ${x.target} | ${cols.map((c) => (x.cells[c] ? `${x.cells[c].measured}${x.cells[c].met ? '' : ' **no**'}` : '')).join(' | ')} |`);
  }
  return lines.join('\n');
}

function noiseFloor(rows: Row[]): string {
  const lines: string[] = [];
  for (const r of rows.filter((x) => x.system === 'none-b')) {
    lines.push(
      `- ${r.mix} ${r.variant}: none-b req/s × none = ${f(r.xCeiling, 3)} (per round ${r.perRound.xCeiling.join(', ')}), CPU/req × none = ${f(r.xBareCpu, 3)}, p99 − none p99 = ${signed(r.p99Added)} ms`,
    );
  }
  return lines.join('\n');
}


async function main(): Promise<void> {
  const t0 = Date.now();
  const log = (s: string) => console.error(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}`);
  if (pin) pinPid(process.pid, OTHER_CPU as string); // this script beside the generator, off the server's core
  const redis = await RedisProcess.start();
  if (pin && redis.proc?.pid) pinPid(redis.proc.pid, OTHER_CPU as string);
  const admin = redis.client();
  const gen = await startLoadGen(OTHER_CPU);
  const runs: Run[] = [];
  const reruns: { round: number; system: string; disturbed: number }[] = [];
  let retriesLeft = pin ? retries : 0;
  const disturbed = (block: Run[]) => Math.max(0, ...block.map((r) => Math.max(r.foreignCore, r.foreignGenCore)));
  log(`${rounds} round(s) × ${systems.length} systems × ${MIXES.length} mixes; closed loop ${maxSeconds} s × ${connections} connections, paced ${pacedRps} req/s × ${pacedSeconds} s; ${pin ? 'server on core 0, generator and Redis on core 1' : 'not pinned'}`);
  try {
    for (let round = 0; round < rounds; round++) {
      // Rotated so that each system's place in the order differs from round to round.
      const order = rotate(systems, round * Math.ceil(systems.length / rounds));
      for (const system of order) {
        let block = await runSystem(gen, redis, admin, round, system, log);
        while (retriesLeft > 0 && disturbed(block) > DISTURBED) {
          retriesLeft--;
          reruns.push({ round, system, disturbed: Number(disturbed(block).toFixed(3)) });
          log(`round ${round + 1} ${system}: other processes took ${(100 * disturbed(block)).toFixed(0)}% of a core; running it again`);
          block = await runSystem(gen, redis, admin, round, system, log);
        }
        runs.push(...block);
      }
    }
  } finally {
    await gen.stop();
    admin.disconnect();
    await redis.stop();
  }

  const rows = pool(runs);
  const t = targets(rows);
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
  const date = new Date().toISOString();
  const commit = gitCommit();
  const command = `npm run bench:cold${smoke ? ' -- --smoke' : ''}${values.rounds || values['max-seconds'] || values['paced-seconds'] || values.systems ? ` (rounds ${rounds}, max ${maxSeconds} s, paced ${pacedSeconds} s, systems ${systems.join(',')})` : ''}`;
  const genBusy = Math.max(...rows.filter((r) => r.system === 'none').map((r) => r.genBusy));
  const md = [
    '## Cold keys: the limiter the way users meet it',
    '',
    `Date: ${date}. Commit: ${commit}. Machine: ${machine}. Command: \`${command}\`.`,
    '',
    `${rounds} interleaved round(s); per round, system and mix a fresh population of ${keyCount.toLocaleString('en-US')} API keys for the cold closed loop (then the same keys again: warm) and another for the cold paced run. ` +
      `Closed loop: ${connections} connections, ${maxSeconds} s. Paced: ${pacedRps.toLocaleString('en-US')} req/s for ${pacedSeconds} s (bench/lib/timeline.ts's pacing; ` +
      `latencies pooled over rounds). ${pin ? 'Server pinned to core 0; load generator, Redis and this script to core 1.' : 'No CPU pinning.'} ` +
      `Ratios are per round against the same round's run, averaged. Server CPU, Redis cmds and Redis CPU: over the closed-loop run; Redis cmds/req from INFO commandstats, a script call counted once. ` +
      `p99 added = p99 − none's p99 at the paced rate (none-b's is the noise floor); loop delay p99 = the server's event-loop delay over the paced run; GC ms/1k req and longest GC pause: V8's collections (perf_hooks gc entries) during the paced runs. ` +
      `gen. core busy = the load generator's CPU time over wall time in the closed loop (highest round; near 100%, the generator rather than the server set the pace); ` +
      `others on server core = share of the server's core used by other processes during the closed loop (mean over rounds; the machine is shared). ` +
      `A system's round in which other processes took more than ${100 * DISTURBED}% of either core during a run is run again (fresh process and keys), at most ${retries} times per bench run: ` +
      `${reruns.length ? reruns.map((x) => `round ${x.round + 1} ${x.system} (${(100 * x.disturbed).toFixed(0)}%)`).join(', ') : 'none was'}. ` +
      `Busiest generator core during \`none\`'s closed loop: ${f(100 * genBusy, 0)}%${genBusy > 0.95 ? ' (**the generator may have set the ceiling**)' : ''}.`,
    '',
    table(rows),
    '',
    `### At the paced rate (${pacedRps.toLocaleString('en-US')} req/s): what each request cost`,
    '',
    pacedTable(rows),
    '',
    '### Noise floor (a second bare process, none-b, against none)',
    '',
    noiseFloor(rows) || '(none-b not run)',
    '',
    '### Targets (issue 15)',
    '',
    targetsTable(t),
    '',
  ].join('\n');
  console.log(`\n${md}`);

  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const suffix = smoke ? '-smoke' : '';
  const slim = runs.map(({ latencies, ...r }) => ({ ...r, pacedP99: latencies ? percentile([...latencies].sort((a, b) => a - b), 99) : undefined }));
  writeFileSync(
    new URL(`cold${suffix}.json`, dir),
    `${JSON.stringify(
      {
        date,
        machine,
        commit,
        command,
        reruns,
        options: { rounds, retries, maxSeconds, pacedSeconds, pacedRps, connections, keys: keyCount, warmupSeconds, systems, pinned: pin, scriptInnerCommands: [...INNER].sort() },
        rows,
        targets: t,
        runs: slim,
      },
      null,
      2,
    )}\n`,
  );
  writeFileSync(new URL(`cold${suffix}.md`, dir), md);

  const problems: string[] = [];
  for (const system of systems) {
    for (const mix of MIXES) {
      for (const variant of ['cold', 'warm'] as Variant[]) {
        const r = rows.find((x) => x.system === system && x.mix === mix && x.variant === variant);
        if (!r || !(r.rps > 0) || !Number.isFinite(r.p99) || !Number.isFinite(r.serverCpuUsPerReq)) problems.push(`${system} ${mix} ${variant}: no figures`);
        else if (r.errors + r.pacedErrors > 0) console.warn(`bench:cold: ${system} ${mix} ${variant}: ${r.errors + r.pacedErrors} errors`);
      }
    }
  }
  if (problems.length) {
    console.error(`bench:cold problems:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  } else log(`${runs.length} runs produced figures`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
