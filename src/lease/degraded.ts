/**
 * @module lease/degraded
 *
 * Decisions without the store, for requests that need it while it cannot
 * answer (a call failed, or the circuit breaker is open), by `DegradedMode`:
 * - `local`: the policy's own algorithm run on this node alone, holding this
 *   node's share (capacity and rate divided by the live node count, at least
 *   one permit), so N nodes behind a balancer admit about one limit; windows
 *   are aligned to the node's clock;
 * - `open`: allow (the caller counts it);
 * - `closed`: refuse with `StoreUnavailableError` (503).
 * Tokens already leased stay usable until their lease expires, in every mode;
 * that is the lease manager's business, not this module's.
 */
import { takeLocal } from '../algorithms/local-bucket.js';
import { algorithmOf } from '../algorithms/registry.js';
import { type Decision, type DegradedMode, type Policy, StoreUnavailableError } from '../core/types.js';
import type { KeyState } from './key-state.js';

/** A node's share of `p` when `n` nodes split it. */
export function shareOf(p: Policy, n: number): Policy {
  return n <= 1 ? p : { ...p, capacity: Math.max(1, p.capacity / n), refillPerSec: p.refillPerSec / n };
}

/** Decides one request of `k` without the store. Throws `StoreUnavailableError` in `closed` mode. */
export function degradedDecision(mode: DegradedMode, k: KeyState, liveNodes: number, nowMs: number): Decision {
  const p = k.policy;
  if (mode === 'closed') throw new StoreUnavailableError('global store unavailable (degraded mode closed)');
  if (mode === 'open') return { allowed: true, limit: p.capacity, remaining: p.capacity, resetMs: 0, retryAfterMs: 0, policy: p, source: 'fail_open' };
  const t = takeLocal(algorithmOf(p), k.fallback, shareOf(p, Math.max(1, liveNodes)), nowMs);
  k.fallback = t.bucket;
  return { allowed: t.allowed, limit: p.capacity, remaining: t.remaining, resetMs: t.fullInMs, retryAfterMs: t.retryAfterMs, policy: p, source: 'degraded' };
}
