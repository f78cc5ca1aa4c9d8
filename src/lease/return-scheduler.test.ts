import { describe, expect, it } from 'vitest';
import { ReturnScheduler } from './return-scheduler.js';

type Key = { name: string; returnQueued: boolean; trackedAt: number; expiresAt: number | undefined };
const key = (name: string, expiresAt?: number): Key => ({ name, returnQueued: false, trackedAt: Number.POSITIVE_INFINITY, expiresAt });

function scheduler() {
  let now = 0;
  const sent: string[] = [];
  const s = new ReturnScheduler<Key>({
    sweepIntervalMs: 100,
    leaseTtlMs: 10_000,
    returnsPerSec: 1000,
    timers: false,
    clock: () => now,
    expiry: (k) => k.expiresAt,
    send: (k) => {
      sent.push(k.name);
      return undefined;
    },
  });
  /** Moves the clock to `t`, sweeps, and sends what the sweep queued. */
  const sweepAt = async (t: number) => {
    now = t;
    s.sweep();
    await s.flush();
  };
  return { s, sent, sweepAt };
}

describe('return scheduler', () => {
  it('queues a lease for return once its expiry is within the sweep lead, not before', async () => {
    const { s, sent, sweepAt } = scheduler();
    const k = key('a', 1000);
    s.track(k, 1000);
    await sweepAt(800); // lead: 1.5 sweep intervals = 150 ms
    expect(sent).toEqual([]);
    await sweepAt(860);
    expect(sent).toEqual(['a']);
  });

  it('keeps one entry per key across renewals and returns the lease at its latest expiry', async () => {
    const { s, sent, sweepAt } = scheduler();
    const k = key('a', 1000);
    s.track(k, 1000);
    // Renewed twice: expiry pushed later each time; no new entry.
    for (const e of [2000, 3000]) {
      k.expiresAt = e;
      s.track(k, e);
    }
    expect(k.trackedAt).toBe(1000);
    await sweepAt(900); // the entry for 1000 comes due: the lease now expires at 3000, so it is moved there
    expect(sent).toEqual([]);
    expect(k.trackedAt).toBe(3000);
    await sweepAt(2900);
    expect(sent).toEqual(['a']);
  });

  it('drops the entry of a key whose lease is gone or not returned at expiry', async () => {
    const { s, sent, sweepAt } = scheduler();
    const gone = key('gone', 1000);
    const windowed = key('windowed', 1000);
    s.track(gone, 1000);
    s.track(windowed, 1000);
    gone.expiresAt = undefined;
    windowed.expiresAt = undefined;
    await sweepAt(2000);
    expect(sent).toEqual([]);
    expect([gone.trackedAt, windowed.trackedAt]).toEqual([Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY]);
    // Tracked again for a new lease: a new entry.
    gone.expiresAt = 5000;
    s.track(gone, 5000);
    await sweepAt(4900);
    expect(sent).toEqual(['gone']);
  });

  it('adds an entry for an expiry earlier than the one tracked, and returns at the earlier one', async () => {
    const { s, sent, sweepAt } = scheduler();
    const k = key('a', 3000);
    s.track(k, 3000);
    k.expiresAt = 1000;
    s.track(k, 1000);
    await sweepAt(900);
    expect(sent).toEqual(['a']);
    // The later entry, when it comes due, finds the key's lease gone (given back).
    k.expiresAt = undefined;
    await sweepAt(2900);
    expect(sent).toEqual(['a']);
  });
});
