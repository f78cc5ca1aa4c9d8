/**
 * Accuracy from a record of every decision (time, key, status), merged across
 * nodes, against an ideal single token bucket per key fed the same arrivals:
 *
 * - over-admission: an admitted request that finds less than one token in a bucket
 *   charged with every request the system admitted before it, i.e. an admission
 *   that breaks "admitted ≤ capacity + refill × T" for some interval;
 * - under-admission: a denied request that finds a whole token in that same
 *   bucket, i.e. one the ideal bucket would have admitted given what the system
 *   admitted before.
 *
 * Times are the requests' arrivals at the node; a limiter decides a little later
 * (after a Redis round trip, say), when a little more has refilled.
 * `toleranceTokens` (default 0.1 token = 10 ms of refill at 10/s) absorbs that,
 * so these counts flag systematic errors, not scheduling jitter.
 */
export type Decisions = { times: number[]; keys: string[]; statuses: number[] };

export type Accuracy = {
  decisions: number;
  admitted: number;
  over: number;
  under: number;
  overPct: number;
  underPct: number;
};

export function accuracy(records: Decisions[], policy: { capacity: number; refillPerSec: number }, toleranceTokens = 0.1): Accuracy {
  type Ev = { t: number; ok: boolean };
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
  const perMs = policy.refillPerSec / 1000;
  let over = 0;
  let under = 0;
  for (const list of byKey.values()) {
    list.sort((a, b) => a.t - b.t);
    let tokens = policy.capacity;
    let at = (list[0] as Ev).t;
    for (const e of list) {
      tokens = Math.min(policy.capacity, tokens + (e.t - at) * perMs);
      at = e.t;
      if (e.ok) {
        if (tokens >= 1 - toleranceTokens) tokens = Math.max(0, tokens - 1);
        else over++;
      } else if (tokens >= 1 + toleranceTokens) {
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
