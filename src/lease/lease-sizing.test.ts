import { describe, expect, it } from 'vitest';
import { type SizingOptions, aheadTokens, extraTokens, lowWater, nextInterval } from './lease-sizing.js';

const o: SizingOptions = { maxAhead: 20, coverMs: 24_000, coldTokens: 1, aheadMs: 50, leaseTtlMs: 30_000 };

describe('lease sizing', () => {
  it.each([
    // intervalMs, expected ahead
    [Number.NaN, 1], // cold key: coldTokens
    [10_000, 2], // 0.1 req/s: 24 s of demand
    [2000, 12],
    [100, 20], // capped at maxAhead
    [0, 20], // simultaneous arrivals
  ])('aheadTokens at one request every %s ms: %i', (interval, expected) => {
    expect(aheadTokens(interval, o)).toBe(expected);
  });

  it.each([
    // coldTokens, remaining, need, expected extra
    [4, 40, 1, 3], // the default policy's first request: 4 tokens, 3 of them ahead
    [4, 400, 1, 3], // a deep bucket: still coldTokens
    [4, 20, 1, 1], // a tenth of 20 = 2 tokens, 1 ahead
    [4, 10, 1, 0], // a small bucket (10): 1 token, nothing ahead
    [4, 3, 1, 0], // at least the request itself, never less
    [4, 40, 3, 1], // three requests already wait: topped up to 4
  ])('a cold key with coldTokens %i and %i left, need %i: %i extra', (cold, remaining, need, expected) => {
    expect(extraTokens(Number.NaN, 10, remaining, need, { ...o, coldTokens: cold })).toBe(expected);
  });

  it('a cold key never leases ahead of maxAhead (LEASE_MAX_TOKENS=0: nothing ahead)', () => {
    expect(extraTokens(Number.NaN, 10, 40, 1, { ...o, coldTokens: 4, maxAhead: 0 })).toBe(0);
    expect(extraTokens(Number.NaN, 10, 400, 1, { ...o, coldTokens: 8, maxAhead: 3 })).toBe(2);
  });

  it.each([
    // intervalMs, refillPerSec, remaining, need, expected extra
    [Number.NaN, 10, 40, 1, 0], // first request: coldTokens - need
    [200, 10, 40, 1, 19], // 5 req/s within a 10/s refill: top up to the demand
    [50, 10, 40, 3, 0], // 20 req/s against 10/s: draining, lease exactly what waits
    [50, 10, 40, 0, 20], // refill-ahead with nothing waiting: sized by demand
    [2000, 10, 40, 15, 0], // need already above the demand: nothing extra
    [200, 10_000 / 86_400, 9000, 1, 19], // 5 req/s against a daily 10,000 with 9,000 left: deep, not draining
    [200, 10_000 / 86_400, 70, 1, 0], // the same with 70 left: draining
  ])('extraTokens at %s ms, refill %s/s, %i left, need %i: %i', (interval, refill, remaining, need, expected) => {
    expect(extraTokens(interval, refill, remaining, need, o)).toBe(expected);
  });

  it.each([
    // intervalMs, lastGrant, refillPerSec, remaining, expected low water
    [Number.NaN, 20, 1000, 40, 0], // no rate yet: never refill ahead
    [20_000, 20, 1000, 40, 0], // slower than half a TTL: leases die before use
    [10, 20, 1000, 40, 5], // 50 ms of demand at 100/s, within a 1000/s refill
    [10, 4, 1000, 40, 2], // never more than half the last grant
    [100, 20, 1000, 40, 1],
    [10, 20, 10, 40, 0], // 100/s against a 10/s refill: draining, never ahead (it would strand tokens)
    [10, 20, 10, 5000, 5], // the same rate against a deep bucket: ahead
  ])('lowWater at %s ms with a last grant of %i, a refill of %s/s and %i left: %i', (interval, lastGrant, refill, remaining, expected) => {
    expect(lowWater(interval, lastGrant, refill, remaining, o)).toBe(expected);
  });

  it('averages arrival gaps (EWMA 0.2) and ignores a clock that went back', () => {
    expect(nextInterval(Number.NaN, Number.NaN, 100)).toBeNaN();
    expect(nextInterval(Number.NaN, 100, 300)).toBe(200);
    expect(nextInterval(200, 300, 400)).toBe(180);
    expect(nextInterval(200, 400, 300)).toBe(200);
  });
});
