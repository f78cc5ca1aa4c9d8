/**
 * `npm run bench:cold-decide`: what a key's first request costs this process, in
 * process: policy engine, lease manager and the Redis store against a real
 * redis-server (no HTTP). Every decision is for a key never seen before.
 * `--concurrency 1` (the default) sends one at a time, as at 1,200 req/s where
 * each waits its own lease call; `--concurrency 50` is a closed loop of 50.
 *
 * Reports, per round: CPU µs per decision, GC ms per 1,000 decisions and the
 * round's scavenges (V8's `gc` performance entries), heap bytes kept per held
 * key (after full collections), and on the last round with `--top N` bytes
 * allocated per decision by function (V8's sampling heap profiler, counting
 * objects collected since). CPU and GC are this process's alone, so the load
 * generator and HTTP stack that blur `bench:cold` on two shared cores do not
 * enter them. `--system rlflex` measures rate-limiter-flexible's `consume` the
 * same way (its Redis limiter, as bench/peers configures it): a baseline in
 * the same run.
 *
 * It runs compiled, as the bench servers do (`.bench-build/`, see bench/lib/processes.ts):
 * under tsx, esbuild's `__name` wrapper would cost every function a decision creates,
 * charged to our code and not to rate-limiter-flexible's plain JavaScript. `BENCH_TSX=1`
 * runs the source as it is.
 *
 *   npm run bench:cold-decide -- [--decisions 20000] [--rounds 3] [--top 0] [--concurrency 1] [--system tandem|rlflex]
 */
import { Session } from 'node:inspector/promises';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { systemClock } from '../src/core/clock.js';
import { LeaseManager } from '../src/lease/lease-manager.js';
import { silentLogger } from '../src/log/logger.js';
import { RedisStore } from '../src/store/redis-store.js';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { type HeapProfile, summariseHeapProfile } from './lib/cpu-profile.js';
import { apiKeyEngine, apiKeyRequest } from './lib/in-process.js';
import { makeApiKeys } from './lib/keys.js';

if (import.meta.url.endsWith('.ts') && process.env.BENCH_TSX !== '1') {
  // Started from source (npm run, tsx): run the compiled harness instead, with the same arguments.
  const { compileBench } = await import('./lib/processes.js');
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [`${compileBench()}/bench/cold-decide.js`, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const { values } = parseArgs({
  options: {
    decisions: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    top: { type: 'string', default: '0' },
    concurrency: { type: 'string', default: '1' },
    system: { type: 'string', default: 'tandem' },
  },
});
const N = Number(values.decisions);
const concurrency = Number(values.concurrency);

const redis = await RedisProcess.start();
const store = new RedisStore({ url: redis.url, commandTimeoutMs: 1000, keyPrefix: 'rl:', onCall: () => {} });
const manager = new LeaseManager({ store, clock: systemClock, logger: silentLogger(), maxKeys: 100_000, leaseTtlMs: 30_000, maxLeaseTokens: 20, newKeysPerSec: 1_000_000 });
// The seed's default policy (bucket 40, refill 10/s), one rule keyed by API key.
const engine = apiKeyEngine(manager, 40, 4);
// rate-limiter-flexible as bench/peers/peers.ts runs it (bucket 40 per 4 s).
const rlflexClient = new Redis(redis.url, { enableOfflineQueue: true, maxRetriesPerRequest: 1, commandTimeout: 1000 });
const rlflex = new RateLimiterRedis({ storeClient: rlflexClient, keyPrefix: 'rlflx', points: 40, duration: 4 });
/** One decision of `key` by the system measured: true when allowed. */
const decideOne =
  values.system === 'rlflex'
    ? (key: string): Promise<boolean> => rlflex.consume(key).then(() => true, () => false)
    : (key: string): Promise<boolean> => Promise.resolve(engine.decide(apiKeyRequest(key))).then((o) => o.kind === 'allowed');

let gcMs = 0;
/** Durations of this round's scavenges (minor GCs), ms: a pause every request in flight waits out. */
let scavenges: number[] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcMs += e.duration;
    if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges.push(e.duration);
  }
});
gcObserver.observe({ entryTypes: ['gc'] });

/**
 * `count` decisions of fresh keys, `concurrency` at a time; how many were allowed. Each group
 * starts from the continuation of the previous group's replies, which arrive in the
 * event loop's I/O phase, as requests read from sockets do: their lease calls are flushed
 * (setImmediate) in the same loop iteration, as a server's are. Starting each group from
 * a setImmediate callback instead would cost the limiter an extra loop iteration per group
 * that no server request pays.
 */
async function run(count: number): Promise<number> {
  const keys = makeApiKeys(count);
  let allowed = 0;
  for (let i = 0; i < count; i += concurrency) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(count, i + concurrency); j++) {
      batch.push(decideOne(keys[j] as string).then((ok) => void (ok && allowed++)));
    }
    await Promise.all(batch);
  }
  return allowed;
}

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
/** Heap in use after a full collection: what the process keeps. */
const retained = () => {
  collect();
  collect();
  return process.memoryUsage().heapUsed;
};

await run(Math.min(N, 5000)); // warm the code (JIT), not the keys: every round's keys are new
const session = new Session();
session.connect();
const rows: string[] = [];
for (let round = 0; round < Number(values.rounds); round++) {
  const profile = Number(values.top) > 0 && round === Number(values.rounds) - 1;
  if (profile) {
    await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }
  const heap0 = profile ? 0 : retained();
  gcMs = 0;
  scavenges = [];
  const cpu0 = process.cpuUsage();
  const allowed = await run(N);
  const cpu = process.cpuUsage(cpu0);
  await new Promise((r) => setTimeout(r, 50)); // let the gc entries arrive
  const gcPer1000 = (gcMs * 1000) / N;
  // Each decision's key stays held (the LRU has room): what a key costs the heap while held.
  const kept = profile ? '' : `, ${((retained() - heap0) / N).toFixed(0)} B kept per key`;
  scavenges.sort((a, b) => a - b);
  const median = scavenges[Math.floor(scavenges.length / 2)] ?? 0;
  const pauses = `${scavenges.length} scavenges, median ${median.toFixed(2)} ms, max ${(scavenges.at(-1) ?? 0).toFixed(2)} ms`;
  rows.push(`round ${round + 1}: ${((cpu.user + cpu.system) / N).toFixed(1)} µs CPU/decision, GC ${gcPer1000.toFixed(2)} ms per 1,000 (${pauses})${kept}, ${allowed}/${N} allowed`);
  if (profile) {
    const { profile: heap } = await session.post('HeapProfiler.stopSampling');
    const { busyUs: total, byFunction } = summariseHeapProfile(heap as unknown as HeapProfile);
    rows.push(`allocated: ${(total / N).toFixed(0)} B/decision (sampled); by function:`);
    for (const [name, bytes] of byFunction.slice(0, Number(values.top))) {
      rows.push(`  ${(bytes / N).toFixed(0).padStart(6)} B  ${name}`);
    }
  }
}
console.log(rows.join('\n'));
gcObserver.disconnect();
session.disconnect();
await manager.close();
await store.close();
rlflexClient.disconnect();
await redis.stop();
