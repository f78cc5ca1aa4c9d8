/**
 * Client populations: 12,000 API keys (seed 000), picked uniformly or with a
 * Zipf-skewed popularity, from a seeded PRNG so runs are comparable.
 */
import { randomBytes } from 'node:crypto';
import { prng } from '../../test/helpers/prng.js';

export { prng };

export function makeApiKeys(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `ak_${i.toString(36)}_${randomBytes(8).toString('hex')}`);
}

export type KeyPicker = () => string;

export function uniform(keys: string[], seed = 1): KeyPicker {
  const rnd = prng(seed);
  return () => keys[Math.floor(rnd() * keys.length)] as string;
}

/** Zipf(s) over the keys: the k-th key is picked with probability ∝ 1 / k^s. */
export function zipf(keys: string[], s = 1, seed = 1): KeyPicker {
  const rnd = prng(seed);
  const cdf = new Float64Array(keys.length);
  let sum = 0;
  for (let k = 0; k < keys.length; k++) {
    sum += 1 / (k + 1) ** s;
    cdf[k] = sum;
  }
  return () => {
    const x = rnd() * sum;
    let lo = 0;
    let hi = keys.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return keys[lo] as string;
  };
}
