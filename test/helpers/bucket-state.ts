/** Reads a bucket's stored state straight from Redis, decoded as lua/protocol.lua writes it. */
import type { Redis } from 'ioredis';
import type { TokenBucketState } from '../../src/algorithms/token-bucket.js';
import type { Policy } from '../../src/core/types.js';
import type { BucketState } from '../../src/protocol/lease-step.js';
import { bucketKeyName, createKeyHasher } from '../../src/store/key-name.js';

/** The policy `startNode` runs by default. */
export const DEFAULT_POLICY: Policy = { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 };

/** Decodes a stored value: version, algorithm tag, updatedMs, two generations, then the tokens. */
export function decodeBucket(raw: Buffer): BucketState<TokenBucketState> {
  if (raw.readUInt8(0) !== 2 || raw.readUInt8(1) !== 't'.charCodeAt(0)) throw new Error('not a version-2 token bucket');
  const u = raw.readDoubleBE(2);
  const i = (n: number) => raw.readInt32BE(10 + 4 * n);
  return {
    updatedMs: u,
    cur: { startMs: u - i(0), leased: i(1), deadlineMs: u + i(2) },
    prev: { startMs: u - i(3), leased: i(4), deadlineMs: u + i(5) },
    alg: { tokens: raw.readDoubleBE(34) },
  };
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
