/**
 * @module bucket/token-bucket
 *
 * A plain in-memory token bucket, as pure math: what a node enforces on its own
 * in degraded `local` mode, when Redis cannot be asked. The clock is a parameter.
 */
import type { BucketPolicy } from './global-bucket.js';

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
export function takeToken(prev: TokenBucket | undefined, policy: BucketPolicy, nowMs: number): Take {
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
