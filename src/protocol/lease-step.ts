/**
 * @module protocol/lease-step
 *
 * One atomic step of a client's global bucket with leases, as pure math, for any
 * algorithm (`algorithms/lease-algorithm.ts`). `lua/protocol.lua` runs the same
 * steps inside Redis, `store/memory-store.ts` runs this function; the
 * integration tests check that both give identical answers.
 *
 * Design notes
 * ------------
 * A node takes permits out of the global bucket in batches ("leases") and spends
 * them locally. Taking them before spending them is not enough to rule out
 * over-admission: while a node holds unspent permits the bucket could refill to
 * full, and then holder + bucket together exceed the capacity. So the bucket
 * also counts `leased`, the permits handed out and not yet reported back, and
 * refills only up to `capacity - leased`. With W = available permits + unspent
 * leased permits, W never exceeds the capacity, grows at most at the refill
 * rate, and drops by exactly one per admitted request; hence admitted requests
 * in any interval T are at most capacity + refill × T, across any number of
 * nodes.
 *
 * Counting spent-but-unreported permits as leased would hold back refill, so a
 * node reports when it spent them: up to 16 groups of (age, count), oldest
 * first, each dated by its latest spend. Refill is computed piecewise: capped
 * by `leased` up to a group's time, by `leased` minus that group after it.
 * Dating a group by its latest spend can only hold refill back a little longer
 * than needed, never release it early. A node's own clock never decides
 * anything: it sends ages (durations); the bucket's clock is the store's.
 *
 * Generations. Leases expire: a node stops spending a lease `leaseTtlMs` after
 * it sent the request, no later than grant time + TTL on the store's clock.
 * Leased permits are kept in two generations, `cur` and `prev`, each with the
 * latest deadline of its leases. A grant, or a renewal that keeps its unused
 * permits, counts them in `cur`. Once `cur` is a TTL old (and `prev` is empty)
 * it becomes `prev` and a new `cur` starts (a ms later, so a lease's name, its
 * grant time, always tells which generation holds it); the roll happens before
 * the step's own grant, so `prev` holds only leases granted before the roll and
 * its deadline is less than 2 × TTL after its start. When that deadline passes
 * every lease in it is dead, and whatever it still counts is freed (refill
 * resumes from that deadline). So a node that vanished without returning its
 * permits, on a key other nodes keep busy, holds them back for less than
 * 2 × TTL after its last grant, instead of for as long as the key stays busy. A report
 * names its lease by `grantedAtMs`: that time's generation holds it; a report
 * about a generation already freed (or an earlier incarnation of the bucket) is
 * stale and ignored rather than subtracted from someone else's lease.
 */
import type { LeaseAlgorithm } from '../algorithms/lease-algorithm.js';
import type { LeaseReply, LeaseRequest } from '../core/types.js';

/** Leases granted or renewed between `startMs` and the next roll. */
export type Generation = {
  /** Store time the generation started; reports with an earlier grant time are not its. */
  startMs: number;
  /** Permits of its leases not yet reported spent or returned. */
  leased: number;
  /** Store time after which every lease in it has expired (0: none yet). */
  deadlineMs: number;
};

/** Stored state of one client's global bucket. */
export type BucketState<S> = {
  /** The algorithm's own state. */
  alg: S;
  /** Store time the state was computed for. */
  updatedMs: number;
  cur: Generation;
  prev: Generation;
};

export type LeaseStep<S> = {
  state: BucketState<S>;
  reply: LeaseReply;
  /** How long the stored state must live; afterwards it equals a fresh bucket. */
  ttlMs: number;
};

/** Most spend groups a report carries (the Lua script reads no more). */
export const MAX_SPEND_GROUPS = 16;

/**
 * Groups spend times (ascending) into at most MAX_SPEND_GROUPS runs of about
 * equal size, each dated by its latest spend, as [age at `nowMs`, permits] pairs.
 * `counts[i]` is how many permits were spent at `times[i]` (1 when omitted).
 */
export function spendGroups(times: readonly number[], nowMs: number, counts?: readonly number[]): [number, number][] {
  const n = times.length;
  if (n === 0) return [];
  const groups = Math.min(MAX_SPEND_GROUPS, n);
  const out: [number, number][] = [];
  let start = 0;
  for (let g = 1; g <= groups; g++) {
    const end = Math.floor((g * n) / groups);
    if (end > start) {
      let permits = end - start;
      if (counts) {
        permits = 0;
        for (let i = start; i < end; i++) permits += counts[i] as number;
      }
      // Ages round down: a spend is dated no earlier than it happened (up to the store clock's
      // whole-ms truncation, worth refill × 1 ms, a hundredth of a token at 10/s).
      out.push([Math.max(0, Math.floor(nowMs - (times[end - 1] as number))), permits]);
    }
    start = end;
  }
  return out;
}

/**
 * A bucket nobody has touched (or whose key expired): full, nothing leased. Both
 * generations start now, so reports about leases of an earlier incarnation of
 * the bucket are stale.
 */
export function freshState<P, S>(alg: LeaseAlgorithm<P, S>, p: P, nowMs: number): BucketState<S> {
  return {
    alg: alg.fresh(p),
    updatedMs: nowMs,
    cur: { startMs: nowMs, leased: 0, deadlineMs: 0 },
    prev: { startMs: nowMs, leased: 0, deadlineMs: 0 },
  };
}

const cloneState = <S>(s: BucketState<S>): BucketState<S> => ({
  alg: { ...s.alg },
  updatedMs: s.updatedMs,
  cur: { ...s.cur },
  prev: { ...s.prev },
});

/**
 * One atomic step of the global bucket: expire generations, apply the report,
 * roll, grant. `prev` is left as it was, unless `inPlace`: then it becomes the
 * new state (and the returned `state` is `prev` itself).
 *
 * @example
 * const { reply } = leaseStep(tokenBucketStep, undefined, { algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 },
 *   { need: 1, extra: 4, leaseTtlMs: 1000 }, Date.now());
 * reply.granted; // 5
 */
export function leaseStep<P, S>(alg: LeaseAlgorithm<P, S>, prev: BucketState<S> | undefined, p: P, req: LeaseRequest, nowIn: number, inPlace = false): LeaseStep<S> {
  const cap = alg.capacity(p);
  // In place for a store that keeps the state only for this step's result (the memory store):
  // a copy per step would be four objects kept per request, for the collector to copy.
  const s = prev ? (inPlace ? prev : cloneState(prev)) : freshState(alg, p, nowIn);
  // The store clock can step back (failover to a replica): never refill negatively.
  const now = Math.max(nowIn, s.updatedMs);
  let at = s.updatedMs;
  const leased = () => s.cur.leased + s.prev.leased;
  // Lets time pass up to `to`, refilling up to what is not leased out. Always applies that cap,
  // even when no time passes: a capacity lowered since the last step takes effect at once.
  const advance = (to: number) => {
    const t = Math.max(at, to);
    alg.advance(s.alg, p, at, t, cap - leased());
    at = t;
  };
  // A generation whose deadline has passed holds only dead leases: free it from its deadline
  // on, and empty its range of names, so that no later report about a dead lease is taken for
  // one of the leases the generation (or the one after it) holds from now on.
  const expireUpTo = (t: number) => {
    for (const g of s.prev.deadlineMs <= s.cur.deadlineMs ? [s.prev, s.cur] : [s.cur, s.prev]) {
      if (g.leased > 0 && g.deadlineMs <= t) {
        advance(Math.max(g.deadlineMs, s.updatedMs));
        g.leased = 0;
        if (g === s.cur) s.cur.startMs = Math.max(s.cur.startMs, now);
        s.prev.startMs = s.cur.startMs;
      }
    }
  };

  const r = req.report;
  // The reported lease's generation, by its grant time; none when stale.
  let gen: Generation | undefined;
  if (r !== undefined) {
    if (r.grantedAtMs >= s.cur.startMs) gen = s.cur;
    else if (r.grantedAtMs >= s.prev.startMs) gen = s.prev;
  }
  if (r && gen && gen.leased > 0) {
    // The reported spends happened no later than their group's time: from then on they
    // no longer hold refill back. A lease cannot have spent more than was registered to it,
    // nor after its generation expired.
    let budget = r.registered;
    for (const [ageMs, count] of r.spends.slice(0, MAX_SPEND_GROUPS)) {
      const spendAt = Math.min(now, Math.max(s.updatedMs, now - ageMs));
      expireUpTo(spendAt);
      if (gen.leased === 0) break;
      advance(spendAt);
      const c = Math.max(0, Math.min(count, budget, gen.leased));
      budget -= c;
      gen.leased -= c;
    }
  }
  expireUpTo(now);
  advance(now);

  // Roll: `cur` is a TTL old and `prev` holds nothing (its leases are dead). It happens before
  // this step's grant or renewal, which go into the new `cur`: the old one then holds only
  // leases granted before now, all dead a TTL from now, i.e. within 2 × TTL of its start.
  // The new `cur` starts a ms later, so a lease named before the roll (even in this same ms)
  // is never taken for one of its leases.
  if (s.prev.leased === 0 && now >= s.cur.startMs + req.leaseTtlMs) {
    s.prev = s.cur;
    s.cur = { startMs: now + 1, leased: 0, deadlineMs: 0 };
  }

  let kept = false;
  let keptUnused = 0;
  if (r && gen && gen.leased > 0) {
    if (r.keep) {
      // Renewal: its unused permits live on until now + TTL, so they count in `cur`.
      keptUnused = Math.min(r.unused, gen.leased);
      gen.leased -= keptUnused;
      s.cur.leased += keptUnused;
      kept = true;
    } else {
      const back = Math.min(r.unused, gen.leased);
      gen.leased -= back;
      alg.giveBack(s.alg, p, back, cap - leased(), r.grantedAtMs);
    }
  }
  alg.settle(s.alg);
  s.updatedMs = now;

  // A window's permits die with it: nothing is granted for less than a ms.
  const lifeMs = alg.lifeMs(s.alg, p, now, req.leaseTtlMs);
  const avail = lifeMs >= 1 ? alg.available(s.alg, p) : 0;
  let granted = 0;
  if (avail > 0) {
    const forNeed = Math.min(req.need, avail);
    // Leave at least half of the rest for other nodes: as the bucket drains, leases shrink
    // to what is asked for, so the last permits are not stranded on an idle node.
    const ahead = Math.min(req.extra, Math.floor((avail - forNeed) / 2));
    granted = forNeed + Math.max(0, ahead);
  }
  if (granted > 0) {
    alg.take(s.alg, p, granted);
    s.cur.leased += granted;
  }
  // A renewal that keeps its permits extends their life too, even when nothing new is granted.
  if (granted > 0 || kept) s.cur.deadlineMs = Math.max(s.cur.deadlineMs, now + lifeMs);
  // The lease's name: a time within its generation (`cur` may have started a ms after now).
  const grantedAtMs = Math.max(now, s.cur.startMs);

  let retryAfterMs = 0;
  const left = alg.available(s.alg, p);
  if (left < 1) {
    retryAfterMs = alg.nextPermitMs(s.alg, p);
    // The asking node reports its own spends when it asks again, so only other nodes'
    // leases can hold refill back; those are freed at the latest by their deadlines.
    const own = keptUnused + granted;
    if (cap - (leased() - own) < 1) retryAfterMs = Math.max(retryAfterMs, lastDeadline(s) - now);
    retryAfterMs = Math.max(1, retryAfterMs);
  }
  const leaseLeftMs = leased() > 0 ? lastDeadline(s) - now : 0;
  // The key must outlive its leases and its refill; after that it equals a fresh bucket.
  const ttlMs = Math.max(1, leaseLeftMs + alg.idleMs(s.alg, p) + 1000);

  return {
    state: s,
    reply: { granted, kept, grantedAtMs, remaining: left, retryAfterMs, lifeMs },
    ttlMs,
  };
}

/** The latest deadline of a generation that still holds permits. */
function lastDeadline<S>(s: BucketState<S>): number {
  return Math.max(s.prev.leased > 0 ? s.prev.deadlineMs : 0, s.cur.leased > 0 ? s.cur.deadlineMs : 0);
}
