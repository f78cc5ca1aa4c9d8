/**
 * @module store/key-name
 *
 * Client identifiers (API keys) are secrets: they never appear raw in Redis key
 * names or logs. A key name is the prefix plus 128 bits of a hash of the id,
 * inside a hash tag, so its length is fixed whatever the client sends and every
 * key of one client lands in one Redis Cluster slot.
 *
 * The hash is an HMAC-SHA-256 keyed with `KEY_HASH_SECRET`, the same on every
 * node of a fleet: someone who can list Redis keys (a replica, a backup, a
 * MONITOR) cannot confirm guessed low-entropy API keys offline without the
 * secret. With no secret configured (a quick start), it is a plain SHA-256 and
 * start-up warns once. Changing the secret renames every key: each client's
 * buckets start full once, and the old names expire on their own (PX).
 */
import { createHash, createHmac } from 'node:crypto';

/** Maps a client id to its 22-character base64url name (128 bits). Safe to log. */
export type KeyHasher = (clientId: string) => string;

/** A keyed hasher when `secret` is set, else unkeyed SHA-256. */
export function createKeyHasher(secret?: string): KeyHasher {
  if (secret) return (clientId) => createHmac('sha256', secret).update(clientId).digest('base64url').slice(0, 22);
  return (clientId) => createHash('sha256').update(clientId).digest('base64url').slice(0, 22);
}

/** `rl:{<hash>}`: the Redis key of one client's global bucket. */
export function bucketKeyName(prefix: string, clientId: string, hash: KeyHasher): string {
  return `${prefix}{${hash(clientId)}}`;
}
