/**
 * @module core/clock
 *
 * One monotonic clock decides everything in a process (durations, lease expiry,
 * deny-until, the in-memory store's buckets), so a wall-clock step cannot move
 * a decision; Redis decides with its own TIME. Tests pass a `FakeClock` and
 * move it by hand.
 */
import type { Clock } from './types.js';

export const systemClock: Clock = {
  nowMs: () => performance.now(),
};

/** A clock that moves only when told to. */
export class FakeClock implements Clock {
  #now: number;

  constructor(startMs = 1_700_000_000_000) {
    this.#now = startMs;
  }

  nowMs(): number {
    return this.#now;
  }

  advance(ms: number): void {
    this.#now += ms;
  }
}
