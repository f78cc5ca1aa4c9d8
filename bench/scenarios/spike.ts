/**
 * Spike scenario: what follows a blast of fresh keys. One node per system, its
 * own server process, default lease settings unless LEASE_TTL_MS is set:
 *
 *   1. blast: `blastSeconds` (4) at full speed (autocannon, 50 connections, closed
 *      loop) over `keys` (12,000) fresh API keys taken in turn, so every key is
 *      seen several times (~7 at 21k req/s): each ends the blast holding a lease
 *      sized to its blast rate, most of it unspent (a key seen once would spend
 *      its one cold token and hold nothing to return). `blastRps` > 0 paces the
 *      blast instead;
 *   2. steady: `steadyRps` req/s (seed 000's peak, 1,200) on Zipf(1) keys of the
 *      same population for `steadySeconds` (40 by default), long enough to see the
 *      blast's leases reach the lease sweep, about LEASE_TTL_MS after the blast.
 *
 * Every system gets a population of its own (a random prefix per run and system),
 * so no key was ever seen by Redis or the node before the blast. Per second of
 * wall-clock time from the blast's start: requests, client-side p50/p99/max
 * latency, the share over 10 ms, and the server's own event-loop delay (measured
 * in the server process, bench/server.ts with BENCH_LOOP_DELAY=1) with the lease
 * and return calls the limiter made in that second. Summaries over the steady
 * phase and over the sweep window (LEASE_TTL_MS − 6 s to LEASE_TTL_MS + 4 s after
 * the blast's start: seconds 24–34 by default), for each system side by side.
 *
 * The steady phase starts on a whole second, `blastSeconds` after the blast, and is
 * paced the way bench/lib/timeline.ts does it (10 autocannon instances started
 * 100 ms apart, 2 connections each, each sending its quota at the start of each of
 * its seconds); latency is autocannon's (from the request's write), so requests
 * the pacing held back during a stall are not counted as late.
 */
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import type { Redis } from 'ioredis';
import type { RedisProcess } from '../../test/helpers/redis-server.js';
import { type KeyPicker, zipf } from '../lib/keys.js';
import { type ServerProcess, startServer } from '../lib/processes.js';

export type SpikeOptions = {
  systems: string[];
  keys: number;
  /** 0: full speed (closed loop, 50 connections). */
  blastRps: number;
  blastSeconds: number;
  steadyRps: number;
  steadySeconds: number;
  /** Passed to the servers as LEASE_TTL_MS; places the sweep window. */
  leaseTtlMs: number;
};

export const DEFAULT_SPIKE: Omit<SpikeOptions, 'systems' | 'steadySeconds'> = {
  keys: 12_000,
  blastRps: 0,
  blastSeconds: 4,
  steadyRps: 1_200,
  leaseTtlMs: 30_000,
};

type LoopFigures = { samples: number; p50Ms: number; p99Ms: number; maxMs: number; meanMs: number };

export type SpikeSecond = {
  /** Seconds since the blast started. */
  t: number;
  requests: number;
  ok: number;
  limited: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Share of the second's requests slower than 10 ms. */
  over10Pct: number;
  /** The server's event-loop delay in that second (undefined if it took no snapshot). */
  loop?: LoopFigures;
  cpuMs?: number;
  leaseCalls?: number;
  returnCalls?: number;
};

export type SpikeWindow = {
  name: string;
  /** First and last second (inclusive) since the blast's start. */
  from: number;
  to: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  over10Pct: number;
  /** The worst of the window's per-second p99s (a 2-second stall hides in an 11-second p99). */
  worstSecondP99Ms: number;
  loop: LoopFigures | undefined;
  returnCalls?: number;
};

export type SpikeRun = {
  system: string;
  seconds: SpikeSecond[];
  windows: SpikeWindow[];
  /** Distinct keys the blast sent (should be `keys`), and its requests. */
  blastKeysSent: number;
  blastRequests: number;
  total: number;
  errors: number;
  counters: Record<string, number>;
};

export type SpikeResult = { options: SpikeOptions; steady: [number, number]; sweep: [number, number]; runs: SpikeRun[] };

type Phase = { rps: number; seconds: number; pick: KeyPicker };
type OnResponse = (status: number, ms: number) => void;

const STAGGER = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const wallNow = () => performance.timeOrigin + performance.now();

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** One autocannon instance: paced at `rate` req/s, or closed loop when rate is 0. */
function cannon(urls: string[], p: Phase, connections: number, rate: number, onResponse: OnResponse): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const instance = autocannon(
      {
        url: urls.map((u) => `${u}/resource`) as unknown as string,
        connections,
        ...(rate > 0 ? { overallRate: rate } : {}),
        duration: p.seconds,
        timeout: 5,
        requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-api-key': p.pick() } }) }],
      },
      (err) => (err ? reject(err) : resolve()),
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => onResponse(status, ms));
    instance.on('reqError', () => onResponse(0, Number.NaN));
  });
}

/** Paced load: the phase split over STAGGER autocannon instances started 100 ms apart. */
async function paced(urls: string[], p: Phase, onResponse: OnResponse): Promise<void> {
  await Promise.all(
    Array.from({ length: STAGGER }, async (_, i) => {
      await sleep((i * 1000) / STAGGER);
      await cannon(urls, p, 2, Math.round(p.rps / STAGGER), onResponse);
    }),
  );
}

async function waitGlobal(url: string, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    try {
      if (((await (await fetch(`${url}/health`)).json()) as { mode: string }).mode === 'global') return;
    } catch {
      // not answering yet
    }
    await sleep(25);
  }
  throw new Error('tandem server did not reach global mode');
}

type Bucket = { ok: number; limited: number; errors: number; lat: number[] };

function summarise(name: string, from: number, to: number, buckets: Map<number, Bucket>, loop: LoopFigures | undefined, seconds: SpikeSecond[]): SpikeWindow {
  const lat: number[] = [];
  let requests = 0;
  for (let t = from; t <= to; t++) {
    const b = buckets.get(t);
    if (!b) continue;
    requests += b.ok + b.limited + b.errors;
    for (const x of b.lat) lat.push(x);
  }
  lat.sort((a, b) => a - b);
  const inWindow = seconds.filter((s) => s.t >= from && s.t <= to);
  const returns = inWindow.some((s) => s.returnCalls !== undefined) ? inWindow.reduce((n, s) => n + (s.returnCalls ?? 0), 0) : undefined;
  return {
    name,
    from,
    to,
    requests,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    maxMs: lat.length ? (lat[lat.length - 1] as number) : Number.NaN,
    over10Pct: lat.length ? (100 * lat.filter((x) => x > 10).length) / lat.length : Number.NaN,
    worstSecondP99Ms: Math.max(...inWindow.map((s) => (Number.isFinite(s.p99Ms) ? s.p99Ms : 0))),
    loop,
    returnCalls: returns,
  };
}

/** Second ranges (inclusive, since the blast's start) of the steady phase and of the sweep window. */
export function spikeWindows(o: SpikeOptions): { steady: [number, number]; sweep: [number, number] } {
  // The steady phase starts at blastSeconds; each paced instance sends its quota at the start of
  // each of its seconds, the last at blastSeconds + steadySeconds − 0.1 s. The first steady second
  // is left out: blast responses may spill into it.
  const steady: [number, number] = [o.blastSeconds + 1, o.blastSeconds + o.steadySeconds - 1];
  const ttlS = Math.round(o.leaseTtlMs / 1000);
  const sweep: [number, number] = [Math.max(steady[0], ttlS - 6), Math.min(steady[1], ttlS + 4)];
  return { steady, sweep };
}

async function runOne(system: string, o: SpikeOptions, redis: RedisProcess): Promise<SpikeRun> {
  const { steady, sweep } = spikeWindows(o);
  const prefix = `spike_${system}_${randomBytes(6).toString('hex')}_`;
  const keys = Array.from({ length: o.keys }, (_, i) => `${prefix}${i.toString(36)}`);
  let next = 0;
  const sent = new Set<string>();
  const blastPick: KeyPicker = () => {
    const k = keys[next++ % keys.length] as string;
    if (sent.size < keys.length) sent.add(k);
    return k;
  };
  const steadyPick = zipf(keys, 1, 17);

  let server: ServerProcess | undefined;
  try {
    server = await startServer(system, { REDIS_URL: redis.url, BENCH_LOOP_DELAY: '1', LEASE_TTL_MS: String(o.leaseTtlMs) });
    if (system === 'tandem') await waitGlobal(server.url, 5000);
    const before = await server.stats();
    // Start on a whole wall-clock second, so client seconds and server snapshots line up.
    const t0 = Math.ceil((Date.now() + 300) / 1000) * 1000;
    const windowUrl = (name: string, [a, b]: [number, number]) => `${server?.url}/__bench/loop/window?name=${name}&from=${t0 + a * 1000}&to=${t0 + (b + 1) * 1000}`;
    await fetch(windowUrl('steady', steady));
    await fetch(windowUrl('sweep', sweep));
    await sleep(t0 - wallNow());

    const buckets = new Map<number, Bucket>();
    const record: OnResponse = (status, ms) => {
      const t = Math.floor((wallNow() - t0) / 1000);
      let b = buckets.get(t);
      if (!b) {
        b = { ok: 0, limited: 0, errors: 0, lat: [] };
        buckets.set(t, b);
      }
      if (status === 200) b.ok++;
      else if (status === 429) b.limited++;
      else b.errors++;
      if (Number.isFinite(ms)) b.lat.push(ms);
    };
    const blast = { rps: o.blastRps, seconds: o.blastSeconds, pick: blastPick };
    if (o.blastRps > 0) await paced([server.url], blast, record);
    else await cannon([server.url], blast, 50, 0, record);
    const blastRequests = next;
    await sleep(t0 + o.blastSeconds * 1000 - wallNow());
    await paced([server.url], { rps: o.steadyRps, seconds: o.steadySeconds, pick: steadyPick }, record);
    // Let the server close its last second.
    const lastSecond = Math.max(...buckets.keys());
    await sleep(t0 + (lastSecond + 1) * 1000 + 150 - wallNow());
    const loop = (await (await fetch(`${server.url}/__bench/loop`)).json()) as {
      seconds: Array<LoopFigures & { t: number; cpuMs: number; leaseCalls?: number; returnCalls?: number }>;
      windows: Record<string, LoopFigures>;
    };
    const after = await server.stats();

    const t0s = t0 / 1000;
    const seconds: SpikeSecond[] = [...buckets.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([t, b]) => {
        const lat = b.lat.sort((x, y) => x - y);
        const srv = loop.seconds.find((s) => s.t === t0s + t);
        return {
          t,
          requests: b.ok + b.limited + b.errors,
          ok: b.ok,
          limited: b.limited,
          errors: b.errors,
          p50Ms: percentile(lat, 50),
          p99Ms: percentile(lat, 99),
          maxMs: lat.length ? (lat[lat.length - 1] as number) : Number.NaN,
          over10Pct: lat.length ? (100 * lat.filter((x) => x > 10).length) / lat.length : Number.NaN,
          loop: srv ? { samples: srv.samples, p50Ms: srv.p50Ms, p99Ms: srv.p99Ms, maxMs: srv.maxMs, meanMs: srv.meanMs } : undefined,
          cpuMs: srv?.cpuMs,
          leaseCalls: srv?.leaseCalls,
          returnCalls: srv?.returnCalls,
        };
      });
    const counters: Record<string, number> = {};
    for (const name of ['leaseCalls', 'returnCalls', 'returnFailures', 'storeFailures', 'degradedDecisions']) {
      if (after[name] !== undefined) counters[name] = Number(after[name]) - Number(before[name] ?? 0);
    }
    return {
      system,
      seconds,
      windows: [
        summarise('steady', steady[0], steady[1], buckets, loop.windows.steady, seconds),
        summarise('sweep', sweep[0], sweep[1], buckets, loop.windows.sweep, seconds),
      ],
      blastKeysSent: sent.size,
      blastRequests,
      total: seconds.reduce((n, s) => n + s.requests, 0),
      errors: seconds.reduce((n, s) => n + s.errors, 0),
      counters,
    };
  } finally {
    await server?.stop();
  }
}

/** Runs the spike for every system in turn, each on a flushed Redis and a fresh key population. */
export async function runSpike(redis: RedisProcess, admin: Redis, options: SpikeOptions): Promise<SpikeResult> {
  const runs: SpikeRun[] = [];
  for (const system of options.systems) {
    await admin.flushall();
    runs.push(await runOne(system, options, redis));
  }
  return { options, ...spikeWindows(options), runs };
}

const f = (n: number | undefined, d = 1) => (n !== undefined && Number.isFinite(n) ? n.toFixed(d) : '-');

export function spikeMarkdown(r: SpikeResult): string {
  const o = r.options;
  const out: string[] = [
    `Blast: ${o.keys.toLocaleString('en-US')} fresh keys in turn, ${o.blastRps > 0 ? `at ${o.blastRps.toLocaleString('en-US')} req/s` : 'at full speed (50 connections)'} for ${o.blastSeconds} s; then ${o.steadyRps.toLocaleString('en-US')} req/s on Zipf(1) keys of the same population for ${o.steadySeconds} s. One node, LEASE_TTL_MS=${o.leaseTtlMs}. Seconds count from the blast's start; steady phase = seconds ${r.steady[0]}–${r.steady[1]}, sweep window = seconds ${r.sweep[0]}–${r.sweep[1]}. Latency client-side (ms); event-loop delay measured in the server (ms over the 1 ms sampling interval).`,
    '',
    '| system | window | requests | p50 ms | p99 ms | worst 1-s p99 ms | max ms | > 10 ms | loop p99 ms | loop max ms | return calls |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const w of ['steady', 'sweep']) {
    for (const run of r.runs) {
      const x = run.windows.find((y) => y.name === w);
      if (!x) continue;
      out.push(
        `| ${run.system} | ${w} (s ${x.from}–${x.to}) | ${x.requests} | ${f(x.p50Ms, 2)} | ${f(x.p99Ms, 1)} | ${f(x.worstSecondP99Ms, 1)} | ${f(x.maxMs, 0)} | ${f(x.over10Pct, 1)}% | ${f(x.loop?.p99Ms, 1)} | ${f(x.loop?.maxMs, 0)} | ${x.returnCalls ?? '-'} |`,
      );
    }
  }
  for (const run of r.runs) {
    const c = Object.entries(run.counters).map(([k, v]) => `${k} ${v}`).join(', ');
    out.push('', `${run.system}: ${run.total} requests, ${run.errors} errors; the blast sent ${run.blastRequests} requests over ${run.blastKeysSent} distinct keys${c ? `; ${c}` : ''}.`);
  }
  // Per second, systems side by side.
  const cols = r.runs.map((x) => x.system);
  out.push(
    '',
    `| s | ${cols.map((s) => `${s} req | p50 | p99 | max | >10ms | loop p99 | loop max${s === 'tandem' ? ' | returns' : ''}`).join(' | ')} | |`,
    `|---|${cols.map((s) => '---|'.repeat(s === 'tandem' ? 8 : 7)).join('')}---|`,
  );
  const ts = [...new Set(r.runs.flatMap((x) => x.seconds.map((s) => s.t)))].sort((a, b) => a - b);
  for (const t of ts) {
    const cells = r.runs.map((run) => {
      const s = run.seconds.find((y) => y.t === t);
      const base = s
        ? `${s.requests} | ${f(s.p50Ms, 2)} | ${f(s.p99Ms, 1)} | ${f(s.maxMs, 0)} | ${f(s.over10Pct, 0)}% | ${f(s.loop?.p99Ms, 1)} | ${f(s.loop?.maxMs, 0)}`
        : '- | - | - | - | - | - | -';
      return run.system === 'tandem' ? `${base} | ${s?.returnCalls ?? '-'}` : base;
    });
    const note = t < o.blastSeconds ? 'blast' : t >= r.sweep[0] && t <= r.sweep[1] ? 'sweep window' : '';
    out.push(`| ${t} | ${cells.join(' | ')} | ${note} |`);
  }
  return out.join('\n');
}

/** Smoke check: every run produced per-second figures, latency and event-loop delay. */
export function spikeProblems(r: SpikeResult): string[] {
  const problems: string[] = [];
  for (const run of r.runs) {
    const steady = run.windows.find((w) => w.name === 'steady');
    if (run.total === 0 || !steady || !Number.isFinite(steady.p99Ms)) problems.push(`spike/${run.system}: no latency figures`);
    if (!run.seconds.some((s) => s.loop && s.loop.samples > 0) || !steady?.loop || steady.loop.samples === 0) problems.push(`spike/${run.system}: no event-loop figures`);
  }
  return problems;
}
