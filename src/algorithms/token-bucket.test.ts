import { prng } from '../../test/helpers/prng.js';
import { describe, expect, it } from 'vitest';
import { type TokenBucket, takeToken } from './token-bucket.js';

const policy = { capacity: 4, refillPerSec: 2 };

describe('takeToken', () => {
  it('starts full, takes one token per call, then denies with the time to the next token', () => {
    let b: TokenBucket | undefined;
    const allowed: boolean[] = [];
    let last = takeToken(b, policy, 0);
    for (let i = 0; i < 5; i++) {
      last = takeToken(b, policy, 0);
      b = last.bucket;
      allowed.push(last.allowed);
    }
    expect(allowed).toEqual([true, true, true, true, false]);
    expect(last.retryAfterMs).toBe(500);
    expect(last.fullInMs).toBe(2000);
  });

  it('refills with time, capped at capacity', () => {
    const empty = { tokens: 0, updatedMs: 0 };
    expect(takeToken(empty, policy, 499).allowed).toBe(false);
    expect(takeToken(empty, policy, 500).allowed).toBe(true);
    expect(takeToken(empty, policy, 60_000).remaining).toBe(3);
  });

  it.each([1, 2, 3])('never admits more than capacity + refill × T (randomised, seed %i)', (seed) => {
    const random = prng(seed);
    let b: TokenBucket | undefined;
    const admitted: number[] = [];
    let t = 0;
    for (let i = 0; i < 3000; i++) {
      t += random() < 0.1 ? random() * 3000 : random() * 5;
      const r = takeToken(b, policy, t);
      b = r.bucket;
      if (r.allowed) admitted.push(t);
    }
    for (let i = 0; i < admitted.length; i++) {
      for (let j = i; j < Math.min(admitted.length, i + 50); j++) {
        const bound = policy.capacity + (policy.refillPerSec * ((admitted[j] as number) - (admitted[i] as number))) / 1000;
        expect(j - i + 1).toBeLessThanOrEqual(bound + 1e-9);
      }
    }
  });
});
