/**
 * @module lease/lease
 *
 * A lease this node holds on one client's global bucket, as a plain record, and
 * the functions that record its spends, report on it and apply the store's reply
 * to it (updating it in place: see `Lease`).
 */
import type { LeaseReply, LeaseReport } from '../core/types.js';
import { spendGroups } from '../protocol/lease-step.js';

let nextLeaseId = 1;

/**
 * No second spend since the last report: one shared, frozen array (a lease allocates its own
 * on its second spend, `recordSpend`), so a held lease keeps no arrays until then. Frozen: a
 * push onto it would throw rather than record a spend on every lease.
 */
const NO_SPENDS = Object.freeze([]) as unknown as number[];

/** Hands the spends over to a report: the lease starts recording afresh. */
export function clearSpends(lease: Lease): void {
  lease.spends = 0;
  lease.spendTimes = NO_SPENDS;
  lease.spendCounts = NO_SPENDS;
}

/**
 * A lease this node holds. Mutable in place (a renewal, `applyReply`, keeps the object): a
 * lease outlives many requests, and an object or array made per request and kept in it is
 * what the young-generation collector copies and promotes.
 */
export type Lease = {
  /** Stays the same across renewals, changes whenever the lease is replaced: reservations name it. */
  readonly id: number;
  /** The store's time for the grant (or last renewal): names the lease in reports. */
  grantedAtMs: number;
  /** Tokens registered to it in the store (granted plus kept). */
  registered: number;
  /** Tokens of it this node has not spent yet. */
  tokens: number;
  /** Local (monotonic) time after which it may not be spent: one TTL (or what is left of its window) after its request was sent. */
  expiresAt: number;
  /** It ends with the window its permits were counted in, before its TTL. */
  windowLimited: boolean;
  /** Tokens taken for requests that have not committed yet (a request checked against several limits). */
  reserved: number;
  /**
   * Spends since the last report: how many, the first one in the two fields after it (a
   * double field is updated in place, where a one-slot array per spend was made and kept),
   * the later ones in the arrays.
   */
  spends: number;
  firstSpendAt: number;
  firstSpendCount: number;
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
    spends: reportedSpends(lease, nowMs),
    keep: keep && nowMs < lease.expiresAt,
  };
}

/** The spends since the last report as dated groups (`spendGroups`). */
function reportedSpends(lease: Lease, nowMs: number): [number, number][] {
  if (lease.spends === 0) return [];
  // One spend, one group: what spendGroups makes of it, without its arrays.
  if (lease.spends === 1) return [[Math.max(0, Math.floor(nowMs - lease.firstSpendAt)), lease.firstSpendCount]];
  return spendGroups([lease.firstSpendAt, ...lease.spendTimes], nowMs, [lease.firstSpendCount, ...lease.spendCounts]);
}

/**
 * Records `cost` tokens spent at `nowMs` (already taken from `tokens` or `reserved`). The
 * first spend since the last report goes in the lease's own fields; the second makes arrays
 * of exactly one slot (`push` onto an empty array reserves 17, V8's growth, which a lease
 * would keep until its next report). A returning key, which spends once between reports,
 * so leaves nothing per request for the collector to copy.
 */
export function recordSpend(lease: Lease, nowMs: number, cost: number): void {
  if (lease.spends === 0) {
    lease.firstSpendAt = nowMs;
    lease.firstSpendCount = cost;
  } else if (lease.spendTimes === NO_SPENDS) {
    lease.spendTimes = [nowMs];
    lease.spendCounts = [cost];
  } else {
    lease.spendTimes.push(nowMs);
    lease.spendCounts.push(cost);
  }
  lease.spends++;
}

/**
 * The lease after the store's reply to a call sent at `sentAtMs`. `held` is the
 * lease as it is now (tokens may have been spent while the call was out);
 * `unusedAtSend` is what the call reported unused and asked to keep. A renewal
 * (`reply.kept`) updates `held` in place and returns it; a new grant is a new lease.
 *
 * @example
 * applyReply(undefined, { granted: 5, kept: false, grantedAtMs: 1000, remaining: 35, retryAfterMs: 0, lifeMs: 30_000 }, 0, 0, 30_000)
 * // { id: 1, grantedAtMs: 1000, registered: 5, tokens: 5, expiresAt: 29_999, windowLimited: false, reserved: 0, spends: 0, ... }
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
    held.grantedAtMs = reply.grantedAtMs;
    held.registered = registered;
    held.tokens += reply.granted;
    held.expiresAt = expiresAt;
    held.windowLimited = windowLimited;
    return held;
  }
  // The old lease is dead in the store: what was spent from it in flight is not ours to report.
  if (reply.granted <= 0) return undefined;
  return {
    id: nextLeaseId++,
    grantedAtMs: reply.grantedAtMs,
    registered: reply.granted,
    tokens: reply.granted,
    expiresAt,
    windowLimited,
    reserved: 0,
    spends: 0,
    // NaN, not 0: the field holds a double from the start, so the first spend's time is
    // written in place rather than changing the field's representation on every new lease.
    firstSpendAt: Number.NaN,
    firstSpendCount: 0,
    spendTimes: NO_SPENDS,
    spendCounts: NO_SPENDS,
  };
}

/** Ends the lease here at `nowMs` (if not sooner): not spent again; its unused tokens go back with the next call or return. */
export function expireNow(lease: Lease, nowMs: number): void {
  lease.expiresAt = Math.min(lease.expiresAt, nowMs);
}
