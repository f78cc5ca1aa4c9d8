/**
 * `npm run bench:decide`: the local tier alone, in process: one policy engine
 * decision for a warm key holding tokens (no HTTP, no Redis), in ns per
 * decision, 1,000,000 decisions over 1,000 keys, three rounds, leasing (the
 * local tier of the Redis mode) and then `direct` (the embedded service, no
 * leases). What the hot path costs before any socket is touched.
 *
 * Then what returning keys leave for the young-generation collector: 12,000 keys
 * of the seed's policy (40, 10/s) visited in turn on a clock moved by hand, each
 * key every 10 s (seed 000's clients at its 1,200 req/s peak: a lease call every
 * other decision) or every 300 ms (a busy key: twenty spends per lease). Each
 * decision's allocations are sampled (V8's sampling heap profiler) and counted
 * only if they outlive a scavenge: the bytes each scavenge copies and promotes,
 * and where they are made; leasing, then `direct`. Bytes, not time, but sampled: the same build's figure
 * moves between runs (by up to 2.2 × for returning keys here), so compare builds
 * over several runs.
 */
import { Session } from 'node:inspector/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FakeClock, systemClock } from '../src/core/clock.js';
import { LeaseManager } from '../src/lease/lease-manager.js';
import { silentLogger } from '../src/log/logger.js';
import { MemoryStore } from '../src/store/memory-store.js';
import type { RequestInput } from '../src/policy/engine.js';
import { type HeapProfile, summariseHeapProfile } from './lib/cpu-profile.js';
import { apiKeyEngine, apiKeyRequest } from './lib/in-process.js';
// Leasing (the local tier of the Redis mode, against the memory store), then `direct` (the embedded service).
for (const direct of [false, true]) {
  const manager = new LeaseManager({ store: new MemoryStore({ clock: systemClock }), clock: systemClock, logger: silentLogger(), maxKeys: 100000, leaseTtlMs: 30000, maxLeaseTokens: 20, direct });
  const e = apiKeyEngine(manager, 1_000_000, 1);
  const keys = Array.from({ length: 1000 }, (_, i) => `ak_${i}_0123456789abcdef`);
  const inputs = keys.map(apiKeyRequest);
  for (const i of inputs) await e.decide(i);
  for (let round = 0; round < 3; round++) {
    let sync = 0;
    const t0 = performance.now();
    const N = 1_000_000;
    for (let j = 0; j < N; j++) {
      const r = e.decide(inputs[j % 1000] as RequestInput);
      if (!(r instanceof Promise)) sync++;
      else await r;
    }
    console.log(`${direct ? 'direct (embedded)' : 'leasing'}: ${((performance.now() - t0) * 1e6 / N).toFixed(0)} ns/decision, sync ${sync}`);
  }
  await manager.close();
}

// Survivors: the seed's policy, 12,000 keys, on a clock moved by hand.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (o: { type: 'minor' | 'major' }) => void;

/** Bytes per decision that outlive a scavenge, by allocating function, for keys each visited every `everyMs`. */
async function survivors(label: string, everyMs: number, warmVisits: number, measuredVisits: number, direct = false): Promise<void> {
  const keys = 12_000;
  const clock = new FakeClock(0);
  const m = new LeaseManager({
    store: new MemoryStore({ clock, sweepIntervalMs: 0 }),
    clock,
    logger: silentLogger(),
    maxKeys: 100000,
    leaseTtlMs: 30000,
    maxLeaseTokens: 20,
    // No sweep or return pacer: they would run on real time, not on this clock.
    timers: false,
    direct,
  });
  const engine = apiKeyEngine(m, 40, 4);
  const inputs = Array.from({ length: keys }, (_, i) => apiKeyRequest(`ak_${i}_seed_0123456789`));
  let next = 0;
  const visit = async (n: number) => {
    for (let j = 0; j < n; j++) {
      clock.advance(everyMs / keys);
      // A fixed permutation (7919 is prime to 12,000): every key once per round, always in the same order.
      const r = engine.decide(inputs[(next++ * 7919) % keys] as RequestInput);
      if (r instanceof Promise) await r;
      // Let the loop turn now and then, as between requests.
      if (j % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await visit(warmVisits * keys);
  gc({ type: 'major' });
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
  const measured = measuredVisits * keys;
  const calls0 = m.stats.leaseCalls;
  await visit(measured);
  // What the last decisions left and no scavenge has seen yet: freed now, or counted if it survives.
  gc({ type: 'minor' });
  const { profile } = await session.post('HeapProfiler.stopSampling');
  session.disconnect();
  const heap = summariseHeapProfile(profile as unknown as HeapProfile);
  const calls = (m.stats.leaseCalls - calls0) / measured;
  console.log(`${label}: ${(heap.busyUs / measured).toFixed(0)} B per decision outlive a scavenge (sampled; ${calls.toFixed(2)} lease calls per decision)`);
  for (const [site, bytes] of heap.byFunction.slice(0, 4)) console.log(`  ${(bytes / measured).toFixed(1).padStart(6)} B  ${site}`);
  await m.close();
}

await survivors('returning keys, each every 10 s (1,200 req/s over 12,000 keys, seed 000 at its peak)', 10_000, 3, 2);
await survivors('busy keys, each every 300 ms (20 spends per lease)', 300, 6, 20);
await survivors('direct (embedded), returning keys, each every 10 s', 10_000, 3, 2, true);
await survivors('direct (embedded), busy keys, each every 300 ms', 300, 6, 20, true);
