import { describe, expect, it } from 'vitest';
import type { Decision } from '../core/types.js';
import { KeyState, addWaiter, takeWaiters } from './key-state.js';
import { applyReply, clearSpends, leaseReport, recordSpend } from './lease.js';

const reply = { granted: 4, kept: false, grantedAtMs: 1000, remaining: 36, retryAfterMs: 0, lifeMs: 30_000 };
const policy = { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 } as never;
const waiter = (cost: number) => ({ cost, hold: false, resolve: (_: Decision) => {}, reject: (_: Error) => {} });

describe('lease spends', () => {
  it('records spends per lease: leases with nothing to report share no array that a spend could reach', () => {
    const a = applyReply(undefined, reply, 0, 0, 30_000);
    const b = applyReply(undefined, reply, 0, 0, 30_000);
    if (!a || !b) throw new Error('granted');
    // The third spend of each lease pushes onto the array its second one made.
    for (const [at, n] of [[10, 1], [20, 2], [22, 1]] as const) recordSpend(a, at, n);
    expect(leaseReport(b, 25, true).spends).toEqual([]);
    for (const [at, n] of [[30, 1], [31, 4], [33, 2]] as const) recordSpend(b, at, n);
    expect(leaseReport(a, 25, true).spends).toEqual([[15, 1], [5, 2], [3, 1]]);
    expect(leaseReport(b, 40, true).spends).toEqual([[10, 1], [9, 4], [7, 2]]);
    expect(a.spendTimes).not.toBe(b.spendTimes);
    expect(a.spendCounts).not.toBe(b.spendCounts);
  });

  it('dates a lone spend as spendGroups does, rounding its age down', () => {
    const a = applyReply(undefined, reply, 0, 0, 30_000);
    if (!a) throw new Error('granted');
    recordSpend(a, 10.7, 3);
    expect(leaseReport(a, 25.2, true).spends).toEqual([[14, 3]]);
    expect(leaseReport(a, 10.7, true).spends).toEqual([[0, 3]]);
  });

  it('starts afresh after the spends are handed to a report, without touching the report', () => {
    const a = applyReply(undefined, reply, 0, 0, 30_000);
    if (!a) throw new Error('granted');
    recordSpend(a, 10, 1);
    recordSpend(a, 11, 2);
    const report = leaseReport(a, 12, true);
    clearSpends(a);
    expect(leaseReport(a, 12, true).spends).toEqual([]);
    recordSpend(a, 14, 3);
    expect(leaseReport(a, 20, true).spends).toEqual([[6, 3]]);
    recordSpend(a, 15, 1);
    expect(leaseReport(a, 20, true).spends).toEqual([[6, 3], [5, 1]]);
    expect(report.spends).toEqual([[2, 1], [1, 2]]);
  });
});

describe('lease replies', () => {
  it('renews the held lease in place: same id and object, tokens added, spends since the call kept', () => {
    const a = applyReply(undefined, reply, 0, 0, 30_000);
    if (!a) throw new Error('granted');
    a.tokens -= 3;
    recordSpend(a, 5, 3);
    clearSpends(a); // handed to the renewal's report
    recordSpend(a, 8, 1); // spent while the call was out
    a.tokens -= 1;
    const renewed = applyReply(a, { ...reply, kept: true, granted: 6, grantedAtMs: 1010 }, 7, 1, 30_000);
    expect(renewed).toBe(a);
    expect(a).toMatchObject({ grantedAtMs: 1010, registered: 7, tokens: 6, expiresAt: 7 + 30_000 - 1 });
    expect(leaseReport(a, 9, true).spends).toEqual([[1, 1]]);
  });

  it('makes a new lease for a grant that is not a renewal, and drops one left with nothing registered', () => {
    const a = applyReply(undefined, reply, 0, 0, 30_000);
    if (!a) throw new Error('granted');
    const b = applyReply(a, reply, 5, 0, 30_000);
    expect(b).not.toBe(a);
    expect(b?.id).not.toBe(a.id);
    expect(applyReply(a, { ...reply, kept: true, granted: 0 }, 5, 0, 30_000)).toBeUndefined();
  });
});

describe('key waiters', () => {
  it('keeps each key its own waiters, in arrival order, and empties them all at once', () => {
    const k1 = new KeyState('k:a', policy);
    const k2 = new KeyState('k:b', policy);
    const [w1, w2, w3] = [waiter(1), waiter(2), waiter(3)];
    addWaiter(k1, w1);
    addWaiter(k1, w2);
    addWaiter(k2, w3);
    expect(k1.waiters).toEqual([w1, w2]);
    expect(k2.waiters).toEqual([w3]);
    expect(takeWaiters(k1)).toEqual([w1, w2]);
    expect(k1.waiters).toHaveLength(0);
    expect(k2.waiters).toEqual([w3]);
    addWaiter(k1, w3);
    expect(k1.waiters).toEqual([w3]);
    expect(new KeyState('k:c', policy).waiters).toHaveLength(0);
  });
});
