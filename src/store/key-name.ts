/**
 * @module store/key-name
 *
 * Client identifiers (API keys) are secrets: they never appear raw in Redis key
 * names or logs. A key name is the prefix plus 128 bits of SHA-256 of the id,
 * inside a hash tag, so its length is fixed whatever the client sends and every
 * key of one client lands in one Redis Cluster slot.
 */
import { createHash } from 'node:crypto';

/** 22 characters of base64url: 128 bits of SHA-256. Safe to log. */
export function hashClientId(clientId: string): string {
  return createHash('sha256').update(clientId).digest('base64url').slice(0, 22);
}

/** `rl:{<hash>}`: the Redis key of one client's global bucket. */
export function bucketKeyName(prefix: string, clientId: string): string {
  return `${prefix}{${hashClientId(clientId)}}`;
}
