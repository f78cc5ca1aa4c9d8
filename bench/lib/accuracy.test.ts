import { describe, expect, it } from 'vitest';
import type { Policy } from '../../src/core/types.js';
import { prng } from '../../test/helpers/prng.js';
import { reference } from '../../test/helpers/reference.js';
import { accuracy, idealAdmissions, multiAccuracy } from './accuracy.js';

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

describe('multiAccuracy', () => {
  const limits = [
    { name: 'burst', capacity: 3, refillPerSec: 1 },
    { name: 'sustained', capacity: 4, refillPerSec: 0.001 },
  ];
  const at = (times: number[], statuses: number[]) => [{ times, keys: times.map(() => 'a'), statuses }];

  it('counts nothing for a limiter that applies both limits exactly', () => {
    // burst allows 3 at once; one more after a second; sustained stops it at 4.
    const r = multiAccuracy(at([0, 1, 2, 3, 1010, 2020, 3030], [200, 200, 200, 429, 200, 429, 429]), limits);
    expect(r).toMatchObject({ decisions: 7, admitted: 4, under: 0 });
    expect(r.perLimit.map((l) => l.over)).toEqual([0, 0]);
  });

  it('charges over-admission to the limit that was broken only', () => {
    // 4 at once breaks burst (3), not sustained (4); a fifth later breaks sustained only.
    const r = multiAccuracy(at([0, 1, 2, 3, 5000], [200, 200, 200, 200, 200]), limits);
    expect(r.perLimit).toMatchObject([
      { name: 'burst', over: 1 },
      { name: 'sustained', over: 1 },
    ]);
  });

  it('counts a denial as under only when every ideal bucket had a token', () => {
    // The 5th request: burst has refilled, sustained is empty: the ideal pair denies it too.
    const exact = multiAccuracy(at([0, 1, 2, 1010, 5000], [200, 200, 200, 200, 429]), limits);
    expect(exact.under).toBe(0);
    const under = multiAccuracy(at([0, 1], [200, 429]), limits);
    expect(under.under).toBe(1);
  });
});

describe.each([
  { name: 't', algorithm: 'token_bucket', capacity: 10, refillPerSec: 5 },
  { name: 'g', algorithm: 'gcra', capacity: 10, refillPerSec: 5 },
  { name: 'f', algorithm: 'fixed_window', capacity: 10, refillPerSec: 10, windowMs: 1000 },
  { name: 's', algorithm: 'sliding_window', capacity: 10, refillPerSec: 10, windowMs: 1000 },
] as Policy[])('idealAdmissions, $algorithm', (p) => {
  const T0 = 1_700_000_000_000; // a multiple of the window

  it('admits the limit of a burst, then by the algorithm', () => {
    const burst = Array.from({ length: 30 }, (_, i) => T0 + 100 + i);
    expect(idealAdmissions(burst, p)).toHaveLength(10);
    // 2 s later: the refilling ones have 10 again, a fixed window too, a sliding window (previous window 0) too.
    expect(idealAdmissions([...burst, ...burst.map((t) => t + 2000)], p)).toHaveLength(20);
  });

  it('obeys the reference, and admits every request the reference would have allowed', () => {
    const random = prng(7);
    const sent: number[] = [];
    let t = T0;
    for (let i = 0; i < 2000; i++) {
      t += random() < 0.1 ? random() * 2000 : random() * 5;
      sent.push(t);
    }
    const admitted = idealAdmissions(sent, p);
    expect(reference[p.algorithm](admitted, p)).toBeUndefined();
    expect(admitted.length).toBeGreaterThan(p.capacity * 10);
    // Maximal: admitting any denied request as well would break the definition.
    const ok = new Set(admitted);
    const denied = sent.filter((x) => !ok.has(x));
    for (const d of denied.filter((_, i) => i % Math.ceil(denied.length / 25) === 0)) {
      const more = [...admitted, d].sort((a, b) => a - b);
      expect(reference[p.algorithm](more, p), `denied at ${d - T0}`).toBeDefined();
    }
  });
});
