/**
 * Ideal references of the four algorithms, for tests and benchmarks: whether a
 * sequence of admissions obeys each algorithm's own definition.
 */
import type { Policy } from '../../src/core/types.js';

/**
 * Ideal references: whether admissions (sorted times) obey each algorithm's own
 * definition; the first admission that breaks it, as a message, or undefined.
 */
/** Float noise allowed (a millionth of a permit). */
const EPS = 1e-6;
export const reference: Record<Policy['algorithm'], (admitted: readonly number[], p: Policy) => string | undefined> = {
  // A token bucket that starts full admits at most capacity + refill × T in every interval T.
  token_bucket(admitted, p) {
    for (let i = 0; i < admitted.length; i++) {
      for (let j = i; j < admitted.length; j++) {
        const bound = p.capacity + (p.refillPerSec * ((admitted[j] as number) - (admitted[i] as number))) / 1000;
        if (j - i + 1 > bound + EPS) return `${j - i + 1} admitted in ${(admitted[j] as number) - (admitted[i] as number)} ms, bound ${bound}`;
      }
    }
    return undefined;
  },
  // GCRA replayed over the admissions: each conforms when TAT - t ≤ (limit - 1) × T.
  gcra(admitted, p) {
    const T = 1000 / p.refillPerSec;
    let tat = Number.NEGATIVE_INFINITY;
    for (const [i, t] of admitted.entries()) {
      if (tat - t > (p.capacity - 1) * T + EPS) return `admission ${i} at ${t}: TAT ${tat} is ${tat - t} ms ahead, tolerance ${(p.capacity - 1) * T}`;
      tat = Math.max(tat, t) + T;
    }
    return undefined;
  },
  // At most `limit` admissions in each aligned window.
  fixed_window(admitted, p) {
    const w = (p as { windowMs: number }).windowMs;
    const counts = new Map<number, number>();
    for (const t of admitted) {
      const k = Math.floor(t / w);
      const c = (counts.get(k) ?? 0) + 1;
      if (c > p.capacity) return `${c} admitted in window ${k} (limit ${p.capacity})`;
      counts.set(k, c);
    }
    return undefined;
  },
  // Each admission at t: previous window's count × its overlap + this window's count before it + 1 ≤ limit.
  sliding_window(admitted, p) {
    const w = (p as { windowMs: number }).windowMs;
    const counts = new Map<number, number>();
    for (const [i, t] of admitted.entries()) {
      const k = Math.floor(t / w);
      const prev = counts.get(k - 1) ?? 0;
      const cur = counts.get(k) ?? 0;
      const estimate = prev * (1 - (t - k * w) / w) + cur + 1;
      if (estimate > p.capacity + EPS) return `admission ${i} at ${t}: estimate ${estimate} over ${p.capacity}`;
      counts.set(k, cur + 1);
    }
    return undefined;
  },
};


/** An admission seen from outside: the wall-clock ms (Date.now) it was sent and answered; it was spent in between. */
export type Observed = { sent: number; done: number };

/**
 * The references for admissions observed over real HTTP, where only an interval
 * [sent, done] around each spend is known: each check uses the widest interval the
 * spends can have happened in, so it holds for every placement of the spends.
 * Windows are aligned to the wall clock, which Redis TIME on this machine is.
 */
export const observedReference: Record<Policy['algorithm'], (admitted: readonly Observed[], p: Policy) => string | undefined> = {
  token_bucket: (admitted, p) => bucketBound(admitted, p),
  // GCRA is the token bucket of burst `limit` and rate 1/T seen as a meter: the same bound.
  gcra: (admitted, p) => bucketBound(admitted, p),
  // Admissions certainly within one window (sent and answered in it) are at most `limit`.
  fixed_window(admitted, p) {
    const w = (p as { windowMs: number }).windowMs;
    const counts = new Map<number, number>();
    for (const a of admitted) {
      const k = Math.floor(a.sent / w);
      if (Math.floor(a.done / w) !== k) continue;
      const c = (counts.get(k) ?? 0) + 1;
      if (c > p.capacity) return `${c} admitted certainly within window ${k} (limit ${p.capacity})`;
      counts.set(k, c);
    }
    return undefined;
  },
  // For an admission certainly in window k: those certainly before it in k, plus itself, plus
  // those certainly in k-1 weighted by the overlap left when it was answered (the least it
  // can have been), stay within the limit.
  sliding_window(admitted, p) {
    const w = (p as { windowMs: number }).windowMs;
    const certain = admitted.filter((a) => Math.floor(a.sent / w) === Math.floor(a.done / w));
    const perWindow = new Map<number, number>();
    for (const a of certain) perWindow.set(Math.floor(a.sent / w), (perWindow.get(Math.floor(a.sent / w)) ?? 0) + 1);
    for (const a of certain) {
      const k = Math.floor(a.sent / w);
      const before = certain.filter((b) => Math.floor(b.sent / w) === k && b.done < a.sent).length;
      const prev = perWindow.get(k - 1) ?? 0;
      const estimate = prev * (1 - (a.done - k * w) / w) + before + 1;
      if (estimate > p.capacity + EPS) return `admission sent at ${a.sent}: estimate at least ${estimate} over ${p.capacity}`;
    }
    return undefined;
  },
};

/** For every set of admissions, at most capacity + refill × (the widest interval their spends can span). */
function bucketBound(admitted: readonly Observed[], p: Policy): string | undefined {
  const byDone = [...admitted].sort((x, y) => x.done - y.done);
  for (let i = 0; i < byDone.length; i++) {
    let earliest = Number.POSITIVE_INFINITY;
    for (let j = i; j < byDone.length; j++) {
      earliest = Math.min(earliest, (byDone[j] as Observed).sent);
      // Admissions i..j were spent between the earliest of their sends and j's answer.
      const span = Math.max(0, (byDone[j] as Observed).done - Math.min(earliest, (byDone[i] as Observed).sent));
      const bound = p.capacity + (p.refillPerSec * span) / 1000;
      if (j - i + 1 > bound + EPS) return `${j - i + 1} admitted within ${span} ms, bound ${bound}`;
    }
  }
  return undefined;
}
