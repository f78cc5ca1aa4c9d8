/**
 * `npm run bench:tail`: where in a paced run the slow responses are, and what the
 * server was doing then. Each system runs `bench:cold`'s sequence for one round
 * (a JIT warm-up, full-speed closed loops on a fresh population per mix, cold then
 * warm, then 1,200 req/s paced on those keys and on fresh ones), pinned the same
 * way (server on core 0; generator, Redis and this script on core 1). For every
 * paced window it reports the p99 over the whole window and over what came after
 * its first second (the paced generator starts its ten autocannon instances
 * 100 ms apart over that second, each opening its connections), how many responses
 * took longer than `--slow` ms in each part, the server's event-loop delay p99 and max over
 * the window, and V8's collections that began in it (all, and how many were not
 * scavenges: mark-compacts and other full-heap work), and, from Linux's
 * per-thread scheduler counters (/proc/<pid>/task/<tid>/schedstat), how long the
 * server's main thread ran and waited for the core, and how long its other
 * threads (V8's workers: background compilation and GC, libuv's pool) ran on it:
 * pinned to one core, every ms they run is a ms the event loop waits. (The main
 * thread's wait also counts any other process on that core; `bench:cold` measures
 * those, this does not.) Redis is flushed before each system, as in `bench:cold`.
 *
 *   npm run bench:tail -- [--systems none,tandem-local,tandem,hono-rate-limiter] [--rounds 2] [--slow 2.5] [--paced-seconds 2]
 *
 * A diagnostic, not a score: one window holds ~2,400 responses, so its p99 is the
 * 24th slowest; read the counts and the two parts, not one p99. Writes
 * bench/results/tail.md.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { gitCommit } from './lib/git-commit.js';
import { makeApiKeys } from './lib/keys.js';
import { type PacedResult, canPin, pinPid, startLoadGen } from './lib/pinned.js';
import { startServer } from './lib/processes.js';
import { percentile } from './lib/timeline.js';

const { values } = parseArgs({
  options: {
    systems: { type: 'string', default: 'none,tandem-local,tandem,hono-rate-limiter' },
    rounds: { type: 'string', default: '2' },
    slow: { type: 'string', default: '2.5' },
    'paced-seconds': { type: 'string', default: '2' },
  },
});
const systems = (values.systems as string).split(',');
const rounds = Number(values.rounds);
const slowMs = Number(values.slow);
const pacedSeconds = Number(values['paced-seconds']);
// The generator starts its instances over the first second: shorter runs have no "after the ramp".
if (!(pacedSeconds >= 2)) throw new Error('--paced-seconds must be at least 2');
const pin = canPin(2);
const SERVER_CPU = pin ? '0' : undefined;
const OTHER_CPU = pin ? '1' : undefined;
const MIXES = ['uniform', 'zipf'] as const;

const quantile = (xs: number[], p: number): number => (xs.length === 0 ? Number.NaN : percentile([...xs].sort((a, b) => a - b), p * 100));
const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '-');

type WindowFigures = { loopP99: number; loopMax: number; gcCount: number; gcMaxMs: number; majors: number; mainRunMs: number; mainWaitMs: number; othersRunMs: number };

/** Per thread of `pid`: ns on the CPU and ns waiting for it (Linux schedstat); empty where /proc has none. */
function threadTimes(pid: number): Map<string, [number, number]> {
  const m = new Map<string, [number, number]>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return m; // not Linux, or the process is gone: the columns read 0
  }
  for (const tid of tids) {
    try {
      const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
      m.set(tid, [run as number, wait as number]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return m;
}

/** Main thread's run and wait ms, and the other threads' run ms, between two `threadTimes` (a thread absent from the first started since: all its time counts). */
function threadDelta(pid: number, a: Map<string, [number, number]>, b: Map<string, [number, number]>): [number, number, number] {
  let others = 0;
  let main: [number, number] = [0, 0];
  for (const [tid, [run, wait]] of b) {
    const [run0, wait0] = a.get(tid) ?? [0, 0];
    if (tid === String(pid)) main = [(run - run0) / 1e6, (wait - wait0) / 1e6];
    else others += (run - run0) / 1e6;
  }
  return [main[0], main[1], others];
}
type Row = { round: number; system: string; window: string; sinceLoopsMs: number; requests: number; p99: number; p99Late: number; slowEarly: number; slowLate: number } & WindowFigures;

if (OTHER_CPU) pinPid(process.pid, OTHER_CPU);
const rows: Row[] = [];
const redis = await RedisProcess.start();
try {
  if (OTHER_CPU && redis.proc?.pid) pinPid(redis.proc.pid, OTHER_CPU);
  const gen = await startLoadGen(OTHER_CPU);
  const admin = new Redis(redis.url);
  try {
    for (let round = 0; round < rounds; round++) {
      for (const system of systems) {
        await admin.flushall();
        const env: Record<string, string> = { BENCH_LOOP_DELAY: '1' };
        if (system === 'tandem' || system === 'rlflex') env.REDIS_URL = redis.url;
        const server = await startServer(system, env, SERVER_CPU);
        try {
          await new Promise((r) => setTimeout(r, 200));
          await gen.run({ kind: 'max', urls: [server.url], keys: makeApiKeys(2000), mix: 'uniform', seed: 99, seconds: 1, connections: 50 });
          const mixes = round % 2 ? [...MIXES].reverse() : [...MIXES];
          const a = new Map(mixes.map((m) => [m, makeApiKeys(12000)]));
          for (const mix of mixes) for (const seed of [1, 2]) await gen.run({ kind: 'max', urls: [server.url], keys: a.get(mix) as string[], mix, seed, seconds: 3.5, connections: 50 });
          const loopsEnded = Date.now();
          const paced = async (window: string, mix: (typeof MIXES)[number], keys: string[], seed: number) => {
            const from = Date.now();
            const to = from + pacedSeconds * 1000 + 1200;
            await fetch(`${server.url}/__bench/loop/window?name=${encodeURIComponent(window)}&from=${from}&to=${to}`);
            const pid = server.proc.pid as number;
            const t0 = threadTimes(pid);
            const r: PacedResult = await gen.run({ kind: 'paced', urls: [server.url], keys, mix, seed, seconds: pacedSeconds, rps: 1200 });
            const [mainRunMs, mainWaitMs, othersRunMs] = threadDelta(pid, t0, threadTimes(pid));
            const loop = (await (await fetch(`${server.url}/__bench/loop`)).json()) as {
              windows: Record<string, { p99Ms: number; maxMs: number; gcCount: number; gcMaxMs: number; scavenges: number }>;
            };
            const w = loop.windows[window];
            // After the ramp: every generator instance has started (they start 100 ms apart over the first second).
            const rampEnd = r.startedMs + 1000;
            const late = r.latencies.filter((_, i) => (r.doneAt[i] as number) >= rampEnd);
            const slowLate = late.filter((l) => l > slowMs).length;
            rows.push({
              round,
              system,
              window,
              sinceLoopsMs: r.startedMs - loopsEnded,
              requests: r.latencies.length,
              p99: quantile(r.latencies, 0.99),
              p99Late: quantile(late, 0.99),
              slowEarly: r.latencies.filter((l) => l > slowMs).length - slowLate,
              slowLate,
              loopP99: w?.p99Ms ?? Number.NaN,
              loopMax: w?.maxMs ?? Number.NaN,
              gcCount: w?.gcCount ?? 0,
              gcMaxMs: w?.gcMaxMs ?? 0,
              majors: (w?.gcCount ?? 0) - (w?.scavenges ?? 0),
              mainRunMs,
              mainWaitMs,
              othersRunMs,
            });
          };
          for (const mix of mixes) await paced(`warm ${mix}`, mix, a.get(mix) as string[], 3);
          for (const mix of mixes) await paced(`cold ${mix}`, mix, makeApiKeys(12000), 4);
          console.error(`round ${round + 1}/${rounds} ${system}: done`);
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    admin.disconnect();
    await gen.stop();
  }
} finally {
  await redis.stop();
}

const header = [
  '## Where the paced tail is (`npm run bench:tail`)',
  '',
  `Date: ${new Date().toISOString()}. Commit: ${gitCommit()}. Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}. ${rounds} round(s); ${pin ? 'server on core 0, generator, Redis and this script on core 1' : 'not pinned'}; paced 1,200 req/s for ${pacedSeconds} s per window, windows in the order run (the first right after the full-speed closed loops). Slow: > ${slowMs} ms. Ramp: the window's first second, while the generator's ten instances start 100 ms apart; after: all started.`,
  '',
  '| round | system | window | starts after the loops, ms | responses | p99 ms | p99 after the ramp ms | slow in the ramp | slow after it | loop delay p99 ms | loop delay max ms | GCs | of them not scavenges | longest GC ms | main thread ran ms | main thread waited for the core ms | other threads ran ms |',
  '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
];
const lines = rows.map(
  (r) =>
    `| ${r.round + 1} | ${r.system} | ${r.window} | ${r.sinceLoopsMs} | ${r.requests} | ${f(r.p99)} | ${f(r.p99Late)} | ${r.slowEarly} | ${r.slowLate} | ${f(r.loopP99)} | ${f(r.loopMax)} | ${r.gcCount} | ${r.majors} | ${f(r.gcMaxMs)} | ${f(r.mainRunMs, 0)} | ${f(r.mainWaitMs, 0)} | ${f(r.othersRunMs, 0)} |`,
);
const md = `${[...header, ...lines].join('\n')}\n`;
console.log(md);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/tail.md', import.meta.url), md);
