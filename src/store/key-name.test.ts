import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bucketKeyName, createKeyHasher } from './key-name.js';
import type { Policy } from '../core/types.js';

const policy: Policy = { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 };

// Every node of a fleet, old and new versions alike, must name a client's bucket the same
// way: a rolling upgrade that renamed keys would give each client a second, full bucket.
describe('key names', () => {
  it('unkeyed: the first 22 base64url characters of SHA-256, whichever digest API computes it', () => {
    const hash = createKeyHasher();
    expect(hash('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7');
    for (const id of ['', 'k:sk_live_0123456789abcdef', 'ключ-🔑', 'x'.repeat(5000)]) {
      expect(hash(id)).toBe(createHash('sha256').update(id).digest('base64url').slice(0, 22));
    }
  });

  it('keyed: HMAC-SHA-256 with the secret, and another secret names another key', () => {
    const hash = createKeyHasher('a-fleet-secret-0123');
    for (const id of ['abc', 'k:sk_live_0123456789abcdef', 'ключ-🔑']) {
      expect(hash(id)).toBe(createHmac('sha256', 'a-fleet-secret-0123').update(id).digest('base64url').slice(0, 22));
      expect(hash(id)).not.toBe(createKeyHasher('another-secret-0123')(id));
      expect(hash(id)).not.toBe(createKeyHasher()(id));
    }
  });

  it('a bucket name carries the hash, never the client id', () => {
    const name = bucketKeyName('rl:', 'k:sk_live_secret', policy, createKeyHasher());
    expect(name).toBe(`rl:{${createKeyHasher()('k:sk_live_secret')}}:tb:default`);
    expect(name).not.toContain('sk_live_secret');
  });
});
