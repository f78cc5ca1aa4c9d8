/**
 * @module store/bucket-format
 *
 * The binary value `lua/protocol.lua` stores per bucket, decoded (big-endian):
 * format version (byte, 2), algorithm tag (byte), updatedMs (double), then for
 * `cur` and `prev`: updatedMs - startMs, leased, deadlineMs - updatedMs (int32
 * each), then the algorithm's own state (the token bucket: tokens, a double).
 */
import type { BucketState } from '../protocol/lease-step.js';

export const FORMAT_VERSION = 2;

/** Decodes a token bucket's stored value; undefined for another version or algorithm. */
export function decodeTokenBucket(raw: Buffer): BucketState<{ tokens: number }> | undefined {
  if (raw.length < 42 || raw.readUInt8(0) !== FORMAT_VERSION || raw.readUInt8(1) !== 't'.charCodeAt(0)) return undefined;
  const u = raw.readDoubleBE(2);
  const i = (n: number) => raw.readInt32BE(10 + 4 * n);
  return {
    updatedMs: u,
    cur: { startMs: u - i(0), leased: i(1), deadlineMs: u + i(2) },
    prev: { startMs: u - i(3), leased: i(4), deadlineMs: u + i(5) },
    alg: { tokens: raw.readDoubleBE(34) },
  };
}
