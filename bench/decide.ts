/**
 * `npm run bench:decide`: the local tier alone, in process: one policy engine
 * decision for a warm key holding tokens (no HTTP, no Redis), in ns per
 * decision, 1,000,000 decisions over 1,000 keys, three rounds. What the hot path
 * costs before any socket is touched.
 */
import { systemClock } from '../src/core/clock.js';
import { LeaseManager } from '../src/lease/lease-manager.js';
import { silentLogger } from '../src/log/logger.js';
import { MemoryStore } from '../src/store/memory-store.js';
import type { RequestInput } from '../src/policy/engine.js';
import { apiKeyEngine, apiKeyRequest } from './lib/in-process.js';
const manager = new LeaseManager({ store: new MemoryStore({ clock: systemClock }), clock: systemClock, logger: silentLogger(), maxKeys: 100000, leaseTtlMs: 30000, maxLeaseTokens: 20 });
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
  console.log(`${((performance.now() - t0) * 1e6 / N).toFixed(0)} ns/decision, sync ${sync}`);
}
await manager.close();
