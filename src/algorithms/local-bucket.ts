/**
 * @module algorithms/local-bucket
 *
 * Any algorithm as a plain limiter a node runs on its own, without leases: what
 * degraded `local` mode enforces while Redis cannot be asked (with the node's
 * share of the policy). Windows are aligned to the caller's clock. The clock is
 * a parameter.
 */
import type { LeaseAlgorithm } from './lease-algorithm.js';

/** One client's state under one algorithm, and the time it was computed for. */
export type LocalBucket = { state: unknown; atMs: number };

export type LocalTake = {
  bucket: LocalBucket;
  allowed: boolean;
  /** Whole permits left after this take. */
  remaining: number;
  /** When denied: ms until a permit is back (at least 1). */
  retryAfterMs: number;
  /** ms until the state is as fresh again. */
  fullInMs: number;
};

/** Brings `prev` (fresh when undefined) to `nowMs` and takes one permit if there is one. */
export function takeLocal<P>(alg: LeaseAlgorithm<P, unknown>, prev: LocalBucket | undefined, p: P, nowMs: number): LocalTake {
  const s = prev ? prev.state : alg.fresh(p);
  const now = Math.max(nowMs, prev?.atMs ?? nowMs);
  const cap = alg.capacity(p);
  alg.advance(s, p, prev?.atMs ?? now, now, cap);
  alg.settle(s);
  const allowed = alg.available(s, p) >= 1;
  if (allowed) alg.take(s, p, 1);
  return {
    bucket: { state: s, atMs: now },
    allowed,
    remaining: alg.available(s, p),
    retryAfterMs: allowed ? 0 : Math.max(1, alg.nextPermitMs(s, p)),
    fullInMs: alg.idleMs(s, p),
  };
}
