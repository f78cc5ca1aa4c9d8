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

