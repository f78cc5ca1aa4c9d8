/**
 * Paced load over time with per-second figures: a schedule of phases (rate and
 * length) driven by autocannon against several servers at once, with every
 * response bucketed into the second it completed in.
 *
 * autocannon paces by giving each connection a quota per second that resets
 * every second, so one instance sends its whole second's quota at once and the
 * latency it measures is mostly its own queueing. To approximate a steady
 * arrival rate, each phase runs `STAGGER` instances with 2 connections each,
 * started 1000 / STAGGER ms apart, each carrying 1 / STAGGER of the rate.
 */
import autocannon from 'autocannon';
import type { KeyPicker } from './keys.js';

export type Phase = { rps: number; seconds: number };

const STAGGER = 10;

export type Second = {
  t: number;
  admitted: number;
  denied: number;
  errors: number;
  p99Ms: number;
};

export type TimelineResult = {
  seconds: Second[];
  total: number;
  admitted: number;
  denied: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
};

/** The seed traffic model: 500 req/s steady with 4-second bursts to 1,200 req/s. */
export function seedSchedule(totalSeconds: number, burstEvery = 10): Phase[] {
  const phases: Phase[] = [];
  let t = 0;
  while (t < totalSeconds) {
    const steady = Math.min(burstEvery - 4, totalSeconds - t);
    if (steady > 0) phases.push({ rps: 500, seconds: steady });
    t += steady;
    const burst = Math.min(4, totalSeconds - t);
    if (burst > 0) phases.push({ rps: 1200, seconds: burst });
    t += burst;
  }
  return phases;
}

/** The `p`th percentile (0–100) of ascending `sorted`; 0 when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Runs the phases back to back against `urls` (connections spread over them). */
export async function runTimeline(
  urls: string[],
  phases: Phase[],
  pick: KeyPicker,
  onSecond?: (s: Second) => void,
): Promise<TimelineResult> {
  const t0 = performance.now();
  const buckets = new Map<number, { admitted: number; denied: number; errors: number; lat: number[] }>();
  const bucket = () => {
    const t = Math.floor((performance.now() - t0) / 1000);
    let b = buckets.get(t);
    if (!b) {
      b = { admitted: 0, denied: 0, errors: 0, lat: [] };
      buckets.set(t, b);
    }
    return b;
  };
  const one = (rps: number, seconds: number) =>
    new Promise<void>((resolve, reject) => {
      const instance = autocannon(
        {
          url: urls.map((u) => `${u}/resource`) as unknown as string,
          connections: 2,
          overallRate: rps,
          duration: seconds,
          timeout: 5,
          requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-api-key': pick() } }) }],
        },
        (err) => (err ? reject(err) : resolve()),
      );
      instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
        const b = bucket();
        if (status === 200) b.admitted++;
        else if (status === 429) b.denied++;
        else b.errors++;
        b.lat.push(ms);
      });
      instance.on('reqError', () => {
        bucket().errors++;
      });
    });
  // Each slot runs the whole schedule, offset by its share of a second.
  await Promise.all(
    Array.from({ length: STAGGER }, async (_, i) => {
      await new Promise((r) => setTimeout(r, (i * 1000) / STAGGER));
      for (const phase of phases) await one(Math.round(phase.rps / STAGGER), phase.seconds);
    }),
  );
  const seconds: Second[] = [...buckets.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([t, b]) => {
      const lat = b.lat.sort((x, y) => x - y);
      return { t, admitted: b.admitted, denied: b.denied, errors: b.errors, p99Ms: percentile(lat, 99) };
    });
  for (const s of seconds) onSecond?.(s);
  const all = [...buckets.values()].flatMap((b) => b.lat).sort((x, y) => x - y);
  const sum = (f: (s: Second) => number) => seconds.reduce((n, s) => n + f(s), 0);
  return {
    seconds,
    total: all.length,
    admitted: sum((s) => s.admitted),
    denied: sum((s) => s.denied),
    errors: sum((s) => s.errors),
    p50Ms: percentile(all, 50),
    p99Ms: percentile(all, 99),
    p999Ms: percentile(all, 99.9),
  };
}
