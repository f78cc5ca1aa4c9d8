/**
 * @module lease/lease-sizing
 *
 * How many tokens a lease asks for, and when a warm key fetches its next one,
 * from the key's observed arrival rate. Pure functions, table-tested.
 *
 * - A lease asks for the waiting requests (`need`) and tops them up to the
 *   demand expected over `coverMs` at the observed rate (`extra`; need + extra
 *   at most max(need, `maxAhead`)). The store grants `extra` only up to half of
 *   what is left, so leases shrink as the global bucket drains. A key's first
 *   lease asks for `coldTokens` (at most a tenth of its bucket): enough that a
 *   key's next few requests are local, before its rate is known.
 * - Requests queued by a key draining its bucket (arriving faster than its
 *   policy refills, with fewer than four leases' worth left: a burst, an
 *   abuser) lease exactly what waits: prefetching for them would strand tokens
 *   on this node that another node's share of the burst needs. A deep bucket
 *   (a daily window of 10,000 spent at 5/s) is not drained by one lease: its
 *   keys lease ahead.
 * - Refill-ahead: once a warm key's held tokens fall below its demand over
 *   `aheadMs`, the next lease is fetched in the background; never for a key
 *   arriving faster than its policy refills (it would strand tokens too).
 */

export type SizingOptions = {
  /** Most tokens a lease asks for ahead of demand. */
  maxAhead: number;
  /** How much demand (ms at the observed rate) a lease tries to cover. */
  coverMs: number;
  /** Tokens a key's first lease asks for. */
  coldTokens: number;
  /** Refill-ahead horizon, ms of demand. */
  aheadMs: number;
  leaseTtlMs: number;
};

/** The EWMA of the time between arrivals, ms; NaN until a second arrival. */
export function nextInterval(intervalMs: number, lastArrivalMs: number, nowMs: number): number {
  const dt = nowMs - lastArrivalMs;
  if (!(dt >= 0)) return intervalMs;
  return Number.isNaN(intervalMs) ? dt : intervalMs * 0.8 + dt * 0.2;
}

/** A cold key's lease takes at most this share of what its bucket has left (at least 1 token). */
export const COLD_SHARE = 10;

/**
 * Tokens ahead of demand worth asking for: the demand over `coverMs`. A cold key (rate not
 * known yet) asks for `coldTokens`, but at most a tenth of the `remaining` tokens (a guess
 * must not pin much of a small bucket on one node while another node serves the client)
 * and at most `maxAhead`.
 */
export function aheadTokens(intervalMs: number, o: SizingOptions, remaining = Number.POSITIVE_INFINITY): number {
  // Never more than maxAhead either: LEASE_MAX_TOKENS=0 means no token ahead of demand.
  if (!(intervalMs >= 0)) return Math.min(o.coldTokens, o.maxAhead, Math.max(1, Math.floor(remaining / COLD_SHARE)));
  return Math.min(o.maxAhead, Math.floor(o.coverMs / Math.max(intervalMs, 0.01)));
}

/** Whether a key arriving every `intervalMs` drains a bucket refilling at `refillPerSec` with `remaining` left. */
export function draining(intervalMs: number, refillPerSec: number, remaining: number, o: SizingOptions): boolean {
  return intervalMs * refillPerSec < 1000 && remaining < 4 * aheadTokens(intervalMs, o);
}

/** Tokens to ask for on top of `need`: none for a key draining its bucket, else up to the demand. */
export function extraTokens(intervalMs: number, refillPerSec: number, remaining: number, need: number, o: SizingOptions): number {
  if (need > 0 && draining(intervalMs, refillPerSec, remaining, o)) return 0;
  return Math.max(0, aheadTokens(intervalMs, o, remaining) - need);
}

/**
 * Refill-ahead threshold: the demand over `aheadMs`, for keys warm enough to use a lease
 * and arriving within their policy's rate; 0 = never. A key arriving faster than its
 * policy refills is draining the bucket: fetching ahead for it would strand tokens on this
 * node that another node's requests for the same key need (the bucket is about to be dry).
 */
export function lowWater(intervalMs: number, lastGrant: number, refillPerSec: number, remaining: number, o: SizingOptions): number {
  if (!(intervalMs * 2 < o.leaseTtlMs) || draining(intervalMs, refillPerSec, remaining, o)) return 0;
  return Math.min(Math.floor(lastGrant / 2), Math.ceil(o.aheadMs / Math.max(intervalMs, 0.01)));
}
