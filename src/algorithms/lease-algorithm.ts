/**
 * @module algorithms/lease-algorithm
 *
 * What an algorithm contributes to a lease step. The lease protocol
 * (`protocol/lease-step.ts`) owns everything algorithms share: leased permits,
 * their two generations, deadlines and dated spends; an algorithm owns only its
 * own state and how time, grants and returns change it. A new algorithm is one
 * object of this shape, its Lua twin under `lua/algorithms/`, and their tests.
 */
/** One algorithm's part of a lease step. Every function is pure but for the state it is handed. */
export interface LeaseAlgorithm<P, S> {
  /** The tag in stored state and Redis key names. */
  readonly tag: string;
  /** Its parameters as its Lua twin reads them from ARGV[1..n]. */
  luaArgs(p: P): (string | number)[];
  /** A bucket nobody has touched: full. */
  fresh(p: P): S;
  /** Most permits the bucket can hold (what `leased` is subtracted from). */
  capacity(p: P): number;
  /** Lets `ms` of time pass, never making more than `cap` permits available. */
  advance(s: S, p: P, ms: number, cap: number): void;
  /** Drops precision below 1e-6 (after refill and returns, before granting). */
  settle(s: S): void;
  /** Whole permits that could be granted now. */
  available(s: S): number;
  take(s: S, n: number): void;
  /** Unused permits coming back, up to `cap` available. */
  giveBack(s: S, n: number, cap: number): void;
  /** ms until one whole permit is available, ignoring leases; 0 if one is. */
  nextPermitMs(s: S, p: P): number;
  /** ms until the state is the same as `fresh`, if nothing happens. */
  idleMs(s: S, p: P): number;
}

