/**
 * @module lease/degraded
 *
 * Decisions without the store, for requests that need it while it cannot
 * answer (a call failed, or the circuit breaker is open), by `DegradedMode`:
 * - `local`: a per-node bucket holding this node's share of the policy
 *   (capacity and refill divided by the live node count, at least one token),
 *   so N nodes behind a balancer admit about one limit;
 * - `open`: allow (the caller counts it);
 * - `closed`: refuse with `StoreUnavailableError` (503).
 * Tokens already leased stay usable until their lease expires, in every mode;
 * that is the lease manager's business, not this module's.
 */
import { takeToken } from '../algorithms/token-bucket.js';
import { type Decision, type DegradedMode, StoreUnavailableError } from '../core/types.js';
import type { KeyState } from './key-state.js';

/** Decides one request of `k` without the store. Throws `StoreUnavailableError` in `closed` mode. */
export function degradedDecision(mode: DegradedMode, k: KeyState, liveNodes: number, nowMs: number): Decision {
  const p = k.policy;
  if (mode === 'closed') throw new StoreUnavailableError('global store unavailable (degraded mode closed)');
  if (mode === 'open') return { allowed: true, limit: p.capacity, remaining: p.capacity, resetMs: 0, retryAfterMs: 0, policy: p, source: 'fail_open' };
  const n = Math.max(1, liveNodes);
  const share = { capacity: Math.max(1, p.capacity / n), refillPerSec: p.refillPerSec / n };
  const t = takeToken(k.fallback, share, nowMs);
  k.fallback = t.bucket;
  return { allowed: t.allowed, limit: p.capacity, remaining: t.remaining, resetMs: t.fullInMs, retryAfterMs: t.retryAfterMs, policy: p, source: 'degraded' };
}
