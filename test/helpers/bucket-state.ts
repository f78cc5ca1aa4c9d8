/** Reads a bucket's stored state straight from Redis, decoded as lua/protocol.lua writes it. */
import type { Redis } from 'ioredis';
import type { TokenBucketState } from '../../src/algorithms/token-bucket.js';
import type { Policy } from '../../src/core/types.js';
import type { BucketState } from '../../src/protocol/lease-step.js';
import { decodeTokenBucket } from '../../src/store/bucket-format.js';
import { bucketKeyName, createKeyHasher } from '../../src/store/key-name.js';

/** The policy `startNode` runs by default. */
export const DEFAULT_POLICY: Policy = { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 };

/** Decodes a stored value (src/store/bucket-format.ts), failing loudly on another format. */
export function decodeBucket(raw: Buffer): BucketState<TokenBucketState> {
  const s = decodeTokenBucket(raw);
  if (!s) throw new Error('not a version-2 token bucket');
  return s;
}

/**
 * The stored bucket of the API key `apiKey` under `policy` (unkeyed hash, as nodes without
 * KEY_HASH_SECRET name it; the policy engine keys API keys as `k:<key>`), or undefined.
 */
export async function readBucket(redis: Redis, apiKey: string, policy: Policy = DEFAULT_POLICY, prefix = 'rl:'): Promise<BucketState<TokenBucketState> | undefined> {
  const raw = await redis.getBuffer(bucketKeyName(prefix, `k:${apiKey}`, policy, createKeyHasher()));
  return raw ? decodeBucket(raw) : undefined;
}

export const leasedOf = (s: BucketState<unknown>) => s.cur.leased + s.prev.leased;
