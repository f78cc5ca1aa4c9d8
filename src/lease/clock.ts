/**
 * @module lease/clock
 *
 * Time as a dependency. `nowMs` is monotonic (durations, lease expiry, deny-until);
 * `wallMs` is epoch time (only the in-memory store uses it, as Redis uses TIME).
 * Tests pass a `FakeClock` and move it by hand.
 */
export interface Clock {
  nowMs(): number;
  wallMs(): number;
}

export const systemClock: Clock = {
  nowMs: () => performance.now(),
  wallMs: () => Date.now(),
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
  wallMs(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
}
