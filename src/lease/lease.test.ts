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
    recordSpend(a, 10, 1);
    expect(b.spendTimes).toEqual([]);
    recordSpend(a, 20, 2);
    recordSpend(b, 30, 1);
    expect([a.spendTimes, a.spendCounts]).toEqual([[10, 20], [1, 2]]);
    expect([b.spendTimes, b.spendCounts]).toEqual([[30], [1]]);
    expect(leaseReport(a, 25, true).spends).toEqual([[15, 1], [5, 2]]);
  });

  it('starts afresh after the spends are handed to a report, without touching the report', () => {
    const a = applyReply(undefined, reply, 0, 0, 30_000);
    if (!a) throw new Error('granted');
    recordSpend(a, 10, 1);
    const report = leaseReport(a, 12, true);
    clearSpends(a);
    expect(a.spendTimes).toEqual([]);
    recordSpend(a, 14, 3);
    expect([a.spendTimes, a.spendCounts]).toEqual([[14], [3]]);
    expect(report.spends).toEqual([[2, 1]]);
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
