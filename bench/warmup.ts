/**
 * `npm run bench:warmup`: what the first seconds after a start cost. A node that
 * has just started (a deploy, a scale-up) meets a fresh population of 12,000 API
 * keys with Zipf(1) popularity at a smooth 500 req/s (seed 000's steady rate),
 * and the run is cut into consecutive windows: server CPU µs per request and the
 * latency percentiles in each, so the warm-up (V8 compiling, the first request of
 * every key) can be told from the steady state that follows.
 *
 *   npm run bench:warmup                         2 rounds, 8 windows of 2 s (~3 min)
 *   npm run bench:warmup -- --smoke              1 round, 2 windows of 0.5 s: checks every figure exists
 *   npm run bench:warmup -- --rate 1200 --windows 10 --window-seconds 3 --systems none,tandem
 *
 * Processes as bench:cold sets them: each system a fresh server process pinned to
 * core 0 (bench/server.ts, compiled), the load generator (bench/lib/cold-loadgen.ts,
 * ten 2-connection autocannon instances started 100 ms apart: arrivals spread over
 * each second, not one burst) and redis-server pinned to core 1. Rounds alternate
 * the systems' order; every run starts a new server and a new key population, and
 * Redis is flushed before each. CPU per window is a mean over rounds; latencies
 * are pooled. Writes bench/results/warmup.json and warmup.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { makeApiKeys } from './lib/keys.js';
import { gitCommit } from './lib/git-commit.js';
import { type PacedResult, canPin, pinPid, startLoadGen } from './lib/pinned.js';
import { startServer } from './lib/processes.js';
import { percentile } from './lib/timeline.js';

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    windows: { type: 'string' },
    'window-seconds': { type: 'string' },
    rate: { type: 'string', default: '500' },
    systems: { type: 'string', default: 'none,rlflex,tandem,tandem-local' },
  },
});
const smoke = values.smoke === true;
const rounds = Number(values.rounds ?? (smoke ? 1 : 2));
const windows = Number(values.windows ?? (smoke ? 2 : 8));
const windowSeconds = Number(values['window-seconds'] ?? (smoke ? 0.5 : 2));
const rate = Number(values.rate);
const systems = (values.systems as string).split(',');
const REDIS_SYSTEMS = new Set(['tandem', 'rlflex']);
const pin = canPin(2);
const SERVER_CPU = pin ? '0' : undefined;
const OTHER_CPU = pin ? '1' : undefined;

type Window = { cpuUs: number; requests: number; errors: number; latencies: number[] };
const runs = new Map<string, Window[][]>(systems.map((s) => [s, []]));

const redis = await RedisProcess.start();
if (pin) {
  pinPid(process.pid, OTHER_CPU as string);
  if (redis.proc?.pid) pinPid(redis.proc.pid, OTHER_CPU as string);
}
const gen = await startLoadGen(OTHER_CPU);
const admin = redis.client();
let seed = 1;
try {
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? systems : [...systems].reverse();
    for (const system of order) {
      await admin.flushall();
      const server = await startServer(system, REDIS_SYSTEMS.has(system) ? { REDIS_URL: redis.url } : {}, SERVER_CPU);
      try {
        // A population no process has seen, one per run.
        const keys = makeApiKeys(12_000).map((k) => `${k}-w${round}-${system}`);
        const run: Window[] = [];
        for (let w = 0; w < windows; w++) {
          const c0 = Number((await server.stats()).cpuMicros);
          const r: PacedResult = await gen.run({ kind: 'paced', urls: [server.url], keys, mix: 'zipf', seed: seed++, seconds: windowSeconds, rps: rate });
          const c1 = Number((await server.stats()).cpuMicros);
          run.push({ cpuUs: c1 - c0, requests: r.requests, errors: r.errors, latencies: r.latencies });
        }
        runs.get(system)?.push(run);
        const cells = run.map((w) => `${(w.cpuUs / Math.max(1, w.requests)).toFixed(0)}`).join(' ');
        console.log(`round ${round + 1} ${system.padEnd(14)} CPU µs/req by window: ${cells}`);
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  admin.disconnect();
  await gen.stop();
  await redis.stop();
}

type Cell = { cpuUsPerReq: number; p50: number; p99: number; requests: number; errors: number };
const table: Record<string, Cell[]> = {};
let missing = false;
for (const system of systems) {
  const rs = runs.get(system) ?? [];
  table[system] = Array.from({ length: windows }, (_, w) => {
    const ws = rs.map((r) => r[w] as Window);
    const lat = ws.flatMap((x) => x.latencies).sort((a, b) => a - b);
    const cpu = ws.reduce((s, x) => s + x.cpuUs / Math.max(1, x.requests), 0) / Math.max(1, ws.length);
    const cell = { cpuUsPerReq: cpu, p50: percentile(lat, 50), p99: percentile(lat, 99), requests: ws.reduce((s, x) => s + x.requests, 0), errors: ws.reduce((s, x) => s + x.errors, 0) };
    if (cell.requests === 0 || !Number.isFinite(cell.cpuUsPerReq)) missing = true;
    return cell;
  });
}

const header = Array.from({ length: windows }, (_, w) => `${(w * windowSeconds).toFixed(1)}–${((w + 1) * windowSeconds).toFixed(1)} s`);
const md = [
  '# Warm-up: the first seconds after a start',
  '',
  `Date: ${new Date().toISOString()}. Commit: ${gitCommit()}. Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. Command: \`npm run bench:warmup (rounds ${rounds}, ${windows} windows of ${windowSeconds} s, ${rate} req/s)\`.`,
  '',
  `A fresh server process and a fresh population of 12,000 API keys (Zipf(1)) per run, ${rate} req/s spread over each second, ${rounds} round(s) alternating the systems' order. Seconds count from the first request. Server pinned to core 0; generator and Redis to core 1. CPU: the server's CPU time over the window's requests, mean over rounds; latencies pooled over rounds.`,
  '',
  '### Server CPU µs per request',
  '',
  `| system | ${header.join(' | ')} |`,
  `|---|${header.map(() => '---:').join('|')}|`,
  ...systems.map((s) => `| ${s} | ${(table[s] ?? []).map((c) => c.cpuUsPerReq.toFixed(0)).join(' | ')} |`),
  '',
  '### Latency p50 / p99 ms',
  '',
  `| system | ${header.join(' | ')} |`,
  `|---|${header.map(() => '---:').join('|')}|`,
  ...systems.map((s) => `| ${s} | ${(table[s] ?? []).map((c) => `${c.p50.toFixed(2)} / ${c.p99.toFixed(2)}`).join(' | ')} |`),
  '',
  `Errors (neither 200 nor 429): ${systems.map((s) => `${s} ${(table[s] ?? []).reduce((n, c) => n + c.errors, 0)}`).join(', ')}.`,
  '',
].join('\n');
console.log(`\n${md}`);
if (!smoke) {
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/warmup.json', import.meta.url), `${JSON.stringify({ rounds, windows, windowSeconds, rate, table }, null, 2)}\n`);
  writeFileSync(new URL('./results/warmup.md', import.meta.url), md);
}
if (missing) {
  console.error('bench:warmup: a window produced no figures');
  process.exit(1);
}
