import { describe, expect, it } from 'vitest';
import { accuracy } from './accuracy.js';

const policy = { capacity: 2, refillPerSec: 1 };

describe('accuracy', () => {
  it('counts nothing for a perfect limiter', () => {
    const r = accuracy([{ times: [0, 1, 2, 1010, 1011], keys: ['a', 'a', 'a', 'a', 'a'], statuses: [200, 200, 429, 200, 429] }], policy);
    expect(r).toMatchObject({ decisions: 5, admitted: 3, over: 0, under: 0 });
  });

  it('counts an admission beyond the bucket as over, a denial with a token left as under', () => {
    const over = accuracy([{ times: [0, 1, 2], keys: ['a', 'a', 'a'], statuses: [200, 200, 200] }], policy);
    expect(over.over).toBe(1);
    const under = accuracy([{ times: [0, 1], keys: ['a', 'b'], statuses: [429, 200] }], policy);
    expect(under.under).toBe(1);
    // Admitting the same number a little later costs one under-admission per shift, not one per request.
    const shifted = accuracy(
      [{ times: [0, 1, 1000, 1001, 1002, 1003], keys: Array(6).fill('a'), statuses: [200, 200, 429, 429, 429, 200] }],
      policy,
    );
    expect(shifted).toMatchObject({ over: 0, under: 1 });
  });

  it('catches a steady leak: 11 admitted per second against a refill of 10', () => {
    const times = Array.from({ length: 660 }, (_, i) => (i * 1000) / 11);
    const r = accuracy([{ times, keys: Array(660).fill('a'), statuses: Array(660).fill(200) }], { capacity: 40, refillPerSec: 10 });
    expect(r.over).toBeGreaterThanOrEqual(15);
  });

  it('merges nodes by time and keeps keys apart', () => {
    const r = accuracy(
      [
        { times: [0, 2], keys: ['a', 'b'], statuses: [200, 200] },
        { times: [1, 3], keys: ['a', 'a'], statuses: [200, 200] },
      ],
      policy,
    );
    expect(r.over).toBe(1);
    expect(r.decisions).toBe(4);
  });
});
