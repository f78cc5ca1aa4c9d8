/**
 * @module store/bucket-format
 *
 * The binary value `lua/protocol.lua` stores per bucket, decoded (big-endian):
 * format version (byte, 2), algorithm tag (byte), updatedMs (double), then for
 * `cur` and `prev`: updatedMs - startMs, leased, deadlineMs - updatedMs (int32
 * each), then the algorithm's own state (`LeaseAlgorithm.decode`: the token
 * bucket's tokens or GCRA's TAT, a double; a window's start, a double, and its
 * counts, int32 each).
 */
import type { LeaseAlgorithm } from '../algorithms/lease-algorithm.js';
import { tokenBucketStep, type TokenBucketState } from '../algorithms/token-bucket.js';
import type { BucketState } from '../protocol/lease-step.js';

export const FORMAT_VERSION = 2;
/** Bytes before the algorithm's state. */
export const HEADER_BYTES = 34;

/** Decodes a stored value of `alg`; undefined for another version or algorithm. */
export function decodeBucketValue<S>(raw: Buffer, alg: LeaseAlgorithm<unknown, S>): BucketState<S> | undefined {
  if (raw.length < HEADER_BYTES + alg.stateBytes || raw.readUInt8(0) !== FORMAT_VERSION || raw.readUInt8(1) !== alg.stateTag) return undefined;
  const u = raw.readDoubleBE(2);
  const i = (n: number) => raw.readInt32BE(10 + 4 * n);
  return {
    updatedMs: u,
    cur: { startMs: u - i(0), leased: i(1), deadlineMs: u + i(2) },
    prev: { startMs: u - i(3), leased: i(4), deadlineMs: u + i(5) },
    alg: alg.decode(new DataView(raw.buffer, raw.byteOffset, raw.byteLength), HEADER_BYTES, u),
  };
}

/** Decodes a token bucket's stored value; undefined for another version or algorithm. */
export function decodeTokenBucket(raw: Buffer): BucketState<TokenBucketState> | undefined {
  return decodeBucketValue(raw, tokenBucketStep as LeaseAlgorithm<unknown, TokenBucketState>);
}
