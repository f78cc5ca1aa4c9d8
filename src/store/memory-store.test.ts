import { describe, expect, it } from 'vitest';
import type { Policy } from '../core/types.js';
import { MemoryStore } from './memory-store.js';

describe('MemoryStore', () => {
  it('decides with the monotonic clock: a wall-clock step (NTP) frees no lease and refills nothing', async () => {
    let mono = 1000;
    let wall = 1_700_000_000_000;
    // A clock that also offers wall time: the store must not read it.
    const clock = { nowMs: () => mono, wallMs: () => wall };
    const store = new MemoryStore({ clock, sweepIntervalMs: 0 });
    const policy: Policy = { name: 'p', algorithm: 'token_bucket', capacity: 40, refillPerSec: 1 };
    const a = await store.lease('k', policy, { need: 30, extra: 0, leaseTtlMs: 30_000 });
    expect(a.granted).toBe(30);
    wall += 3_600_000; // the wall clock jumps an hour; one ms of real time passes
    mono += 1;
    const b = await store.lease('k', policy, { need: 40, extra: 0, leaseTtlMs: 30_000 });
    expect(b.granted).toBe(10); // the 30 leased stay leased: no over-admission
    await store.close();
  });
});
