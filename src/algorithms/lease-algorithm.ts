/**
 * @module algorithms/lease-algorithm
 *
 * What an algorithm contributes to a lease step. The lease protocol
 * (`protocol/lease-step.ts`) owns everything algorithms share: leased permits,
 * their two generations, deadlines and dated spends; an algorithm owns only its
 * own state and how time, grants and returns change it. A new algorithm is one
 * object of this shape, its Lua twin under `lua/algorithms/`, and their tests.
 *
 * Two families fit the protocol:
 * - refilling ones (token bucket, GCRA): permits come back continuously, so the
 *   state must never make more available than `cap` (the capacity minus what is
 *   leased out), or holder and bucket together would exceed the capacity;
 * - counting ones (fixed and sliding windows): a leased permit is counted in the
 *   window when it is granted, so `cap` needs no enforcing, and a lease lives no
 *   longer than the window it was counted in (`lifeMs`).
 */
/** One algorithm's part of a lease step. Every function is pure but for the state it is handed. */
export interface LeaseAlgorithm<P, S> {
  /** The tag in Redis key names. */
  readonly tag: string;
  /** The byte that names the algorithm in a stored value (a value of another algorithm is never read as this one's). */
  readonly stateTag: number;
  /** Bytes its state takes in a stored value, after the protocol's header. */
  readonly stateBytes: number;
  /** Its parameters, in the order its Lua twin's `alg_load` reads them (numbers: they travel packed, comma-separated). */
  luaArgs(p: P): number[];
  /** A bucket nobody has touched: everything available. */
  fresh(p: P): S;
  /** Most permits the bucket can hold (what `leased` is subtracted from). */
  capacity(p: P): number;
  /** Lets store time pass from `fromMs` to `toMs`, never making more than `cap` permits available. */
  advance(s: S, p: P, fromMs: number, toMs: number, cap: number): void;
  /** Rounds away float noise, always towards fewer permits (after returns, before granting). */
  settle(s: S): void;
  /** Whole permits that could be granted now. */
  available(s: S, p: P): number;
  take(s: S, p: P, n: number): void;
  /** Unused permits of a lease granted at `grantedAtMs` coming back, up to `cap` available. */
  giveBack(s: S, p: P, n: number, cap: number, grantedAtMs: number): void;
  /** ms until one whole permit is available, ignoring leases; 0 if one is (`permitsMs` for one; mirrored in Lua). */
  nextPermitMs(s: S, p: P): number;
  /** ms until `n` whole permits are available at once, ignoring leases; 0 if they are. `n` at most the capacity. */
  permitsMs(s: S, p: P, n: number): number;
  /** ms until the state is the same as `fresh`, if nothing happens. */
  idleMs(s: S, p: P): number;
  /** How long permits granted now may live: `ttlMs`, or less when the window they are counted in ends sooner. */
  lifeMs(s: S, p: P, nowMs: number, ttlMs: number): number;
  /** Reads the state from a stored value at `offset`; `updatedMs` is the header's. */
  decode(view: DataView, offset: number, updatedMs: number): S;
}
