/**
 * Policy-engine scenarios: what a policy document (POLICY_FILE) costs and how
 * exactly its limits hold. The documents and the client registry are written to a
 * temporary directory by `policyFixtures` and passed to the servers
 * (bench/server.ts) as POLICY_FILE / CLIENTS_FILE.
 *
 * - `rules`: the cost of rule matching. The max-zipf traffic (12,000 keys, Zipf(1),
 *   closed loop, autocannon) on GET /resource against `tandem-local` (no Redis: the
 *   limiter's CPU dominates) and `tandem` (Redis), one node, under four documents
 *   with the same limit (40 tokens / 4 s): one rule; 100 rules whose last one
 *   matches, the 99 before it on other path prefixes (with header, IP or tier
 *   conditions), which the per-route cache sets aside once; 100 rules whose last
 *   one matches, the 99 before it on /resource with header and tier conditions
 *   that do not hold, so every request evaluates all of them; the same with a
 *   third of the 99 on IP blocks instead. Every request carries
 *   `X-Tenant-Id: bench` (a value no rule lists). Each run is preceded by 2 s of
 *   warm-up on another key population. The documents are interleaved, the order
 *   reversed every other round, several rounds: the machine's two cores are shared
 *   with the load generator, so single runs move by several %.
 * - `seed001`: seed 001's tiers on two `tandem` nodes, requests alternating between
 *   them. A: 100 free users (clients file, KEY_HASH_SECRET set) each send 15
 *   requests to /payments/charge (payments-free, 10 per 60 s); B: one of them moved
 *   to enterprise in the clients file and both nodes restarted; if the user's next
 *   answer still names payments-free (the registry lives in the policy store in
 *   Redis, which the file only seeds when empty), the user is moved through the
 *   admin API instead (`PUT /admin/clients`, mounted by bench/server.ts); then it
 *   sends 1,100 requests one after another (payments-pro, 1,000 per 60 s).
 *   Admitted per user, admitted before the first 429, and over/under-admission
 *   against ideal buckets of those limits, from the decisions recorded at the nodes.
 * - `two-limits`: one rule with two limits (burst 40 / 4 s and sustained 100 / 60 s,
 *   all or nothing) on two `tandem` nodes, Zipf keys at full speed; over-admission
 *   for each limit (the admitted requests replayed against that limit's ideal
 *   bucket) and under-admission against an ideal pair of buckets
 *   (`multiAccuracy`), Redis commands per request; the same traffic under the burst
 *   limit alone for comparison.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedLoop as runClosedLoop } from '../lib/closed-loop.js';
import type { Redis } from 'ioredis';
import type { RedisProcess } from '../../test/helpers/redis-server.js';
import { type Accuracy, type Decisions, type LimitSpec, type MultiAccuracy, accuracy, atDecision, multiAccuracy } from '../lib/accuracy.js';
import { type KeyPicker, zipf } from '../lib/keys.js';
import { type ServerProcess, startServer } from '../lib/processes.js';
import { countCommands } from '../lib/redis-commands.js';
import { redisCpuSeconds } from '../lib/redis-info.js';

const tb = (limit: number, windowSec: number) => ({ algorithm: 'token_bucket', limit, windowSec });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const spread = (xs: number[], d = 1) => `${f(median(xs), d)} (${f(Math.min(...xs), d)}–${f(Math.max(...xs), d)})`;

// ---------------------------------------------------------------------------
// Fixtures

export type RulesDocName = 'one' | 'other-paths' | 'same-path' | 'same-path-ip';

export const RULES_DOCS: Array<{ name: RulesDocName; describe: string; evaluated: number }> = [
  { name: 'one', describe: '1 rule', evaluated: 1 },
  { name: 'other-paths', describe: '100 rules, 99 on other paths (header/IP conditions)', evaluated: 1 },
  { name: 'same-path', describe: '100 rules, 99 on /resource failing header/tier conditions', evaluated: 100 },
  { name: 'same-path-ip', describe: '100 rules, 99 on /resource failing header/IP/tier conditions (33 with IP blocks)', evaluated: 100 },
];

/** A condition the bench's requests never meet: no. `i` of kind header, IP or tier. */
function failing(i: number, kind: 'header' | 'ip' | 'tier'): Record<string, unknown> {
  if (kind === 'header') return { header: { name: 'X-Tenant-Id', values: [`tenant-${i}`, `tenant-${i}-eu`] } }; // the request sends `bench`
  if (kind === 'ip') return { ips: [`10.${i}.0.0/16`, `fd00:${i.toString(16)}::/32`] }; // the client is 127.0.0.1
  return { tiers: [`gold-${i}`], header: { name: 'X-Region', values: ['eu'] } }; // no registry: the tier is the default, `free`
}

/** The 100-rule documents' 99 rules that do not apply to the bench's requests. */
function nonMatching(i: number, doc: Exclude<RulesDocName, 'one'>): Record<string, unknown> {
  const kinds = doc === 'same-path' ? (['header', 'tier'] as const) : (['header', 'ip', 'tier'] as const);
  const cond = failing(i, kinds[i % kinds.length] as 'header' | 'ip' | 'tier');
  const samePath = doc !== 'other-paths';
  return { name: `${samePath ? 'cond' : 'svc'}-${i}`, match: { pathPrefix: samePath ? '/resource' : `/svc-${i}`, ...cond }, limits: ['burst'] };
}

function rulesDocument(name: RulesDocName): unknown {
  const target = { name: 'resource', match: { pathPrefix: '/resource' }, limits: ['burst'] };
  const before = name === 'one' ? [] : Array.from({ length: 99 }, (_, i) => nonMatching(i, name));
  return { policies: { burst: tb(40, 4) }, rules: [...before, target] };
}

export const SEED001 = {
  free: { name: 'payments-free', capacity: 10, refillPerSec: 10 / 60 },
  pro: { name: 'payments-pro', capacity: 1000, refillPerSec: 1000 / 60 },
  secret: 'bench-seed-001-key-hash-secret',
  adminToken: 'bench-seed-001-admin-token',
};

function seed001Document(): unknown {
  return {
    policies: { 'payments-free': tb(10, 60), 'payments-pro': tb(1000, 60) },
    rules: [
      { name: 'payments-free', match: { pathPrefix: '/payments', tiers: ['free'] }, limits: ['payments-free'] },
      { name: 'payments-pro', match: { pathPrefix: '/payments', tiers: ['enterprise'] }, limits: ['payments-pro'] },
    ],
    defaultTier: 'free',
  };
}

export const TWO_LIMITS: LimitSpec[] = [
  { name: 'burst', capacity: 40, refillPerSec: 10 },
  { name: 'sustained', capacity: 100, refillPerSec: 100 / 60 },
];

function twoLimitsDocument(limits: string[]): unknown {
  return {
    policies: { burst: tb(40, 4), sustained: tb(100, 60) },
    rules: [{ name: 'resource', match: { pathPrefix: '/resource' }, limits }],
  };
}

/** Writes the scenarios' documents into a fresh temporary directory. */
export function fixtures(): { dir: string; write: (name: string, value: unknown) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'bench-policy-'));
  return {
    dir,
    write: (name, value) => {
      const p = join(dir, name);
      writeFileSync(p, `${JSON.stringify(value, null, 1)}\n`);
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

// ---------------------------------------------------------------------------
// Load and measurement helpers

function cpuTimes(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/**
 * How busy the machine is with work that is not the bench's (Linux, /proc/stat):
 * sampled for `ms` while no server of this run is up. On a shared machine this
 * says how much of the two cores the runs that follow could not have.
 */
export async function backgroundBusyPct(ms = 500): Promise<number> {
  const a = cpuTimes();
  await sleep(ms);
  const b = cpuTimes();
  if (!a || !b || b.total === a.total) return Number.NaN;
  return (100 * (b.busy - a.busy)) / (b.total - a.total);
}

type Load = { requests: number; seconds: number; ok: number; limited: number; errors: number; p50: number; p99: number };

function closedLoop(urls: string[], pick: KeyPicker, seconds: number, connections: number, headers: Record<string, string> = {}): Promise<Load> {
  return runClosedLoop({ urls, pick, seconds, connections, headers });
}

async function decisionsOf(servers: ServerProcess[]): Promise<Decisions[]> {
  return Promise.all(servers.map(async (x) => (await (await fetch(`${x.url}/__bench/decisions`)).json()) as Decisions));
}

const cpuMicros = (servers: ServerProcess[]) => Promise.all(servers.map(async (x) => Number((await x.stats()).cpuMicros)));

/** Sums the lease manager's counters over nodes. */
export async function counters(servers: ServerProcess[]): Promise<Record<string, number>> {
  const stats = await Promise.all(servers.map((x) => x.stats()));
  const out: Record<string, number> = {};
  for (const name of ['leaseCalls', 'aheadCalls', 'returnCalls', 'degradedDecisions']) {
    if (stats.some((st) => st[name] !== undefined)) out[name] = stats.reduce((n, st) => n + Number(st[name] ?? 0), 0);
  }
  out.localKeys = Math.max(...stats.map((st) => Number(st.localKeys ?? 0)));
  return out;
}

export async function startNodes(system: string, n: number, env: Record<string, string>): Promise<ServerProcess[]> {
  const servers: ServerProcess[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await startServer(system, env));
  } catch (err) {
    await Promise.all(servers.map((x) => x.stop()));
    throw err;
  }
  await sleep(300); // connections and first heartbeats
  return servers;
}

/** One closed-loop run on `n` fresh nodes: client figures, server CPU, Redis commands and CPU, decisions. */
export async function measuredRun(
  redis: RedisProcess,
  admin: Redis,
  o: {
    system: string;
    nodes: number;
    env: Record<string, string>;
    pick: KeyPicker;
    seconds: number;
    connections: number;
    headers?: Record<string, string>;
    /** Closed-loop seconds on keys of another population before measuring (JIT warm-up); not counted. */
    warmup?: { seconds: number; pick: KeyPicker };
  },
): Promise<{
  load: Load;
  cpuUsPerReq: number;
  redisCmdsPerReq: number;
  /** Redis CPU ms per 1,000 requests (`INFO cpu` around the run; it includes MONITOR's own cost). */
  redisCpuMsPer1k: number;
  decisions: Decisions[];
  counters: Record<string, number>;
  backgroundBusyPct: number;
}> {
  await admin.flushall();
  const background = await backgroundBusyPct();
  const usesRedis = o.system === 'tandem';
  const env = { ...o.env, BENCH_RECORD_DECIDED: '1' };
  const servers = await startNodes(o.system, o.nodes, usesRedis ? { ...env, REDIS_URL: redis.url } : env);
  try {
    if (o.warmup && o.warmup.seconds > 0) {
      await closedLoop(
        servers.map((x) => x.url),
        o.warmup.pick,
        o.warmup.seconds,
        o.connections,
        o.headers,
      );
    }
    const recorded = await Promise.all(servers.map(async (x) => (await decisionsOf([x]))[0]?.times.length ?? 0));
    const redisCpu0 = usesRedis ? await redisCpuSeconds(admin) : 0;
    const counter = usesRedis ? await countCommands(redis.url) : undefined;
    const cpu0 = await cpuMicros(servers);
    const load = await closedLoop(
      servers.map((x) => x.url),
      o.pick,
      o.seconds,
      o.connections,
      o.headers,
    );
    const cpu1 = await cpuMicros(servers);
    const commands = counter?.count() ?? 0;
    await counter?.stop();
    const redisCpu = usesRedis ? (await redisCpuSeconds(admin)) - redisCpu0 : 0;
    const cpu = cpu1.reduce((n, c, i) => n + c - (cpu0[i] as number), 0);
    return {
      load,
      cpuUsPerReq: cpu / Math.max(1, load.requests),
      redisCmdsPerReq: commands / Math.max(1, load.requests),
      redisCpuMsPer1k: (redisCpu * 1e6) / Math.max(1, load.requests),
      // Only the measured run's decisions (the warm-up's keys are another population anyway).
      decisions: (await decisionsOf(servers)).map((d, i) => {
        const from = recorded[i] as number;
        return { times: d.times.slice(from), keys: d.keys.slice(from), statuses: d.statuses.slice(from), decided: d.decided?.slice(from) };
      }),
      counters: await counters(servers),
      backgroundBusyPct: background,
    };
  } finally {
    await Promise.all(servers.map((x) => x.stop()));
  }
}

// ---------------------------------------------------------------------------
// rules

export type RulesRun = {
  round: number;
  system: string;
  doc: RulesDocName;
  rps: number;
  cpuUsPerReq: number;
  p50: number;
  p99: number;
  ok: number;
  limited: number;
  errors: number;
  redisCmdsPerReq: number;
  accuracy: Accuracy;
  /** Over-admission with each admission timed when its response was ready, not at arrival. */
  overAtDecision: number;
  /** Requests decided without Redis (a call timed out, the breaker opened): over-admission is possible then. */
  degradedDecisions: number;
  /** The machine's CPU busy with other work just before the run (%). */
  backgroundBusyPct: number;
};

export type RulesResult = { seconds: number; connections: number; rounds: number; warmupSeconds: number; systems: string[]; runs: RulesRun[] };

export async function runRules(
  redis: RedisProcess,
  admin: Redis,
  apiKeys: string[],
  o: { systems: string[]; seconds: number; connections: number; rounds: number; warmupSeconds: number; onRun?: (what: string) => void },
): Promise<RulesResult> {
  // A population of its own for the warm-up, so the measured keys start fresh in every run.
  const warmKeys = apiKeys.map((k) => `warm-${k}`);
  const fx = fixtures();
  const files = Object.fromEntries(RULES_DOCS.map((d) => [d.name, fx.write(`rules-${d.name}.json`, rulesDocument(d.name))])) as Record<RulesDocName, string>;
  const runs: RulesRun[] = [];
  try {
    for (let round = 1; round <= o.rounds; round++) {
      // Reversed every other round, so a drift of the machine does not favour one document.
      const order = round % 2 ? RULES_DOCS : [...RULES_DOCS].reverse();
      for (const system of o.systems) {
        for (const d of order) {
          o.onRun?.(`rules ${round}/${o.rounds} ${system} ${d.name}`);
          const r = await measuredRun(redis, admin, {
            system,
            nodes: 1,
            env: { POLICY_FILE: files[d.name] },
            // The same key sequence for every run.
            pick: zipf(apiKeys, 1, 2),
            seconds: o.seconds,
            connections: o.connections,
            headers: { 'x-tenant-id': 'bench' },
            warmup: { seconds: o.warmupSeconds, pick: zipf(warmKeys, 1, 3) },
          });
          runs.push({
            round,
            system,
            doc: d.name,
            rps: r.load.requests / r.load.seconds,
            cpuUsPerReq: r.cpuUsPerReq,
            p50: r.load.p50,
            p99: r.load.p99,
            ok: r.load.ok,
            limited: r.load.limited,
            errors: r.load.errors,
            redisCmdsPerReq: system === 'tandem' ? r.redisCmdsPerReq : 0,
            accuracy: accuracy(r.decisions, { capacity: 40, refillPerSec: 10 }),
            overAtDecision: accuracy(atDecision(r.decisions), { capacity: 40, refillPerSec: 10 }).over,
            degradedDecisions: r.counters.degradedDecisions ?? 0,
            backgroundBusyPct: r.backgroundBusyPct,
          });
        }
      }
    }
  } finally {
    fx.cleanup();
  }
  return { seconds: o.seconds, connections: o.connections, rounds: o.rounds, warmupSeconds: o.warmupSeconds, systems: o.systems, runs };
}

/** Per round, a 100-rule document's figure over the one-rule document's, same system. */
function rulesRatios(r: RulesResult, system: string, doc: RulesDocName) {
  const rps: number[] = [];
  const cpu: number[] = [];
  for (let round = 1; round <= r.rounds; round++) {
    const one = r.runs.find((x) => x.round === round && x.system === system && x.doc === 'one');
    const many = r.runs.find((x) => x.round === round && x.system === system && x.doc === doc);
    if (one && many) {
      rps.push(many.rps / one.rps);
      cpu.push(many.cpuUsPerReq / one.cpuUsPerReq);
    }
  }
  return { rps, cpu };
}

export function rulesMarkdown(r: RulesResult): string {
  const out: string[] = [
    `Closed loop, ${r.connections} connections, ${r.seconds} s per run after ${r.warmupSeconds} s of warm-up on another 12,000 keys, 12,000 keys Zipf(1), one node; ${r.rounds} round(s), documents interleaved (order reversed every other round); every document limits /resource to 40 tokens / 4 s. Median (min–max) over rounds.`,
    '',
    '| system | document | rules evaluated per request | machine busy before, % | req/s | server CPU µs/req | p99 ms | 429 share | Redis cmds/req | over-admitted (by arrival; by decision time), all rounds | degraded decisions, all rounds | under-admitted |',
    `|${'---|'.repeat(12)}`,
  ];
  for (const system of r.systems) {
    for (const d of RULES_DOCS) {
      const xs = r.runs.filter((x) => x.system === system && x.doc === d.name);
      if (xs.length === 0) continue;
      const limitedPct = xs.map((x) => (100 * x.limited) / Math.max(1, x.ok + x.limited));
      out.push(
        `| ${system} | ${d.describe} | ${d.evaluated} | ${f(median(xs.map((x) => x.backgroundBusyPct)), 0)} | ${spread(xs.map((x) => x.rps), 0)} | ${spread(xs.map((x) => x.cpuUsPerReq))} | ${f(median(xs.map((x) => x.p99)), 0)} | ${f(median(limitedPct))}% | ${system === 'tandem' ? f(median(xs.map((x) => x.redisCmdsPerReq)), 3) : '-'} | ${xs.reduce((n, x) => n + x.accuracy.over, 0)}; ${xs.reduce((n, x) => n + x.overAtDecision, 0)} | ${xs.reduce((n, x) => n + x.degradedDecisions, 0)} | ${f(median(xs.map((x) => x.accuracy.underPct)), 2)}% |`,
      );
    }
  }
  out.push(
    '',
    'Ratios of a 100-rule document to the one-rule document, paired by round (target: 100 rules cost within 10% of one):',
    '',
    '| system | document | req/s ratio | CPU µs/req ratio | within 10% (median) |',
    '|---|---|---|---|---|',
  );
  for (const system of r.systems) {
    for (const d of RULES_DOCS.filter((x) => x.name !== 'one')) {
      const q = rulesRatios(r, system, d.name);
      if (q.rps.length === 0) continue;
      const ok = median(q.rps) >= 0.9 && median(q.cpu) <= 1.1;
      out.push(`| ${system} | ${d.describe} | ${spread(q.rps, 3)} | ${spread(q.cpu, 3)} | ${ok ? 'yes' : '**no**'} |`);
    }
  }
  out.push(
    '',
    '| round | system | document | machine busy before, % | req/s | server CPU µs/req | p99 ms | over-admitted (arrival; decision) | degraded decisions | errors |',
    `|${'---|'.repeat(10)}`,
  );
  for (const x of r.runs) {
    out.push(`| ${x.round} | ${x.system} | ${x.doc} | ${f(x.backgroundBusyPct, 0)} | ${f(x.rps, 0)} | ${f(x.cpuUsPerReq)} | ${f(x.p99, 0)} | ${x.accuracy.over}; ${x.overAtDecision} | ${x.degradedDecisions} | ${x.errors} |`);
  }
  return out.join('\n');
}

export function rulesProblems(r: RulesResult): string[] {
  const p: string[] = [];
  for (const system of r.systems) {
    for (const d of RULES_DOCS) {
      const xs = r.runs.filter((x) => x.system === system && x.doc === d.name);
      if (xs.length === 0 || xs.some((x) => x.ok + x.limited === 0)) p.push(`rules/${system}/${d.name}: no figures`);
    }
  }
  return p;
}

// ---------------------------------------------------------------------------
// seed001

export type Seed001Result = {
  users: number;
  perUser: number;
  backgroundBusyPct: number;
  a: {
    requests: number;
    admitted: number;
    denied: number;
    errors: number;
    seconds: number;
    /** How many users got each admitted count. */
    admittedHistogram: Record<string, number>;
    minAdmitted: number;
    maxAdmitted: number;
    accuracy: Accuracy;
    overAtDecision: number;
    redisCmdsPerReq: number;
    leaseCalls: number;
    degradedDecisions: number;
    p50Ms: number;
    p99Ms: number;
  };
  b: {
    requests: number;
    admitted: number;
    denied: number;
    errors: number;
    seconds: number;
    admittedBeforeFirst429: number;
    firstDeniedAt: number;
    /** Seconds from the first request to the first 429, and the ideal count by then (1,000 + refill). */
    secondsToFirst429: number;
    idealByFirst429: number;
    accuracy: Accuracy;
    overAtDecision: number;
    redisCmdsPerReq: number;
    leaseCalls: number;
    degradedDecisions: number;
    p50Ms: number;
    p99Ms: number;
    /** How the user was moved: the clients file and a restart, or (when that did not apply) the admin API. */
    moved: string;
    /** The policy named in the answer to the user's first request after the restart with the edited file. */
    fileProbePolicy: string;
    freeUserStatus: number;
    freeUserPolicy: string;
    deniedPolicy: string;
  };
};

/** An answer, with the wall-clock ms (Date.now) the request was sent and its answer read. */
export type Reply = { status: number; body: Record<string, unknown>; ms: number; sent: number; done: number };
/**
 * node:http with a keep-alive agent, not fetch: fetch costs the client ~0.5 ms of CPU
 * per request, and on these two shared cores a client that busy starved fresh nodes
 * until their Redis calls passed the 100 ms deadline (degraded decisions). At most
 * `maxSockets` connections per node: the users' requests queue in the client.
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
/** Closes the idle keep-alive sockets (before the nodes stop); the agent opens new ones when asked again. */
export const closeIdleSockets = () => agent.destroy();
export function get(url: string, key: string, path = '/payments/charge'): Promise<Reply> {
  const sent = Date.now();
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.get(`${url}${path}`, { agent, headers: { 'X-API-Key': key } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // not JSON: the status says enough
        }
        resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0, sent, done: Date.now() });
      });
      res.on('error', () => resolve({ status: 0, body: {}, ms: performance.now() - t0, sent, done: Date.now() }));
    });
    req.on('error', () => resolve({ status: 0, body: {}, ms: performance.now() - t0, sent, done: Date.now() }));
  });
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) : Number.NaN;
}

export async function runSeed001(redis: RedisProcess, admin: Redis, o: { users: number; perUser: number; proRequests: number; onRun?: (what: string) => void }): Promise<Seed001Result> {
  const fx = fixtures();
  const users = Array.from({ length: o.users }, (_, i) => `seed001-user-${i}-${randomBytes(6).toString('hex')}`);
  const env = {
    REDIS_URL: redis.url,
    POLICY_FILE: fx.write('seed001.json', seed001Document()),
    CLIENTS_FILE: fx.write('clients.json', { clients: users.map((apiKey) => ({ apiKey, tier: 'free' })) }),
    KEY_HASH_SECRET: SEED001.secret,
    ADMIN_TOKENS: `bench:${SEED001.adminToken}`,
    BENCH_RECORD_PATHS: '/payments',
    BENCH_RECORD_DECIDED: '1',
  };
  await admin.flushall();
  const background = await backgroundBusyPct();
  let nodes: ServerProcess[] = [];
  try {
    // A: every free user sends its requests one after another, alternating nodes; users in parallel.
    o.onRun?.('seed001 A: 100 free users');
    nodes = await startNodes('tandem', 2, env);
    let counter = await countCommands(redis.url);
    let t0 = performance.now();
    const aLatency: number[] = [];
    const perUser = await Promise.all(
      users.map(async (key, u) => {
        let ok = 0;
        let denied = 0;
        let errors = 0;
        for (let i = 0; i < o.perUser; i++) {
          const r = await get((nodes[(u + i) % 2] as ServerProcess).url, key);
          aLatency.push(r.ms);
          if (r.status === 200) ok++;
          else if (r.status === 429) denied++;
          else errors++;
        }
        return { ok, denied, errors };
      }),
    );
    const aSeconds = (performance.now() - t0) / 1000;
    const aCommands = counter.count();
    await counter.stop();
    agent.destroy();
    const aDecisions = await decisionsOf(nodes);
    const aCounters = await counters(nodes);
    await Promise.all(nodes.map((x) => x.stop()));
    nodes = [];
    const histogram: Record<string, number> = {};
    for (const p of perUser) histogram[p.ok] = (histogram[p.ok] ?? 0) + 1;
    const aRequests = o.users * o.perUser;
    const a = {
      requests: aRequests,
      admitted: perUser.reduce((n, p) => n + p.ok, 0),
      denied: perUser.reduce((n, p) => n + p.denied, 0),
      errors: perUser.reduce((n, p) => n + p.errors, 0),
      seconds: aSeconds,
      admittedHistogram: histogram,
      minAdmitted: Math.min(...perUser.map((p) => p.ok)),
      maxAdmitted: Math.max(...perUser.map((p) => p.ok)),
      accuracy: accuracy(aDecisions, SEED001.free),
      overAtDecision: accuracy(atDecision(aDecisions), SEED001.free).over,
      redisCmdsPerReq: aCommands / aRequests,
      leaseCalls: aCounters.leaseCalls ?? 0,
      degradedDecisions: aCounters.degradedDecisions ?? 0,
      p50Ms: percentile(aLatency, 50),
      p99Ms: percentile(aLatency, 99),
    };

    // B: users[0] moves to enterprise in the clients file; both nodes restart (Redis keeps its state).
    o.onRun?.('seed001 B: one user moved to enterprise');
    const pro = users[0] as string;
    fx.write('clients.json', { clients: users.map((apiKey, i) => ({ apiKey, tier: i === 0 ? 'enterprise' : 'free' })) });
    nodes = await startNodes('tandem', 2, env);
    // Did the restart apply the file? One request says which policy the user is under now.
    const probe = await get((nodes[0] as ServerProcess).url, pro);
    const fileProbePolicy = String(probe.body.policy ?? (probe.body.rate_limit as { policy?: string } | undefined)?.policy ?? `status ${probe.status}`);
    let moved = 'clients file + restart';
    if (fileProbePolicy !== SEED001.pro.name) {
      // A policy store that outlives the nodes (Redis) keeps its registry: the file only seeds an empty
      // store. Move the user the way that store is changed: the admin API (on one node; the change is
      // announced to the others), then give the others the store's check interval (1 s) to catch up.
      const res = await fetch(`${(nodes[0] as ServerProcess).url}/__admin/admin/clients`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${SEED001.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ apiKey: pro, tier: 'enterprise' }),
      });
      await res.text();
      moved = res.ok ? 'admin API (PUT /admin/clients), after the clients file + restart did not apply' : `neither (admin API answered ${res.status})`;
      await sleep(1100);
    }
    counter = await countCommands(redis.url);
    t0 = performance.now();
    const bFrom = performance.timeOrigin + t0;
    let ok = 0;
    let denied = 0;
    let errors = 0;
    let firstDeniedAt = -1;
    let secondsToFirst429 = Number.NaN;
    let deniedPolicy = '';
    const bLatency: number[] = [];
    for (let i = 0; i < o.proRequests; i++) {
      const r = await get((nodes[i % 2] as ServerProcess).url, pro);
      bLatency.push(r.ms);
      if (r.status === 200) ok++;
      else if (r.status === 429) {
        denied++;
        if (firstDeniedAt < 0) {
          firstDeniedAt = i;
          secondsToFirst429 = (performance.now() - t0) / 1000;
          deniedPolicy = String(r.body.policy ?? '');
        }
      } else errors++;
    }
    const bSeconds = (performance.now() - t0) / 1000;
    const bCommands = counter.count();
    await counter.stop();
    // Another user is still free: its answer names payments-free (200 or 429: a token may have refilled since A).
    const free = await get((nodes[0] as ServerProcess).url, users[1] as string);
    const freeUserPolicy = String(free.body.policy ?? (free.body.rate_limit as { policy?: string } | undefined)?.policy ?? '');
    agent.destroy(); // the nodes are about to stop: no idle socket left behind
    const bDecisions = await decisionsOf(nodes);
    const bCounters = await counters(nodes);
    // Only the enterprise user's 1,100 (not the probe, nor the free user's check).
    const onlyPro = bDecisions.map((d) => {
      const idx = d.keys.map((k, i) => (k === pro && (d.times[i] as number) >= bFrom - 1 ? i : -1)).filter((i) => i >= 0);
      const decided = d.decided;
      return {
        times: idx.map((i) => d.times[i] as number),
        keys: idx.map(() => pro),
        statuses: idx.map((i) => d.statuses[i] as number),
        decided: decided && idx.map((i) => decided[i] as number),
      };
    });
    const b = {
      requests: o.proRequests,
      admitted: ok,
      denied,
      errors,
      seconds: bSeconds,
      admittedBeforeFirst429: firstDeniedAt < 0 ? ok : firstDeniedAt,
      firstDeniedAt,
      secondsToFirst429,
      idealByFirst429: Math.floor(SEED001.pro.capacity + SEED001.pro.refillPerSec * (Number.isFinite(secondsToFirst429) ? secondsToFirst429 : bSeconds)),
      accuracy: accuracy(onlyPro, SEED001.pro),
      overAtDecision: accuracy(atDecision(onlyPro), SEED001.pro).over,
      redisCmdsPerReq: bCommands / o.proRequests,
      leaseCalls: bCounters.leaseCalls ?? 0,
      degradedDecisions: bCounters.degradedDecisions ?? 0,
      p50Ms: percentile(bLatency, 50),
      p99Ms: percentile(bLatency, 99),
      moved,
      fileProbePolicy,
      freeUserStatus: free.status,
      freeUserPolicy,
      deniedPolicy,
    };
    return { users: o.users, perUser: o.perUser, backgroundBusyPct: background, a, b };
  } finally {
    await Promise.all(nodes.map((x) => x.stop()));
    fx.cleanup();
  }
}

export function seed001Markdown(r: Seed001Result): string {
  const hist = Object.entries(r.a.admittedHistogram)
    .sort((x, y) => Number(x[0]) - Number(y[0]))
    .map(([admitted, n]) => `${n} × ${admitted}`)
    .join(', ');
  const acc = (a: Accuracy, atDecision: number) =>
    `over ${a.over} (${f(a.overPct, 2)}%; by decision time ${atDecision}), under ${a.under} (${f(a.underPct, 2)}%) of ${a.decisions}`;
  return [
    `Two \`tandem\` nodes, requests alternating between them; payments-free 10 / 60 s and payments-pro 1,000 / 60 s on /payments by tier; clients file of ${r.users} free users, KEY_HASH_SECRET set. Machine busy with other work before the run: ${f(r.backgroundBusyPct, 0)}%.`,
    '',
    '| phase | requests | admitted | denied | errors | seconds | figure | vs ideal bucket | Redis cmds/req | lease calls | degraded decisions | p50 / p99 ms (client) |',
    `|${'---|'.repeat(12)}`,
    `| A: ${r.users} free users × ${r.perUser} (users in parallel) | ${r.a.requests} | ${r.a.admitted} | ${r.a.denied} | ${r.a.errors} | ${f(r.a.seconds, 2)} | admitted per user: ${hist} (expected 10 each) | ${acc(r.a.accuracy, r.a.overAtDecision)} | ${f(r.a.redisCmdsPerReq, 3)} | ${r.a.leaseCalls} | ${r.a.degradedDecisions} | ${f(r.a.p50Ms, 2)} / ${f(r.a.p99Ms, 2)} |`,
    `| B: one user moved to enterprise (clients file, nodes restarted: the user's next answer named "${r.b.fileProbePolicy}"; moved by ${r.b.moved}), ${r.b.requests} sequential | ${r.b.requests} | ${r.b.admitted} | ${r.b.denied} | ${r.b.errors} | ${f(r.b.seconds, 2)} | ${r.b.admittedBeforeFirst429} admitted before the first 429 (request #${r.b.firstDeniedAt + 1}, at ${f(r.b.secondsToFirst429, 2)} s; ideal by then ${r.b.idealByFirst429}; denied by "${r.b.deniedPolicy}"); another (free) user afterwards: ${r.b.freeUserStatus} under "${r.b.freeUserPolicy}" | ${acc(r.b.accuracy, r.b.overAtDecision)} | ${f(r.b.redisCmdsPerReq, 3)} | ${r.b.leaseCalls} | ${r.b.degradedDecisions} | ${f(r.b.p50Ms, 2)} / ${f(r.b.p99Ms, 2)} |`,
  ].join('\n');
}

export function seed001Problems(r: Seed001Result): string[] {
  const p: string[] = [];
  if (r.a.admitted + r.a.denied === 0) p.push('seed001 A: no figures');
  if (r.b.admitted + r.b.denied === 0) p.push('seed001 B: no figures');
  return p;
}

// ---------------------------------------------------------------------------
// two-limits

export type TwoLimitsRun = {
  limits: string[];
  rps: number;
  requests: number;
  ok: number;
  limited: number;
  errors: number;
  p50: number;
  p99: number;
  cpuUsPerReq: number;
  redisCmdsPerReq: number;
  counters: Record<string, number>;
  accuracy: MultiAccuracy;
  /** Over-admission per limit with each admission timed when its response was ready. */
  atDecision: MultiAccuracy;
  backgroundBusyPct: number;
};

export type TwoLimitsResult = { seconds: number; connections: number; runs: TwoLimitsRun[] };

export async function runTwoLimits(
  redis: RedisProcess,
  admin: Redis,
  apiKeys: string[],
  o: { seconds: number; connections: number; onRun?: (what: string) => void },
): Promise<TwoLimitsResult> {
  const fx = fixtures();
  const runs: TwoLimitsRun[] = [];
  try {
    for (const limits of [TWO_LIMITS, TWO_LIMITS.slice(0, 1)]) {
      const names = limits.map((l) => l.name);
      o.onRun?.(`two-limits ${names.join('+')}`);
      const r = await measuredRun(redis, admin, {
        system: 'tandem',
        nodes: 2,
        env: { POLICY_FILE: fx.write(`two-limits-${names.join('-')}.json`, twoLimitsDocument(names)) },
        pick: zipf(apiKeys, 1, 5),
        seconds: o.seconds,
        connections: o.connections,
      });
      runs.push({
        limits: names,
        rps: r.load.requests / r.load.seconds,
        requests: r.load.requests,
        ok: r.load.ok,
        limited: r.load.limited,
        errors: r.load.errors,
        p50: r.load.p50,
        p99: r.load.p99,
        cpuUsPerReq: r.cpuUsPerReq,
        redisCmdsPerReq: r.redisCmdsPerReq,
        counters: r.counters,
        accuracy: multiAccuracy(r.decisions, limits),
        atDecision: multiAccuracy(atDecision(r.decisions), limits),
        backgroundBusyPct: r.backgroundBusyPct,
      });
    }
  } finally {
    fx.cleanup();
  }
  return { seconds: o.seconds, connections: o.connections, runs };
}

export function twoLimitsMarkdown(r: TwoLimitsResult): string {
  const out = [
    `Two \`tandem\` nodes, requests spread over both, 12,000 keys Zipf(1), closed loop, ${r.connections} connections, ${r.seconds} s. One rule on /resource with both limits (burst 40 / 4 s, sustained 100 / 60 s, all or nothing), then the burst limit alone. Over-admission per limit: the admitted requests replayed against that limit's ideal bucket; under-admission: denials an ideal pair of buckets (each limit, all or nothing), deciding on its own, admits.`,
    '',
    '| limits | machine busy before, % | req/s | server CPU µs/req | p50 ms | p99 ms | 200 | 429 | errors | Redis cmds/req | lease calls / 1k req | degraded decisions | over-admitted: burst (by arrival; by decision time) | over-admitted: sustained (by arrival; by decision time) | under-admitted (ideal pair) |',
    `|${'---|'.repeat(15)}`,
  ];
  for (const x of r.runs) {
    const over = (name: string) => {
      const l = x.accuracy.perLimit.find((p) => p.name === name);
      const d = x.atDecision.perLimit.find((p) => p.name === name);
      return l ? `${l.over} (${f(l.overPct, 2)}%); ${d?.over ?? '-'}` : '-';
    };
    out.push(
      `| ${x.limits.join(' + ')} | ${f(x.backgroundBusyPct, 0)} | ${f(x.rps, 0)} | ${f(x.cpuUsPerReq)} | ${f(x.p50, 0)} | ${f(x.p99, 0)} | ${x.ok} | ${x.limited} | ${x.errors} | ${f(x.redisCmdsPerReq, 4)} | ${f((1000 * (x.counters.leaseCalls ?? 0)) / Math.max(1, x.requests), 1)} | ${x.counters.degradedDecisions ?? 0} | ${over('burst')} | ${over('sustained')} | ${x.accuracy.under} (${f(x.accuracy.underPct, 2)}%) |`,
    );
  }
  return out.join('\n');
}

export function twoLimitsProblems(r: TwoLimitsResult): string[] {
  if (r.runs.length === 0 || r.runs.some((x) => x.ok + x.limited === 0)) return ['two-limits: no figures'];
  return [];
}
