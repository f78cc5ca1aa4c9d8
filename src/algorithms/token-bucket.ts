/**
 * @module algorithms/token-bucket
 *
 * The token bucket as pure math: its part of a lease step (refill, take, give
 * back, time to the next token), which the lease protocol
 * (`protocol/lease-step.ts`) drives and `lua/algorithms/token_bucket.lua`
 * mirrors line for line. The clock is always a parameter.
 */
import type { TokenBucketParams } from '../core/types.js';
import type { LeaseAlgorithm } from './lease-algorithm.js';

/** Tokens are floats floored to 1e-6 on every step (never rounded up). */
export const floor6 = (x: number): number => Math.floor(x * 1e6) / 1e6;

/** The algorithm's own state inside a global bucket: the tokens in it (not counting leased ones). */
export type TokenBucketState = { tokens: number };

export const tokenBucketStep: LeaseAlgorithm<TokenBucketParams, TokenBucketState> = {
  tag: 'tb',
  stateTag: 't'.charCodeAt(0),
  stateBytes: 8,
  luaArgs: (p) => [p.capacity, p.refillPerSec],
  fresh: (p) => ({ tokens: p.capacity }),
  capacity: (p) => p.capacity,
  advance(s, p, fromMs, toMs, cap) {
    s.tokens = Math.min(cap, s.tokens + (Math.max(0, toMs - fromMs) * p.refillPerSec) / 1000);
  },
  settle(s) {
    s.tokens = floor6(s.tokens);
  },
  available: (s) => Math.max(0, Math.floor(s.tokens)),
  take(s, _p, n) {
    s.tokens = floor6(s.tokens - n);
  },
  giveBack(s, _p, n, cap) {
    s.tokens = Math.min(cap, s.tokens + n);
  },
  nextPermitMs(s, p) {
    return tokenBucketStep.permitsMs(s, p, 1);
  },
  permitsMs(s, p, n) {
    if (s.tokens >= n) return 0;
    const perMs = p.refillPerSec / 1000;
    return perMs > 0 ? Math.ceil((n - s.tokens) / perMs) : Number.MAX_SAFE_INTEGER;
  },
  idleMs(s, p) {
    const perMs = p.refillPerSec / 1000;
    return perMs > 0 ? Math.ceil((p.capacity - s.tokens) / perMs) : 0;
  },
  lifeMs: (_s, _p, _now, ttlMs) => ttlMs,
  decode: (view, offset) => ({ tokens: view.getFloat64(offset) }),
};
