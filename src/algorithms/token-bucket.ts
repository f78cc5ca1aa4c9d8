/**
 * @module algorithms/token-bucket
 *
 * The token bucket as pure math, in two forms:
 * - `tokenBucketStep`: the algorithm's part of a lease step (refill, take, give
 *   back, time to the next token), which the lease protocol
 *   (`protocol/lease-step.ts`) drives and `lua/algorithms/token_bucket.lua`
 *   mirrors line for line;
 * - `takeToken`: a plain bucket a node enforces on its own in degraded `local`
 *   mode, when Redis cannot be asked.
 * The clock is always a parameter.
 */
import type { TokenBucketParams } from '../core/types.js';
import type { LeaseAlgorithm } from './lease-algorithm.js';

/** Tokens are floats floored to 1e-6 on every step (never rounded up). */
export const floor6 = (x: number): number => Math.floor(x * 1e6) / 1e6;

/** The algorithm's own state inside a global bucket: the tokens in it (not counting leased ones). */
export type TokenBucketState = { tokens: number };

export const tokenBucketStep: LeaseAlgorithm<TokenBucketParams, TokenBucketState> = {
  tag: 'tb',
  luaArgs: (p) => [p.capacity, p.refillPerSec],
  fresh: (p) => ({ tokens: p.capacity }),
  capacity: (p) => p.capacity,
  advance(s, p, ms, cap) {
    s.tokens = Math.min(cap, s.tokens + (Math.max(0, ms) * p.refillPerSec) / 1000);
  },
  settle(s) {
    s.tokens = floor6(s.tokens);
  },
  available: (s) => Math.max(0, Math.floor(s.tokens)),
  take(s, n) {
    s.tokens = floor6(s.tokens - n);
  },
  giveBack(s, n, cap) {
    s.tokens = Math.min(cap, s.tokens + n);
  },
  nextPermitMs(s, p) {
    if (s.tokens >= 1) return 0;
    const perMs = p.refillPerSec / 1000;
    return perMs > 0 ? Math.ceil((1 - s.tokens) / perMs) : Number.MAX_SAFE_INTEGER;
  },
  idleMs(s, p) {
    const perMs = p.refillPerSec / 1000;
    return perMs > 0 ? Math.ceil((p.capacity - s.tokens) / perMs) : 0;
  },
};

/** A node's own bucket in degraded `local` mode. */
export type TokenBucket = { tokens: number; updatedMs: number };

export type Take = {
  bucket: TokenBucket;
  allowed: boolean;
  /** Whole tokens left after this take. */
  remaining: number;
  /** When denied: ms until a token is back. */
  retryAfterMs: number;
  /** ms until the bucket is full again. */
  fullInMs: number;
};

/** Refills `prev` (a full bucket when undefined) to `nowMs` and takes one token if there is one. */
export function takeToken(prev: TokenBucket | undefined, policy: { capacity: number; refillPerSec: number }, nowMs: number): Take {
  const perMs = policy.refillPerSec / 1000;
  const from = prev ?? { tokens: policy.capacity, updatedMs: nowMs };
  const elapsed = Math.max(0, nowMs - from.updatedMs);
  let tokens = Math.min(policy.capacity, from.tokens + elapsed * perMs);
  const allowed = tokens >= 1;
  if (allowed) tokens -= 1;
  return {
    bucket: { tokens, updatedMs: Math.max(nowMs, from.updatedMs) },
    allowed,
    remaining: Math.floor(tokens),
    retryAfterMs: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / perMs)),
    fullInMs: Math.max(0, Math.ceil((policy.capacity - tokens) / perMs)),
  };
}
