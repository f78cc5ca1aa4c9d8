/**
 * Accuracy from a record of every decision (arrival time, key, status), merged
 * across nodes, against an ideal single token bucket per key fed the same
 * arrivals:
 *
 * - over-admission: admissions beyond what the bucket allows. Replaying the
 *   system's own admissions through the ideal bucket, an admission that finds
 *   less than one token breaks "admitted ≤ capacity + refill × T" for some
 *   interval T: it is counted and not charged.
 * - under-admission: requests the system denied that the ideal bucket, run on
 *   its own over the same arrivals, admits.
 *
 * A limiter decides a little after the arrival (after a Redis round trip, say),
 * when a little more has refilled; `toleranceTokens` (default 0.1 token = 10 ms
 * at 10/s) absorbs that in the over-admission replay. The under-admission count
 * needs none, but a system that admits the same number of requests a few
 * milliseconds later than the ideal one is charged for the shift.
 *
 * `idealAdmissions` is the ideal limiter of any of the four algorithms, for
 * the under-admission of the `algorithms` scenario.
 */
import { type LocalBucket, takeLocal } from '../../src/algorithms/local-bucket.js';
import { algorithmOf } from '../../src/algorithms/registry.js';
import type { Policy } from '../../src/core/types.js';

export type Decisions = {
  times: number[];
  keys: string[];
  statuses: number[];
  /** When each response was ready (bench/server.ts with BENCH_RECORD_DECIDED=1). */
  decided?: number[];
};

/** The same record timed by when each decision was ready instead of by arrival (requires `decided`). */
export function atDecision(records: Decisions[]): Decisions[] {
  return records.map((r) => ({ times: r.decided ?? r.times, keys: r.keys, statuses: r.statuses }));
}

export type Accuracy = {
  decisions: number;
  admitted: number;
  over: number;
  under: number;
  overPct: number;
  underPct: number;
};

type Ev = { t: number; ok: boolean };

/** The decisions (200 or 429; others are not decisions) per API key, in record order, and their counts. */
function decisionsByKey(records: Decisions[]): { byKey: Map<string, Ev[]>; decisions: number; admitted: number } {
  const byKey = new Map<string, Ev[]>();
  let decisions = 0;
  let admitted = 0;
  for (const r of records) {
    for (let i = 0; i < r.times.length; i++) {
      const status = r.statuses[i] as number;
      if (status !== 200 && status !== 429) continue;
      const key = r.keys[i] as string;
      let list = byKey.get(key);
      if (!list) {
        list = [];
        byKey.set(key, list);
      }
      list.push({ t: r.times[i] as number, ok: status === 200 });
      decisions++;
      if (status === 200) admitted++;
    }
  }
  return { byKey, decisions, admitted };
}

export function accuracy(records: Decisions[], policy: { capacity: number; refillPerSec: number }, toleranceTokens = 0.1): Accuracy {
  const { byKey, decisions, admitted } = decisionsByKey(records);
  const perMs = policy.refillPerSec / 1000;
  let over = 0;
  let under = 0;
  for (const list of byKey.values()) {
    list.sort((a, b) => a.t - b.t);
    let replay = policy.capacity; // charged with the system's admissions
    let ideal = policy.capacity; // deciding on its own
    let at = (list[0] as Ev).t;
    for (const e of list) {
      const refill = (e.t - at) * perMs;
      at = e.t;
      replay = Math.min(policy.capacity, replay + refill);
      ideal = Math.min(policy.capacity, ideal + refill);
      const idealAdmits = ideal >= 1;
      if (idealAdmits) ideal -= 1;
      if (e.ok) {
        // The balance may dip to -tolerance, not below: the tolerance is forgiven once, not per admission.
        if (replay >= 1 - toleranceTokens) replay -= 1;
        else over++;
      } else if (idealAdmits) {
        under++;
      }
    }
  }
  return {
    decisions,
    admitted,
    over,
    under,
    overPct: decisions ? (100 * over) / decisions : 0,
    underPct: decisions ? (100 * under) / decisions : 0,
  };
}

export type LimitSpec = { name: string; capacity: number; refillPerSec: number };

export type MultiAccuracy = {
  decisions: number;
  admitted: number;
  /** Per limit, in the order given: admissions that break that limit's bound (the system's admissions replayed). */
  perLimit: Array<{ name: string; over: number; overPct: number }>;
  /** Denials an ideal set of buckets (every limit, all or nothing), deciding on its own, would have admitted. */
  under: number;
  underPct: number;
};

/**
 * Accuracy of a rule with several limits, each request taking one token from
 * every limit, all or nothing. Over-admission is counted for each limit
 * separately (the system's admissions replayed through that limit's ideal
 * bucket, as in `accuracy`); under-admission against an ideal set of buckets
 * run on its own over the same arrivals, admitting only when every bucket has a
 * token and then taking one from each.
 */
export function multiAccuracy(records: Decisions[], limits: LimitSpec[], toleranceTokens = 0.1): MultiAccuracy {
  const { byKey, decisions, admitted } = decisionsByKey(records);
  const perMs = limits.map((l) => l.refillPerSec / 1000);
  const over = limits.map(() => 0);
  let under = 0;
  for (const list of byKey.values()) {
    list.sort((a, b) => a.t - b.t);
    const replay = limits.map((l) => l.capacity);
    const ideal = limits.map((l) => l.capacity);
    let at = (list[0] as Ev).t;
    for (const e of list) {
      const dt = e.t - at;
      at = e.t;
      for (let j = 0; j < limits.length; j++) {
        const cap = (limits[j] as LimitSpec).capacity;
        replay[j] = Math.min(cap, (replay[j] as number) + dt * (perMs[j] as number));
        ideal[j] = Math.min(cap, (ideal[j] as number) + dt * (perMs[j] as number));
      }
      const idealAdmits = ideal.every((x) => x >= 1);
      if (idealAdmits) for (let j = 0; j < ideal.length; j++) ideal[j] = (ideal[j] as number) - 1;
      if (e.ok) {
        for (let j = 0; j < replay.length; j++) {
          if ((replay[j] as number) >= 1 - toleranceTokens) replay[j] = (replay[j] as number) - 1;
          else over[j] = (over[j] as number) + 1;
        }
      } else if (idealAdmits) {
        under++;
      }
    }
  }
  const pct = (n: number) => (decisions ? (100 * n) / decisions : 0);
  return {
    decisions,
    admitted,
    perLimit: limits.map((l, j) => ({ name: l.name, over: over[j] as number, overPct: pct(over[j] as number) })),
    under,
    underPct: pct(under),
  };
}

/**
 * The ideal limiter of `p`'s algorithm, one process deciding on its own, fed the
 * request times `sent` (ms, sorted): the times it admits. It is the algorithm's
 * exact single-node form (`takeLocal`, what a node enforces without Redis; windows
 * aligned to the same clock as the times), so it admits a request exactly when
 * admitting it keeps the algorithm's definition (`test/helpers/reference.ts`).
 */
export function idealAdmissions(sent: readonly number[], p: Policy): number[] {
  const alg = algorithmOf(p);
  let bucket: LocalBucket | undefined;
  const admitted: number[] = [];
  for (const t of sent) {
    const r = takeLocal(alg, bucket, p, t);
    bucket = r.bucket;
    if (r.allowed) admitted.push(t);
  }
  return admitted;
}
