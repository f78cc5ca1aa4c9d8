import { describe, expect, it } from 'vitest';
import { prng } from '../../test/helpers/prng.js';
import { reference } from '../../test/helpers/reference.js';
import type { Policy } from '../core/types.js';
import { leaseStep } from '../protocol/lease-step.js';
import { takeLocal, type LocalBucket } from './local-bucket.js';
import { algorithmOf } from './registry.js';

const T0 = 1_700_000_000_000; // a multiple of 1000 ms: windows of 1 s start here
const gcra: Policy = { name: 'g', algorithm: 'gcra', capacity: 4, refillPerSec: 2 };
const fixed: Policy = { name: 'f', algorithm: 'fixed_window', capacity: 10, refillPerSec: 10, windowMs: 1000 };
const sliding: Policy = { name: 's', algorithm: 'sliding_window', capacity: 10, refillPerSec: 10, windowMs: 1000 };

/**
 * Takes `n` permits one by one at `t` through the lease step (need 1, nothing ahead), each
 * call reporting the previous lease spent at once, as a node spending its permits would.
 */
function takes(p: Policy, n: number, t: number, state?: ReturnType<typeof leaseStep>['state']) {
  let s = state;
  let granted = 0;
  let last: ReturnType<typeof leaseStep> | undefined;
  for (let i = 0; i < n; i++) {
    const held = last?.reply;
    const report = held && held.granted > 0 ? { grantedAtMs: held.grantedAtMs, registered: held.granted, unused: 0, spends: [[0, held.granted]] as [number, number][], keep: false } : undefined;
    last = leaseStep(algorithmOf(p), s, p, { need: 1, extra: 0, leaseTtlMs: 60_000, report }, t);
    s = last.state;
    granted += last.reply.granted;
  }
  return { granted, state: s, last: last as ReturnType<typeof leaseStep> };
}

describe('gcra', () => {
  it('admits a burst of limit, then one per emission interval, and says when the next conforms', () => {
    const a = takes(gcra, 6, T0);
    expect(a.granted).toBe(4);
    expect(a.last.reply.retryAfterMs).toBe(500); // T = 500 ms
    expect(takes(gcra, 1, T0 + 499, a.state).granted).toBe(0);
    const b = takes(gcra, 2, T0 + 500, a.state);
    expect(b.granted).toBe(1);
    // Its state is one theoretical arrival time: the fifth permit, taken at T0 + 500, moved it to T0 + 2500.
    expect((b.state?.alg as { tat: number }).tat).toBe((T0 + 2500) * 1000);
  });

  it('keeps TAT ahead by the permits leased out, so holder and meter never exceed the burst', () => {
    const leased = leaseStep(algorithmOf(gcra), undefined, gcra, { need: 4, extra: 0, leaseTtlMs: 60_000 }, T0);
    expect(leased.reply.granted).toBe(4);
    // 10 s later nothing came back: the 4 still count as leased, so nothing more is available.
    const later = leaseStep(algorithmOf(gcra), leased.state, gcra, { need: 1, extra: 0, leaseTtlMs: 60_000 }, T0 + 10_000);
    expect(later.reply.granted).toBe(0);
  });
});

describe('fixed_window', () => {
  it('admits limit per aligned window and starts over at the boundary', () => {
    const a = takes(fixed, 12, T0 + 400);
    expect(a.granted).toBe(10);
    expect(a.last.reply.retryAfterMs).toBe(600);
    expect(takes(fixed, 1, T0 + 999, a.state).granted).toBe(0);
    expect(takes(fixed, 12, T0 + 1000, a.state).granted).toBe(10);
  });

  it('ends a lease at its window end, and gives back only within the window', () => {
    const p = algorithmOf(fixed);
    const a = leaseStep(p, undefined, fixed, { need: 1, extra: 8, leaseTtlMs: 2000 }, T0 + 700);
    expect(a.reply.lifeMs).toBe(300);
    expect(a.state.cur.deadlineMs).toBe(T0 + 1000);
    // A return in the same window uncounts what was not used.
    const back = leaseStep(p, a.state, fixed, { need: 0, extra: 0, leaseTtlMs: 2000, report: { grantedAtMs: a.reply.grantedAtMs, registered: a.reply.granted, unused: 3, spends: [], keep: false } }, T0 + 800);
    expect((back.state.alg as { count: number }).count).toBe(a.reply.granted - 3);
    // A report arriving in the next window is about a dead lease: it changes nothing there.
    const next = leaseStep(p, a.state, fixed, { need: 0, extra: 0, leaseTtlMs: 2000, report: { grantedAtMs: a.reply.grantedAtMs, registered: a.reply.granted, unused: 3, spends: [], keep: false } }, T0 + 1001);
    expect((next.state.alg as { count: number }).count).toBe(0);
    expect(next.state.cur.leased + next.state.prev.leased).toBe(0);
  });

  it('grants nothing in the last fraction of a ms of a window', () => {
    const a = leaseStep(algorithmOf(fixed), undefined, fixed, { need: 1, extra: 0, leaseTtlMs: 2000 }, T0 + 999.5);
    expect(a.reply.granted).toBe(0);
    expect(a.reply.lifeMs).toBeLessThan(1);
  });
});

describe('sliding_window', () => {
  it('weighs the previous window by its overlap', () => {
    const full = takes(sliding, 10, T0 + 900);
    expect(full.granted).toBe(10);
    // 250 ms into the next window the previous one still weighs 0.75: 10 - 7.5 = 2.5 → 2 whole permits.
    expect(takes(sliding, 5, T0 + 1250, full.state).granted).toBe(2);
    // Two windows later nothing of it weighs.
    expect(takes(sliding, 12, T0 + 3000, full.state).granted).toBe(10);
  });

  it('says when the next permit fits as the previous window fades', () => {
    const full = takes(sliding, 10, T0 + 900);
    const denied = takes(sliding, 1, T0 + 1000, full.state).last;
    expect(denied.reply.granted).toBe(0);
    // 10 × (1 - x) + 0 + 1 ≤ 10 from x = 0.1: 100 ms into the window.
    expect(denied.reply.retryAfterMs).toBe(100);
    expect(takes(sliding, 1, T0 + 1099, full.state).granted).toBe(0);
    expect(takes(sliding, 1, T0 + 1100, full.state).granted).toBe(1);
  });
});

describe.each([
  ['token_bucket', { name: 't', algorithm: 'token_bucket', capacity: 4, refillPerSec: 2 }],
  ['gcra', gcra],
  ['fixed_window', fixed],
  ['sliding_window', sliding],
] as [string, Policy][])('takeLocal (degraded local mode) with %s', (_name, p) => {
  it('starts with the whole limit, then denies with a retry time', () => {
    let b: LocalBucket | undefined;
    const allowed: boolean[] = [];
    let last = takeLocal(algorithmOf(p), b, p, T0);
    for (let i = 0; i <= p.capacity; i++) {
      last = takeLocal(algorithmOf(p), b, p, T0);
      b = last.bucket;
      allowed.push(last.allowed);
    }
    expect(allowed.filter(Boolean)).toHaveLength(p.capacity);
    expect(allowed.at(-1)).toBe(false);
    expect(last.retryAfterMs).toBeGreaterThanOrEqual(1);
  });

  it.each([1, 2, 3])('obeys the ideal reference (randomised, seed %i)', (seed) => {
    const random = prng(seed);
    let b: LocalBucket | undefined;
    const admitted: number[] = [];
    let t = T0;
    for (let i = 0; i < 3000; i++) {
      t += random() < 0.1 ? random() * 3000 : random() * 5;
      const r = takeLocal(algorithmOf(p), b, p, t);
      b = r.bucket;
      if (r.allowed) admitted.push(t);
    }
    expect(reference[p.algorithm](admitted, p)).toBeUndefined();
    expect(admitted.length).toBeGreaterThan(p.capacity * 10);
  });
});

describe('windows whose length changes under the same policy name (review finding)', () => {
  const report = (r: { grantedAtMs: number; granted: number }) => ({ grantedAtMs: r.grantedAtMs, registered: r.granted, unused: r.granted, spends: [], keep: false });
  it.each([
    ['fixed_window', { name: 'w', algorithm: 'fixed_window', capacity: 10, refillPerSec: 10 / 60, windowMs: 60_000 }],
    ['sliding_window', { name: 'w', algorithm: 'sliding_window', capacity: 10, refillPerSec: 10 / 60, windowMs: 60_000 }],
  ] as [string, Policy][])('%s: a return of a lease counted under the old length frees nothing in the new window', (_n, long) => {
    const short = { ...long, windowMs: 10_000 } as Policy;
    const alg = algorithmOf(long);
    // A leases 10 under the 60 s window at second 25; the window becomes 10 s.
    const a = leaseStep(alg, undefined, long, { need: 10, extra: 0, leaseTtlMs: 60_000 }, T0 + 25_000);
    expect(a.reply.granted).toBe(10);
    // B asks at second 30, under the new length: A's 10 still count.
    const b = leaseStep(alg, a.state, short, { need: 10, extra: 0, leaseTtlMs: 60_000 }, T0 + 30_000);
    expect(b.reply.granted).toBe(0);
    // A gives its 10 back (it learnt of the change), and C asks in the same 10 s window.
    const back = leaseStep(alg, b.state, short, { need: 0, extra: 0, leaseTtlMs: 60_000, report: report(a.reply) }, T0 + 31_000);
    const c = leaseStep(alg, back.state, short, { need: 10, extra: 0, leaseTtlMs: 60_000 }, T0 + 32_000);
    // 10 in the window [30 s, 40 s) at most, counting A's 10 as this window's (once too strict).
    expect(b.reply.granted + c.reply.granted).toBeLessThanOrEqual(10);
    // The next window of the new length starts afresh, and a lease ends at its (aligned) end.
    const d = leaseStep(alg, c.state, short, { need: 10, extra: 0, leaseTtlMs: 60_000 }, T0 + 45_000);
    expect(d.reply.granted).toBeGreaterThanOrEqual(long.algorithm === 'fixed_window' ? 10 : 0);
    expect(d.reply.lifeMs).toBe(5_000);
  });

  it('lengthening a window ends leases at the new aligned end', () => {
    const short: Policy = { name: 'w', algorithm: 'fixed_window', capacity: 10, refillPerSec: 1, windowMs: 10_000 };
    const long = { ...short, windowMs: 60_000 } as Policy;
    const a = leaseStep(algorithmOf(short), undefined, short, { need: 1, extra: 0, leaseTtlMs: 120_000 }, T0 + 25_000);
    const b = leaseStep(algorithmOf(long), a.state, long, { need: 1, extra: 0, leaseTtlMs: 120_000 }, T0 + 26_000);
    // T0 is 20 s into a minute: the aligned 60 s window ends 14 s after T0 + 26 s.
    expect(b.reply.lifeMs).toBe(Math.ceil((T0 + 26_000) / 60_000) * 60_000 - (T0 + 26_000));
    expect(b.reply.lifeMs).toBe(14_000);
  });
});
