/**
 * @module lease/lease
 *
 * A lease this node holds on one client's global bucket, as a plain value, and
 * the pure functions that report on it and apply the store's reply to it.
 */
import type { LeaseReply, LeaseReport } from '../core/types.js';
import { spendGroups } from '../protocol/lease-step.js';

let nextLeaseId = 1;

/**
 * No spends since the last report: one shared, frozen array (a lease allocates its own on
 * its first spend, `recordSpend`), so a held lease with nothing to report keeps no arrays.
 * Frozen: a push onto it would throw rather than record a spend on every lease.
 */
const NO_SPENDS = Object.freeze([]) as unknown as number[];

/** Hands the spends over to a report: the lease starts recording afresh. */
export function clearSpends(lease: Lease): void {
  lease.spendTimes = NO_SPENDS;
  lease.spendCounts = NO_SPENDS;
}

export type Lease = {
  /** Stays the same across renewals, changes whenever the lease is replaced: reservations name it. */
  readonly id: number;
  /** The store's time for the grant (or last renewal): names the lease in reports. */
  readonly grantedAtMs: number;
  /** Tokens registered to it in the store (granted plus kept). */
  readonly registered: number;
  /** Tokens of it this node has not spent yet. */
  tokens: number;
  /** Local (monotonic) time after which it may not be spent: one TTL (or what is left of its window) after its request was sent. */
  readonly expiresAt: number;
  /** It ends with the window its permits were counted in, before its TTL. */
  readonly windowLimited: boolean;
  /** Tokens taken for requests that have not committed yet (a request checked against several limits). */
  reserved: number;
  /** When tokens were spent since the last report, and how many each time. */
  spendTimes: number[];
  spendCounts: number[];
};

/**
 * What the next call says about `lease`: its spends (dated groups) and whether it
 * keeps the unused tokens. Reserved tokens count as unused when the lease is kept:
 * they are still held.
 * A lease that has expired here cannot be kept: its unused tokens are given back
 * rather than left counted as leased.
 */
export function leaseReport(lease: Lease, nowMs: number, keep: boolean): LeaseReport {
  return {
    grantedAtMs: lease.grantedAtMs,
    registered: lease.registered,
    // Given back, reserved tokens stay counted (their request may still spend them): the
    // store frees them when the lease's generation expires.
    unused: keep ? lease.tokens + lease.reserved : lease.tokens,
    spends: spendGroups(lease.spendTimes, nowMs, lease.spendCounts),
    keep: keep && nowMs < lease.expiresAt,
  };
}

/**
 * Records `cost` tokens spent at `nowMs` (already taken from `tokens` or `reserved`). The
 * first spend since the last report makes arrays of exactly one slot: `push` onto an empty
 * array reserves 17 (V8's growth), and a cold key, which spends once before its lease is
 * reported, would keep both for as long as it is held. With the waiters' array (key-state.ts),
 * a held key went from 1,089 to 666 bytes of heap (`npm run bench:cold-decide`).
 */
export function recordSpend(lease: Lease, nowMs: number, cost: number): void {
  if (lease.spendTimes === NO_SPENDS) {
    lease.spendTimes = [nowMs];
    lease.spendCounts = [cost];
    return;
  }
  lease.spendTimes.push(nowMs);
  lease.spendCounts.push(cost);
}

/**
 * The lease after the store's reply to a call sent at `sentAtMs`. `held` is the
 * lease as it is now (tokens may have been spent while the call was out);
 * `unusedAtSend` is what the call reported unused and asked to keep.
 *
 * @example
 * applyReply(undefined, { granted: 5, kept: false, grantedAtMs: 1000, remaining: 35, retryAfterMs: 0, lifeMs: 30_000 }, 0, 0, 30_000)
 * // { id: 1, grantedAtMs: 1000, registered: 5, tokens: 5, reserved: 0, expiresAt: 29_999, windowLimited: false, spendTimes: [], spendCounts: [] }
 */
export function applyReply(held: Lease | undefined, reply: LeaseReply, sentAtMs: number, unusedAtSend: number, ttlMs: number): Lease | undefined {
  // One ms short of the store's deadline: Redis TIME is whole ms, performance.now() is not.
  // Counted from sending, so the node stops before the store's deadline, which a window's
  // end can bring closer than the TTL.
  const expiresAt = sentAtMs + Math.min(ttlMs, reply.lifeMs) - 1;
  const windowLimited = reply.lifeMs < ttlMs;
  if (reply.kept && held) {
    // Renewed: the kept tokens and the new ones form one lease; spends made while the call
    // was out belong to it and go in the next report.
    const registered = unusedAtSend + reply.granted;
    if (registered <= 0) return undefined;
    return {
      id: held.id,
      grantedAtMs: reply.grantedAtMs,
      registered,
      tokens: held.tokens + reply.granted,
      reserved: held.reserved,
      expiresAt,
      windowLimited,
      spendTimes: held.spendTimes,
      spendCounts: held.spendCounts,
    };
  }
  // The old lease is dead in the store: what was spent from it in flight is not ours to report.
  if (reply.granted <= 0) return undefined;
  return { id: nextLeaseId++, grantedAtMs: reply.grantedAtMs, registered: reply.granted, tokens: reply.granted, reserved: 0, expiresAt, windowLimited, spendTimes: NO_SPENDS, spendCounts: NO_SPENDS };
}
