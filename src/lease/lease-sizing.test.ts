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
    // intervalMs, refillPerSec, need, expected extra
    [Number.NaN, 10, 1, 0], // first request: coldTokens - need
    [200, 10, 1, 19], // 5 req/s within a 10/s refill: top up to the demand
    [50, 10, 3, 0], // 20 req/s against 10/s: draining, lease exactly what waits
    [50, 10, 0, 20], // refill-ahead with nothing waiting: sized by demand
    [2000, 10, 15, 0], // need already above the demand: nothing extra
  ])('extraTokens at %s ms, refill %s/s, need %i: %i', (interval, refill, need, expected) => {
    expect(extraTokens(interval, refill, need, o)).toBe(expected);
  });

  it.each([
    // intervalMs, lastGrant, refillPerSec, expected low water
    [Number.NaN, 20, 1000, 0], // no rate yet: never refill ahead
    [20_000, 20, 1000, 0], // slower than half a TTL: leases die before use
    [10, 20, 1000, 5], // 50 ms of demand at 100/s, within a 1000/s refill
    [10, 4, 1000, 2], // never more than half the last grant
    [100, 20, 1000, 1],
    [10, 20, 10, 0], // 100/s against a 10/s refill: draining, never ahead (it would strand tokens)
  ])('lowWater at %s ms with a last grant of %i and a refill of %i/s: %i', (interval, lastGrant, refill, expected) => {
    expect(lowWater(interval, lastGrant, refill, o)).toBe(expected);
  });

  it('averages arrival gaps (EWMA 0.2) and ignores a clock that went back', () => {
    expect(nextInterval(Number.NaN, Number.NaN, 100)).toBeNaN();
    expect(nextInterval(Number.NaN, 100, 300)).toBe(200);
    expect(nextInterval(200, 300, 400)).toBe(180);
    expect(nextInterval(200, 400, 300)).toBe(200);
  });
});
