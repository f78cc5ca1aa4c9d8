/**
 * @module bucket/global-bucket
 *
 * The global token bucket with leases, as pure math. `lua/lease.lua` runs the
 * same steps inside Redis and `store/memory-store.ts` runs this function; the
 * integration tests check that both give identical answers.
 *
 * Design notes
 * ------------
 * A node takes tokens out of the global bucket in batches ("leases") and spends
 * them locally. Taking tokens before spending them is not enough to rule out
 * over-admission: while a node holds unspent tokens, the global bucket could
 * refill to full, and then holder + bucket together exceed the capacity. So the
 * bucket also records `leased`, the tokens handed out and not yet reported back,
 * and refills only up to `capacity - leased`. With W = bucket tokens + unspent
 * leased tokens, W never exceeds the capacity, grows at most at the refill rate,
 * and drops by exactly one per admitted request; hence admitted requests in any
 * interval T are at most capacity + refill * T, across any number of nodes.
 *
 * Counting spent-but-unreported tokens as leased would hold back refill, so a
 * node reports when it spent them: up to 16 groups of (age, count), oldest
 * first, each group dated by its latest spend. Refill is computed piecewise:
 * capped by `leased` up to a group's time, by `leased` minus that group after
 * it. Dating a group by its latest spend can only hold refill back a little
 * longer than needed, never release it early. A node's own clock never decides
 * anything: it sends ages (durations), and the bucket's clock is the store's
 * (Redis `TIME`).
 *
 * Leases expire: a node stops spending a lease `leaseTtlMs` after it *sent* the
 * request, which is no later than `grant time + leaseTtlMs` on the store's clock.
 * The bucket keeps `leaseDeadlineMs`, the latest deadline of the outstanding
 * leases; once it passes, every lease is dead and `leased` drops to zero.
 * (Known limitation: renewals by busy nodes keep moving that deadline, so the
 * unreturned tokens of a node that crashed stay counted until the key is quiet
 * for a TTL; two generations of leases rolling over every TTL would bound it.)
 * `epochMs` marks that moment, or the bucket's creation, so a report about a
 * lease granted before it is recognised as stale and ignored rather than
 * subtracted from someone else's lease.
 *
 * Tokens are floats floored to 1e-6 on every step (never rounded up).
 */

/** A token-bucket policy: `capacity` tokens, refilled at `refillPerSec`. */
export type BucketPolicy = {
  readonly capacity: number;
  readonly refillPerSec: number;
};

/** Stored state of one client's global bucket. */
export type GlobalBucketState = {
  /** Tokens in the bucket (not counting leased ones); may be negative after a capacity cut. */
  tokens: number;
  /** Store time (ms) the state was computed for. */
  updatedMs: number;
  /** Tokens leased out and not yet reported spent or returned. */
  leased: number;
  /** Store time after which every outstanding lease has expired. */
  leaseDeadlineMs: number;
  /** Store time the bucket was created or `leased` last reset by deadline; older leases are stale. */
  epochMs: number;
};

/** What a node says about the lease it holds when it asks again or gives back. */
export type LeaseReport = {
  /** `grantedAtMs` from the reply that granted the lease. */
  grantedAtMs: number;
  /** Tokens registered to this lease (granted plus kept). */
  registered: number;
  /** Tokens of it not spent yet. */
  unused: number;
  /**
   * The spends since the last report, oldest first, as [ms between the group's
   * latest spend and sending the report, tokens spent in the group].
   */
  spends: ReadonlyArray<readonly [number, number]>;
  /** true: the node keeps its unused tokens (renewal); false: it gives them back. */
  keep: boolean;
};

export type LeaseRequest = {
  /** Tokens wanted now for requests that are waiting; granted in full if available. */
  need: number;
  /** Tokens wanted ahead of demand; granted at most half of what is left after `need`. */
  extra: number;
  leaseTtlMs: number;
  report?: LeaseReport | undefined;
};

export type LeaseReply = {
  granted: number;
  /** Whether the reported lease's unused tokens stay registered (renewal accepted). */
  kept: boolean;
  /** Store time of this step; identifies the lease in later reports. */
  grantedAtMs: number;
  /** Whole tokens left in the global bucket after the grant. */
  remaining: number;
  /** When less than one whole token is left after the grant: ms until one is back; else 0. */
  retryAfterMs: number;
};

export type LeaseStep = {
  state: GlobalBucketState;
  reply: LeaseReply;
  /** How long the stored state must live; afterwards it equals a fresh bucket. */
  ttlMs: number;
};

const floor6 = (x: number): number => Math.floor(x * 1e6) / 1e6;

/** Most spend groups a report carries (the Lua script reads no more). */
export const MAX_SPEND_GROUPS = 16;

/**
 * Groups spend times (ascending) into at most MAX_SPEND_GROUPS runs of about
 * equal size, each dated by its latest spend, as [age at `nowMs`, count] pairs.
 */
export function spendGroups(times: readonly number[], nowMs: number): [number, number][] {
  const n = times.length;
  if (n === 0) return [];
  const groups = Math.min(MAX_SPEND_GROUPS, n);
  const out: [number, number][] = [];
  let start = 0;
  for (let g = 1; g <= groups; g++) {
    const end = Math.floor((g * n) / groups);
    // Ages round down: a spend is dated no earlier than it happened (up to the store clock's
    // whole-ms truncation, worth refill × 1 ms, a hundredth of a token at 10/s).
    if (end > start) out.push([Math.max(0, Math.floor(nowMs - (times[end - 1] as number))), end - start]);
    start = end;
  }
  return out;
}

/**
 * A bucket nobody has touched (or whose key expired): full, nothing leased. Its
 * epoch is now, so reports about leases granted by an earlier incarnation of
 * the bucket are stale rather than subtracted from new leases.
 */
export function freshBucket(policy: BucketPolicy, nowMs: number): GlobalBucketState {
  return { tokens: policy.capacity, updatedMs: nowMs, leased: 0, leaseDeadlineMs: 0, epochMs: nowMs };
}

/**
 * One atomic step of the global bucket: refill, apply the report, grant.
 *
 * @example
 * const { reply } = leaseStep(undefined, { capacity: 40, refillPerSec: 10 },
 *   { need: 1, extra: 4, leaseTtlMs: 1000 }, Date.now());
 * reply.granted; // 5
 */
export function leaseStep(
  prev: GlobalBucketState | undefined,
  policy: BucketPolicy,
  req: LeaseRequest,
  nowIn: number,
): LeaseStep {
  const cap = policy.capacity;
  const perMs = policy.refillPerSec / 1000;
  const s: GlobalBucketState = prev ? { ...prev } : freshBucket(policy, nowIn);
  // The store clock can step back (failover to a replica): never refill negatively.
  const now = Math.max(nowIn, s.updatedMs);
  let kept = false;
  let at = s.updatedMs;
  // Refill up to `to`, capped by what is not leased out.
  const advance = (to: number) => {
    s.tokens = Math.min(cap - s.leased, s.tokens + Math.max(0, to - at) * perMs);
    at = Math.max(at, to);
  };
  const r = req.report;
  const reportValid = r !== undefined && s.leased > 0 && r.grantedAtMs >= s.epochMs;
  const expired = s.leased > 0 && now >= s.leaseDeadlineMs;
  const deadline = Math.max(s.leaseDeadlineMs, s.updatedMs);
  if (r && reportValid) {
    // The reported spends happened no later than their group's time: from then on
    // they no longer hold refill back. Spends after the deadline cannot exist.
    // A lease cannot have spent more than was registered to it.
    let budget = r.registered;
    for (const [ageMs, count] of r.spends.slice(0, MAX_SPEND_GROUPS)) {
      const spendAt = Math.min(now, Math.max(s.updatedMs, now - ageMs));
      if (expired && spendAt > deadline) break;
      advance(spendAt);
      const c = Math.max(0, Math.min(count, budget));
      budget -= c;
      s.leased = Math.max(0, s.leased - c);
    }
  }
  if (expired) {
    // Every outstanding lease is dead: nothing holds refill back after the deadline.
    advance(deadline);
    s.leased = 0;
    s.epochMs = now;
  }
  advance(now);
  if (r && reportValid && !expired) {
    if (r.keep) {
      kept = true;
    } else {
      const back = Math.min(r.unused, s.leased);
      s.leased -= back;
      s.tokens = Math.min(cap - s.leased, s.tokens + back);
    }
  }
  s.tokens = floor6(s.tokens);
  s.updatedMs = now;

  const avail = Math.floor(s.tokens);
  let granted = 0;
  if (avail > 0) {
    const forNeed = Math.min(req.need, avail);
    // Leave at least half of the rest for other nodes: as the bucket drains, leases shrink
    // to what is asked for, so the last tokens are not stranded on an idle node.
    const ahead = Math.min(req.extra, Math.floor((avail - forNeed) / 2));
    granted = forNeed + Math.max(0, ahead);
  }
  if (granted > 0) {
    s.tokens = floor6(s.tokens - granted);
    s.leased += granted;
  }
  // A renewal that keeps its tokens extends their life too, even when nothing new is granted:
  // the node will spend them until now + TTL, so they must stay counted until then.
  if (granted > 0 || kept) s.leaseDeadlineMs = Math.max(s.leaseDeadlineMs, now + req.leaseTtlMs);

  let retryAfterMs = 0;
  if (s.tokens < 1) {
    retryAfterMs = perMs > 0 ? Math.ceil((1 - s.tokens) / perMs) : Number.MAX_SAFE_INTEGER;
    // The asking node reports its own spends when it asks again, so only other nodes'
    // leases can hold refill back; those free it at the latest by the deadline.
    const own = (kept && req.report ? req.report.unused : 0) + granted;
    if (cap - (s.leased - own) < 1) retryAfterMs = Math.max(retryAfterMs, s.leaseDeadlineMs - now);
    retryAfterMs = Math.max(1, retryAfterMs);
  }
  const leaseLeftMs = s.leased > 0 ? s.leaseDeadlineMs - now : 0;
  // The key must outlive its leases and its refill; after that it equals a fresh bucket.
  const ttlMs = Math.max(1, leaseLeftMs + (perMs > 0 ? Math.ceil((cap - s.tokens) / perMs) : 0) + 1000);

  return {
    state: s,
    reply: {
      granted,
      kept,
      grantedAtMs: now,
      remaining: Math.max(0, Math.floor(s.tokens)),
      retryAfterMs,
    },
    ttlMs,
  };
}
