/**
 * `npm run bench`: every system under the same autocannon load, scenario by
 * scenario, in one run. Each system runs in its own server process(es)
 * (`bench/server.ts`) against a redis-server this script starts on a free port,
 * flushed between runs.
 *
 *   npm run bench                           all scenarios
 *   npm run bench -- --scenario abuser      one scenario
 *   npm run bench -- --duration 5           seconds per closed-loop run (default 10)
 *   npm run bench -- --seed-seconds 30      length of the seed-model run (default 60)
 *   npm run bench -- --scenario spike       a 12,000-fresh-key blast, then 1,200 req/s past the lease sweep
 *   npm run bench -- --spike-seconds 14     steady phase after the blast (default 40); with LEASE_TTL_MS=8000
 *                                           in the environment the sweep comes within it
 *   npm run bench -- --systems none,tandem  only these systems
 *   npm run bench -- --scenario rules       policy scenarios: rules (matching cost), seed001 (tiers), two-limits
 *   npm run bench -- --rounds 3             interleaved rounds of the rules scenario (default 3)
 *   npm run bench -- --scenario algorithms  the four algorithms, one run each: throughput, Redis commands, bytes per key,
 *                                           over- and under-admission against each one's ideal (~1.5 min)
 *   npm run bench:smoke                     every scenario for ~2 s: checks figures exist
 *
 * Writes bench/results/latest.json, latest.md and seed-timeline.svg; the policy
 * scenarios' (and `algorithms`') figures also go to bench/results/policy.json and policy.md (merged:
 * a run of one of them replaces only its own section). LEASE_TTL_MS,
 * LEASE_COLD_TOKENS and LEASE_MAX_TOKENS in the environment reach the servers.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { closedLoop } from './lib/closed-loop.js';
import cliProgress from 'cli-progress';
import type { Redis } from 'ioredis';
import { createKeyHasher } from '../src/store/key-name.js';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { type Accuracy, type Decisions, accuracy } from './lib/accuracy.js';
import { timelineSvg } from './lib/chart.js';
import { type KeyPicker, makeApiKeys, uniform, zipf } from './lib/keys.js';
import { type ServerProcess, startServer } from './lib/processes.js';
import { countCommands } from './lib/redis-commands.js';
import { keyMemory, redisCpuSeconds } from './lib/redis-info.js';
import { type Second, runTimeline, seedSchedule } from './lib/timeline.js';
import { failureMarkdown, runFailure } from './scenarios/failure.js';
import {
  type RulesResult,
  type Seed001Result,
  type TwoLimitsResult,
  rulesMarkdown,
  rulesProblems,
  runRules,
  runSeed001,
  runTwoLimits,
  seed001Markdown,
  seed001Problems,
  twoLimitsMarkdown,
  twoLimitsProblems,
} from './scenarios/policy.js';
import { DEFAULT_SPIKE, type SpikeOptions, runSpike, spikeMarkdown, spikeProblems } from './scenarios/spike.js';
import { type AlgorithmsOptions, type AlgorithmsResult, algorithmsMarkdown, algorithmsProblems, algorithmsWarnings, runAlgorithms } from './scenarios/algorithms.js';
import { gitCommit } from './lib/git-commit.js';

const POLICY = { capacity: 40, refillPerSec: 10 };

const { values } = parseArgs({
  options: {
    scenario: { type: 'string' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    smoke: { type: 'boolean', default: false },
    systems: { type: 'string' },
    'seed-seconds': { type: 'string' },
    'spike-seconds': { type: 'string' },
    rounds: { type: 'string' },
  },
});
const onlySystems = values.systems?.split(',');
const smoke = values.smoke ?? false;
const duration = smoke ? 2 : Number(values.duration);
const connections = Number(values.connections);
const seedSeconds = smoke ? 3 : Number(values['seed-seconds'] ?? 60);
const failureSeconds = smoke ? 6 : 30;
// Smoke: a 1-second blast over 3,000 keys, 3 s steady, 2 s leases (the sweep falls inside).
const spikeOptions: SpikeOptions = smoke
  ? { ...DEFAULT_SPIKE, systems: ['none', 'tandem'], keys: 3000, blastSeconds: 1, steadySeconds: 3, leaseTtlMs: 2000 }
  : {
      ...DEFAULT_SPIKE,
      systems: ['none', 'tandem'],
      steadySeconds: Number(values['spike-seconds'] ?? 40),
      leaseTtlMs: Number(process.env.LEASE_TTL_MS ?? DEFAULT_SPIKE.leaseTtlMs),
    };
if (onlySystems) spikeOptions.systems = spikeOptions.systems.filter((x) => onlySystems.includes(x));
// Policy scenarios. rules: 4 documents × 2 systems × rounds closed-loop runs; smoke: one 1-s round.
const rulesSystems = ['tandem-local', 'tandem'].filter((x) => !onlySystems || onlySystems.includes(x));
const rulesSeconds = smoke ? 1 : duration;
const rulesRounds = smoke ? 1 : Number(values.rounds ?? 3);
const policyTandem = !onlySystems || onlySystems.includes('tandem');
const seed001Options = smoke ? { users: 20, perUser: 15, proRequests: 1100 } : { users: 100, perUser: 15, proRequests: 1100 };
// algorithms: per algorithm, a load run and an accuracy run on 4 hot keys × 4 closed loops; smoke: 1 s each.
const algorithmsOptions: Omit<AlgorithmsOptions, 'onRun'> = {
  seconds: smoke ? 1 : duration,
  connections,
  accuracySeconds: smoke ? 1 : 5,
  hotKeys: 4,
  loopsPerKey: 4,
};
const POLICY_SCENARIOS = ['rules', 'seed001', 'two-limits', 'algorithms'];

/** What one load run saw from the client side. */
type Outcome = {
  requests: number;
  seconds: number;
  ok: number;
  limited: number;
  errors: number;
  p50: number;
  p99: number;
  p999: number;
  timeline?: Second[];
  /** Redis commands naming the abuser's key. */
  focusKey?: string;
  focusRequests?: number;
  extra?: Record<string, number>;
};

export type Row = {
  scenario: string;
  system: string;
  nodes: number;
  requests: number;
  rps: number;
  ratio: number;
  p50: number;
  p99: number;
  p999: number;
  ok: number;
  limited: number;
  errors: number;
  serverCpuUsPerReq: number;
  redisCmdsPerReq: number;
  redisCpuMsPer1k: number;
  redisBytesPerKey: number;
  accuracy: Accuracy;
  peakRssMB: number;
  localKeys: number;
  focusCmdsPerReq?: number;
  extra?: Record<string, number>;
  timeline?: Second[];
};

type Ctx = { redis: RedisProcess; admin: Redis; apiKeys: string[] };

type Scenario = {
  name: string;
  describe: string;
  systems: string[];
  nodes: number;
  /** Planned seconds per system, for the progress bar. */
  seconds: number;
  load: (urls: string[], ctx: Ctx) => Promise<Outcome>;
};

const ALL = ['none', 'tandem', 'tandem-local', 'rlflex', 'seed-lua'];
const REDIS_SYSTEMS = new Set(['tandem', 'rlflex', 'seed-lua']);

function maxLoad(urls: string[], pick: KeyPicker, seconds: number, conns = connections): Promise<Outcome> {
  return closedLoop({ urls, pick, seconds, connections: conns });
}

async function pacedLoad(urls: string[], pick: KeyPicker, totalSeconds: number): Promise<Outcome> {
  const r = await runTimeline(urls, seedSchedule(totalSeconds), pick);
  return {
    requests: r.total,
    seconds: totalSeconds,
    ok: r.admitted,
    limited: r.denied,
    errors: r.errors,
    p50: r.p50Ms,
    p99: r.p99Ms,
    p999: r.p999Ms,
    timeline: r.seconds,
  };
}

/** 1,000 normal keys at 500 req/s (paced) and, in parallel, one key hammering at full speed. */
async function abuserLoad(urls: string[], ctx: Ctx, seconds: number): Promise<Outcome> {
  const normalKeys = ctx.apiKeys.slice(0, 1000);
  const abuser = ctx.apiKeys[ctx.apiKeys.length - 1] as string;
  const quiet = await runTimeline(urls, [{ rps: 500, seconds }], uniform(normalKeys, 7));
  // Same normal load again, with the abuser on top.
  const [normal, hammer] = await Promise.all([
    runTimeline(urls, [{ rps: 500, seconds }], uniform(normalKeys, 8)),
    maxLoad(urls, () => abuser, seconds, 10),
  ]);
  return {
    requests: normal.total + hammer.requests,
    seconds,
    ok: normal.admitted + hammer.ok,
    limited: normal.denied + hammer.limited,
    errors: normal.errors + hammer.errors,
    p50: normal.p50Ms,
    p99: normal.p99Ms,
    p999: normal.p999Ms,
    focusKey: abuser,
    focusRequests: hammer.requests,
    extra: {
      normalRequests: normal.total,
      normal429: normal.denied,
      normalP99Quiet: quiet.p99Ms,
      normalP99WithAbuser: normal.p99Ms,
      abuserRps: Math.round(hammer.requests / seconds),
      abuserAdmitted: hammer.ok,
    },
  };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'seed',
    describe: `seed traffic model: 12,000 keys (Zipf), 500 req/s with 4 s bursts to 1,200 req/s, ${seedSeconds} s`,
    systems: ALL,
    nodes: 1,
    seconds: seedSeconds,
    load: (urls, ctx) => pacedLoad(urls, zipf(ctx.apiKeys, 1, 11), seedSeconds),
  },
  {
    name: 'max-uniform',
    describe: `maximum throughput, 12,000 keys picked uniformly, ${duration} s, ${connections} connections`,
    systems: ALL,
    nodes: 1,
    seconds: duration,
    load: (urls, ctx) => maxLoad(urls, uniform(ctx.apiKeys, 1), duration),
  },
  {
    name: 'max-zipf',
    describe: `maximum throughput, 12,000 keys with Zipf(1) popularity, ${duration} s, ${connections} connections`,
    systems: ALL,
    nodes: 1,
    seconds: duration,
    load: (urls, ctx) => maxLoad(urls, zipf(ctx.apiKeys, 1, 2), duration),
  },
  {
    name: 'abuser',
    describe: `one key at full speed (10 connections) while 1,000 normal keys send 500 req/s, ${duration} s (normal keys measured with and without it)`,
    systems: ['none', 'tandem', 'rlflex', 'seed-lua'],
    nodes: 1,
    seconds: 2 * duration,
    load: (urls, ctx) => abuserLoad(urls, ctx, duration),
  },
  {
    name: 'two-nodes',
    describe: `two server processes sharing Redis, requests spread over both, Zipf keys, full speed, ${duration} s`,
    systems: ['none', 'tandem', 'tandem-local', 'rlflex', 'seed-lua'],
    nodes: 2,
    seconds: duration,
    load: (urls, ctx) => maxLoad(urls, zipf(ctx.apiKeys, 1, 5), duration),
  },
];

async function measure(s: Scenario, system: string, ctx: Ctx): Promise<Row> {
  await ctx.admin.flushall();
  const servers: ServerProcess[] = [];
  try {
    for (let i = 0; i < s.nodes; i++) servers.push(await startServer(system, { REDIS_URL: ctx.redis.url }));
    await new Promise((r) => setTimeout(r, 300)); // connections and first heartbeats
    const focus = { key: '' };
    const counter = await countCommands(ctx.redis.url, (args) => {
      if (!focus.key) return false;
      const hashed = createKeyHasher()(focus.key);
      return args.some((a) => a.includes(focus.key) || a.includes(hashed));
    });
    focus.key = s.name === 'abuser' ? (ctx.apiKeys[ctx.apiKeys.length - 1] as string) : '';
    const cpu0 = await redisCpuSeconds(ctx.admin);
    const serverCpu0 = await Promise.all(servers.map(async (x) => Number((await x.stats()).cpuMicros)));
    const out = await s.load(
      servers.map((x) => x.url),
      ctx,
    );
    const cpu1 = await redisCpuSeconds(ctx.admin);
    const commands = Math.max(0, counter.count() - 4); // the INFO calls above
    const focusCommands = counter.matching();
    await counter.stop();
    const stats = await Promise.all(servers.map((x) => x.stats()));
    const decisions = await Promise.all(servers.map(async (x) => (await (await fetch(`${x.url}/__bench/decisions`)).json()) as Decisions));
    const serverCpu = stats.reduce((sum, st, i) => sum + Number(st.cpuMicros) - (serverCpu0[i] as number), 0);
    // The lease manager's own counters, summed over nodes (tandem systems only).
    const counters: Record<string, number> = {};
    for (const name of ['leaseCalls', 'aheadCalls', 'returnCalls', 'degradedDecisions']) {
      if (stats.some((st) => st[name] !== undefined)) counters[name] = stats.reduce((n, st) => n + Number(st[name] ?? 0), 0);
    }
    const usesRedis = REDIS_SYSTEMS.has(system);
    return {
      scenario: s.name,
      system,
      nodes: s.nodes,
      requests: out.requests,
      rps: Math.round(out.requests / out.seconds),
      ratio: 1,
      p50: out.p50,
      p99: out.p99,
      p999: out.p999,
      ok: out.ok,
      limited: out.limited,
      errors: out.errors,
      serverCpuUsPerReq: serverCpu / Math.max(1, out.requests),
      redisCmdsPerReq: usesRedis ? commands / Math.max(1, out.requests) : 0,
      redisCpuMsPer1k: usesRedis ? ((cpu1 - cpu0) * 1e6) / Math.max(1, out.requests) : 0,
      redisBytesPerKey: usesRedis ? (await keyMemory(ctx.admin, { limit: 300, skip: (k) => k.includes('{fleet}') })).memoryUsage : 0,
      accuracy: accuracy(decisions, POLICY),
      peakRssMB: Math.max(...stats.map((st) => Number(st.maxRssBytes ?? 0))) / 2 ** 20,
      localKeys: Math.max(...stats.map((st) => Number(st.localKeys ?? 0))),
      focusCmdsPerReq: out.focusRequests ? focusCommands / out.focusRequests : undefined,
      extra: { ...counters, ...out.extra },
      timeline: out.timeline,
    };
  } finally {
    await Promise.all(servers.map((x) => x.stop()));
  }
}

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');

function table(rows: Row[]): string {
  const head =
    '| system | req/s | × ceiling | server CPU µs/req | p50 ms | p99 ms | p99.9 ms | 200 | 429 | errors | Redis cmds/req | Redis CPU ms/1k req | Redis bytes/key | over-admitted | under-admitted | peak RSS MB | local keys |';
  const sep = `|${'---|'.repeat(17)}`;
  const body = rows.map(
    (r) =>
      `| ${r.system} | ${r.rps} | ${f(r.ratio, 3)} | ${f(r.serverCpuUsPerReq)} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.p999, 2)} | ${r.ok} | ${r.limited} | ${r.errors} | ${f(r.redisCmdsPerReq, 4)} | ${f(r.redisCpuMsPer1k, 2)} | ${f(r.redisBytesPerKey, 0)} | ${r.accuracy.over} (${f(r.accuracy.overPct, 2)}%) | ${r.accuracy.under} (${f(r.accuracy.underPct, 2)}%) | ${f(r.peakRssMB, 0)} | ${r.localKeys} |`,
  );
  return [head, sep, ...body].join('\n');
}

function abuserTable(rows: Row[]): string {
  const lines = rows.map((r) => {
    const e = r.extra ?? {};
    return `| ${r.system} | ${e.abuserRps} | ${e.abuserAdmitted} | ${f(r.focusCmdsPerReq ?? Number.NaN, 4)} | ${e.normalRequests} | ${e.normal429} | ${f(e.normalP99Quiet ?? 0, 2)} | ${f(e.normalP99WithAbuser ?? 0, 2)} |`;
  });
  return [
    '| system | abuser req/s | abuser admitted | Redis cmds per abuser request | normal requests | normal 429 | normal p99 ms, alone | normal p99 ms, with abuser |',
    `|${'---|'.repeat(8)}`,
    ...lines,
  ].join('\n');
}

type Target = { target: string; measured: string; met: boolean | null };

function targets(rows: Row[]): Target[] {
  const get = (scenario: string, system: string) => rows.find((r) => r.scenario === scenario && r.system === system);
  const out: Target[] = [];
  const add = (target: string, value: number | undefined, ok: (v: number) => boolean, show: (v: number) => string) => {
    if (value === undefined || Number.isNaN(value)) return;
    out.push({ target, measured: show(value), met: ok(value) });
  };
  const zipfT = get('max-zipf', 'tandem');
  add('two-tier throughput ≥ 90% of the no-limiter ceiling (max-zipf)', zipfT?.ratio, (v) => v >= 0.9, (v) => `${f(100 * v)}%`);
  const flex = get('max-zipf', 'rlflex');
  if (zipfT && flex) add('two-tier throughput ≥ 1.5× rate-limiter-flexible (max-zipf)', zipfT.rps / flex.rps, (v) => v >= 1.5, (v) => `${f(v, 2)}×`);
  add('Redis commands/request ≤ 0.2 at full speed, Zipf', zipfT?.redisCmdsPerReq, (v) => v <= 0.2, (v) => f(v, 3));
  const seedT = get('seed', 'tandem');
  add('Redis commands/request ≤ 0.35 on the seed model (seed design: 2)', seedT?.redisCmdsPerReq, (v) => v <= 0.35, (v) => `${f(v, 3)} (seed-lua: ${f(get('seed', 'seed-lua')?.redisCmdsPerReq ?? Number.NaN, 2)})`);
  add('Redis commands/request ≤ 0.01 for the abuser key', get('abuser', 'tandem')?.focusCmdsPerReq, (v) => v <= 0.01, (v) => f(v, 4));
  const seedNone = get('seed', 'none');
  if (seedT?.timeline && seedNone?.timeline) {
    // Per-second p99 in the seconds at 1,200 req/s, median over those seconds, with and without.
    const burst = (tl: Second[]) => tl.filter((s) => s.admitted + s.denied + s.errors > 900).map((s) => s.p99Ms);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const mine = burst(seedT.timeline);
    const base = burst(seedNone.timeline);
    if (mine.length && base.length) {
      const added = median(mine) - median(base);
      add(
        'p99 added by the limiter ≤ 0.5 ms at 1,200 req/s (median of per-second p99 over burst seconds, vs no limiter)',
        added,
        (v) => v <= 0.5,
        (v) => `${f(v, 2)} ms (${f(median(mine), 2)} vs ${f(median(base), 2)}); whole run ${f(seedT.p99, 2)} vs ${f(seedNone.p99, 2)} ms`,
      );
    }
  }
  for (const sc of ['seed', 'two-nodes']) {
    const r = get(sc, 'tandem');
    if (r) {
      out.push({ target: `over-admission 0 with Redis healthy (${sc})`, measured: `${r.accuracy.over}`, met: r.accuracy.over === 0 });
      out.push({ target: `under-admission ≤ 1% (${sc})`, measured: `${f(r.accuracy.underPct, 2)}%`, met: r.accuracy.underPct <= 1 });
    }
  }
  add('≤ 100 bytes of Redis memory per client key', seedT?.redisBytesPerKey, (v) => v <= 100, (v) => `${f(v, 0)} B`);
  return out;
}

async function main(): Promise<void> {
  const names = [...SCENARIOS.map((s) => s.name), 'spike', 'failure', ...POLICY_SCENARIOS];
  if (values.scenario && !names.includes(values.scenario)) {
    console.error(`unknown scenario ${values.scenario}; known: ${names.join(', ')}`);
    process.exit(2);
  }
  const chosen = SCENARIOS.filter((s) => !values.scenario || s.name === values.scenario).map((s) => ({
    ...s,
    systems: s.systems.filter((x) => !onlySystems || onlySystems.includes(x)),
  }));
  const withFailure = !values.scenario || values.scenario === 'failure';
  const withSpike = (!values.scenario || values.scenario === 'spike') && spikeOptions.systems.length > 0;
  const withRules = (!values.scenario || values.scenario === 'rules') && rulesSystems.length > 0;
  const withSeed001 = (!values.scenario || values.scenario === 'seed001') && policyTandem;
  const withTwoLimits = (!values.scenario || values.scenario === 'two-limits') && policyTandem;
  const withAlgorithms = (!values.scenario || values.scenario === 'algorithms') && policyTandem;

  const redis = await RedisProcess.start();
  const admin = redis.client();
  const ctx: Ctx = { redis, admin, apiKeys: makeApiKeys(12_000) };
  const plannedSeconds = chosen.reduce((n, s) => n + (s.seconds + 1.5) * s.systems.length, 0) + (withFailure ? 2 * failureSeconds + 4 : 0) +
    (withSpike ? (spikeOptions.blastSeconds + spikeOptions.steadySeconds + 4) * spikeOptions.systems.length : 0) +
    (withRules ? (rulesSeconds + (smoke ? 1.5 : 3.5)) * 4 * rulesSystems.length * rulesRounds : 0) + (withSeed001 ? 8 : 0) + (withTwoLimits ? 2 * (duration + 2) : 0) +
    (withAlgorithms ? 4 * (algorithmsOptions.seconds + algorithmsOptions.accuracySeconds + 5) : 0);
  const bar = new cliProgress.SingleBar(
    { format: 'bench {bar} {percentage}% | {what} | ETA {eta_formatted}', hideCursor: true, etaBuffer: 30 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(Math.round(plannedSeconds), 0, { what: 'starting' });
  const t0 = Date.now();
  const tick = setInterval(() => bar.update(Math.min(Math.round(plannedSeconds) - 1, Math.round((Date.now() - t0) / 1000))), 500);

  const rows: Row[] = [];
  let failure: Awaited<ReturnType<typeof runFailure>> | undefined;
  let spike: Awaited<ReturnType<typeof runSpike>> | undefined;
  let rules: RulesResult | undefined;
  let seed001: Seed001Result | undefined;
  let twoLimits: TwoLimitsResult | undefined;
  let algorithms: AlgorithmsResult | undefined;
  const onRun = (what: string) => bar.update({ what });
  try {
    for (const s of chosen) {
      const mine: Row[] = [];
      for (const system of s.systems) {
        bar.update({ what: `${s.name} / ${system}` });
        mine.push(await measure(s, system, ctx));
      }
      const ceiling = mine.find((r) => r.system === 'none')?.rps ?? 0;
      for (const r of mine) r.ratio = ceiling > 0 ? r.rps / ceiling : Number.NaN;
      rows.push(...mine);
    }
    if (withSpike) {
      bar.update({ what: 'spike' });
      spike = await runSpike(redis, admin, spikeOptions);
    }
    if (withRules) rules = await runRules(redis, admin, ctx.apiKeys, { systems: rulesSystems, seconds: rulesSeconds, connections, rounds: rulesRounds, warmupSeconds: smoke ? 0 : 2, onRun });
    if (withSeed001) seed001 = await runSeed001(redis, admin, { ...seed001Options, onRun });
    if (withTwoLimits) twoLimits = await runTwoLimits(redis, admin, ctx.apiKeys, { seconds: duration, connections, onRun });
    if (withAlgorithms) algorithms = await runAlgorithms(redis, admin, ctx.apiKeys, { ...algorithmsOptions, onRun });
    if (withFailure) {
      bar.update({ what: 'failure' });
      await admin.flushall();
      failure = await runFailure(redis, zipf(ctx.apiKeys, 1, 3), failureSeconds);
    }
  } finally {
    clearInterval(tick);
    bar.update(Math.round(plannedSeconds), { what: 'done' });
    bar.stop();
    admin.disconnect();
    await redis.stop();
  }

  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
  const parts = [`Machine: ${machine}`, `Date: ${new Date().toISOString()}`, `Command: npm run bench${smoke ? ':smoke' : ` -- --duration ${duration} --connections ${connections}`}`, ''];
  for (const s of chosen) {
    parts.push(`### ${s.name}`, '', s.describe, '', table(rows.filter((r) => r.scenario === s.name)), '');
    if (s.name === 'abuser') parts.push(abuserTable(rows.filter((r) => r.scenario === 'abuser')), '');
  }
  if (spike) parts.push('### spike', '', spikeMarkdown(spike), '');
  if (failure) parts.push('### failure', '', failureMarkdown(failure), '');
  const policySections: Record<string, string> = {};
  if (rules) policySections.rules = rulesMarkdown(rules);
  if (seed001) policySections.seed001 = seed001Markdown(seed001);
  if (twoLimits) policySections['two-limits'] = twoLimitsMarkdown(twoLimits);
  if (algorithms) policySections.algorithms = algorithmsMarkdown(algorithms);
  for (const [name, md] of Object.entries(policySections)) parts.push(`### ${name}`, '', md, '');
  const t = targets(rows);
  if (t.length) {
    parts.push('### targets', '', '| target | measured | met |', '|---|---|---|');
    for (const x of t) parts.push(`| ${x.target} | ${x.measured} | ${x.met ? 'yes' : '**no**'} |`);
    parts.push('');
  }
  const md = parts.join('\n');
  console.log(`\n${md}`);

  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const suffix = smoke ? '-smoke' : '';
  writeFileSync(
    new URL(`latest${suffix}.json`, dir),
    `${JSON.stringify({ machine, duration, connections, smoke, rows, spike, failure, rules, seed001, twoLimits, algorithms, targets: t }, null, 2)}\n`,
  );
  writeFileSync(new URL(`latest${suffix}.md`, dir), md);
  if (Object.keys(policySections).length) writePolicyResults(dir, suffix, machine, { rules, seed001, 'two-limits': twoLimits, algorithms }, policySections);
  const seedT = rows.find((r) => r.scenario === 'seed' && r.system === 'tandem');
  const seedNone = rows.find((r) => r.scenario === 'seed' && r.system === 'none');
  if (seedT?.timeline) {
    writeFileSync(
      new URL(`seed-timeline${suffix}.svg`, dir),
      timelineSvg('Seed traffic (500 req/s, bursts to 1,200 req/s): tandem, one node', seedT.timeline, seedNone?.timeline ? { name: 'no limiter', seconds: seedNone.timeline } : undefined),
    );
  }
  if (failure) {
    writeFileSync(
      new URL(`failure-timeline${suffix}.svg`, dir),
      timelineSvg(
        `Failure: Redis killed at ${failure.killAtS} s, restarted empty at ${failure.restartAtS} s (two nodes)`,
        failure.seconds,
        { name: 'no limiter', seconds: failure.baseline.seconds },
        [
          { t: failure.killAtS, label: 'Redis killed' },
          { t: failure.restartAtS, label: 'Redis restarted' },
        ],
      ),
    );
  }

  // Every scenario must have run and produced figures; errors are reported, not hidden.
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const s of chosen) {
    for (const system of s.systems) {
      const r = rows.find((x) => x.scenario === s.name && x.system === system);
      if (!r || r.requests === 0 || !Number.isFinite(r.p99)) problems.push(`${s.name}/${system}: no figures`);
      else if (r.errors > 0) warnings.push(`${s.name}/${system}: ${r.errors} errors`);
    }
  }
  if (withSpike) {
    if (!spike) problems.push('spike: no figures');
    else {
      problems.push(...spikeProblems(spike));
      for (const r of spike.runs) if (r.errors > 0) warnings.push(`spike/${r.system}: ${r.errors} errors`);
    }
  }
  if (withRules) problems.push(...(rules ? rulesProblems(rules) : ['rules: no figures']));
  if (withSeed001) problems.push(...(seed001 ? seed001Problems(seed001) : ['seed001: no figures']));
  if (withTwoLimits) problems.push(...(twoLimits ? twoLimitsProblems(twoLimits) : ['two-limits: no figures']));
  if (withAlgorithms) problems.push(...(algorithms ? algorithmsProblems(algorithms) : ['algorithms: no figures']));
  if (algorithms) warnings.push(...algorithmsWarnings(algorithms));
  for (const r of rules?.runs ?? []) if (r.errors > 0) warnings.push(`rules/${r.system}/${r.doc} round ${r.round}: ${r.errors} errors`);
  if (seed001 && seed001.a.errors + seed001.b.errors > 0) warnings.push(`seed001: ${seed001.a.errors + seed001.b.errors} errors`);
  for (const r of twoLimits?.runs ?? []) if (r.errors > 0) warnings.push(`two-limits/${r.limits.join('+')}: ${r.errors} errors`);
  if (withFailure && (!failure || failure.total === 0)) problems.push('failure: no figures');
  else if (failure && failure.errors > 0) warnings.push(`failure: ${failure.errors} errors`);
  // Errors are figures too (shown in the tables); the smoke run fails only when a scenario produced none.
  if (warnings.length) console.warn(`bench: runs with errors:\n  ${warnings.join('\n  ')}`);
  if (problems.length) {
    console.error(`bench problems:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    const policyRuns = (rules?.runs.length ?? 0) + (seed001 ? 2 : 0) + (twoLimits?.runs.length ?? 0) + (algorithms?.runs.length ?? 0);
    console.log(`bench: ${rows.length + (failure ? 1 : 0) + (spike?.runs.length ?? 0) + policyRuns} runs produced figures`);
  }
}


/**
 * The policy scenarios' own files, policy.json and policy.md: each run replaces the
 * sections of the scenarios it ran and keeps the others, so they can be run one by one.
 */
function writePolicyResults(dir: URL, suffix: string, machine: string, results: Record<string, unknown>, sections: Record<string, string>): void {
  const jsonUrl = new URL(`policy${suffix}.json`, dir);
  type Stored = { scenarios: Record<string, { date: string; machine: string; commit: string; command: string; result: unknown; markdown: string }> };
  let stored: Stored = { scenarios: {} };
  if (existsSync(jsonUrl)) {
    try {
      stored = JSON.parse(readFileSync(jsonUrl, 'utf8')) as Stored;
    } catch {
      stored = { scenarios: {} };
    }
  }
  // Settings that reach the servers from the environment: a run with them is kept beside the default one.
  const overrides = ['REDIS_TIMEOUT_MS', 'LEASE_TTL_MS', 'LEASE_COLD_TOKENS', 'LEASE_MAX_TOKENS']
    .filter((v) => process.env[v])
    .map((v) => `${v}=${process.env[v]}`)
    .join(' ');
  const command = `${overrides ? `${overrides} ` : ''}npm run bench${smoke ? ':smoke' : ` -- --scenario <name> --duration ${duration} --connections ${connections}`}`;
  for (const [name, markdown] of Object.entries(sections)) {
    const key = overrides ? `${name} (${overrides})` : name;
    stored.scenarios[key] = { date: new Date().toISOString(), machine, commit: gitCommit(), command: command.replace('<name>', name), result: results[name], markdown };
  }
  writeFileSync(jsonUrl, `${JSON.stringify(stored, null, 2)}\n`);
  const order = (key: string) => POLICY_SCENARIOS.findIndex((n) => key === n || key.startsWith(`${n} (`));
  const md = Object.keys(stored.scenarios)
    .sort((a, b) => order(a) - order(b) || a.length - b.length || a.localeCompare(b))
    .map((key) => {
      const s = stored.scenarios[key] as Stored['scenarios'][string];
      return [`### ${key}`, '', `${s.date}, commit ${s.commit ?? 'unknown'}, ${s.machine}; \`${s.command}\``, '', s.markdown, ''].join('\n');
    })
    .join('\n');
  writeFileSync(new URL(`policy${suffix}.md`, dir), md);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
