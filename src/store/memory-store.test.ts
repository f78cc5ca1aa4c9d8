import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Policy } from '../core/types.js';
import { FakeClock } from '../core/clock.js';
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

  describe('its timer sweep', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('drops expired buckets 1,000 per event-loop turn, not the whole map at once, and keeps those still limiting', async () => {
      vi.useFakeTimers();
      const clock = new FakeClock(0);
      const store = new MemoryStore({ clock, sweepIntervalMs: 10_000 });
      const policy: Policy = { name: 'p', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 };
      for (let i = 0; i < 3500; i++) store.take(`idle-${i}`, policy, 1);
      clock.advance(10_000); // every idle bucket is full again: due
      for (let i = 0; i < 40; i++) store.take('busy', policy, 1); // drained now: still limiting
      expect(store.size).toBe(3501);
      vi.advanceTimersByTime(10_000); // the interval fires: one slice
      expect(store.size).toBe(3501 - 1000);
      vi.advanceTimersByTime(1); // the next turn (a 0-ms timeout runs after 1 ms)
      expect(store.size).toBe(3501 - 2000);
      vi.advanceTimersByTime(2);
      expect(store.size).toBe(1);
      expect(store.take('busy', policy, 1).allowed).toBe(false);
      await store.close();
    });
  });
});
