/**
 * @module algorithms/gcra
 *
 * The generic cell rate algorithm (the leaky bucket as a meter): one request per
 * emission interval T = 1 / rate on average, bursts up to `capacity`. Its state
 * is one time, the theoretical arrival time (TAT): a request at `t` conforms
 * when TAT - t ≤ (capacity - 1) × T, and moves TAT to max(TAT, t) + T. So the
 * permits available at `t` are capacity - (TAT - t) / T, whole ones counted.
 *
 * Leased permits count like spent ones (TAT moved past them), and while some are
 * leased out TAT never falls below t + leased × T, the cap the protocol passes:
 * holder and meter together never exceed the burst. Times are whole
 * microseconds, exact in a double for epoch times, and TAT is rounded up, so
 * float noise can only delay a permit by under a microsecond, never hand one out
 * early. Mirrored by `lua/algorithms/gcra.lua`.
 */
import type { GcraParams } from '../core/types.js';
import type { LeaseAlgorithm } from './lease-algorithm.js';

/** TAT and the time the state was last moved to, both in store µs. */
export type GcraState = { tat: number; at: number };

/** Emission interval in µs. */
const interval = (p: GcraParams) => 1e6 / p.refillPerSec;
/** TAT may not be earlier than this while `cap` permits at most may be available. */
const floorFor = (s: GcraState, p: GcraParams, cap: number) => s.at + (p.capacity - cap) * interval(p);

export const gcraStep: LeaseAlgorithm<GcraParams, GcraState> = {
  tag: 'gcra',
  stateTag: 'g'.charCodeAt(0),
  stateBytes: 8,
  luaArgs: (p) => [p.capacity, p.refillPerSec],
  // A TAT in the past means a full burst; the time is set by the first advance.
  fresh: () => ({ tat: 0, at: 0 }),
  capacity: (p) => p.capacity,
  advance(s, p, _fromMs, toMs, cap) {
    s.at = Math.max(s.at, toMs * 1000);
    s.tat = Math.max(s.tat, floorFor(s, p, cap));
  },
  settle(s) {
    s.tat = Math.ceil(s.tat);
  },
  available(s, p) {
    const t = interval(p);
    return Math.max(0, Math.floor((s.at + p.capacity * t - Math.max(s.tat, s.at)) / t));
  },
  take(s, p, n) {
    s.tat = Math.ceil(Math.max(s.tat, s.at) + n * interval(p));
  },
  giveBack(s, p, n, cap) {
    s.tat = Math.max(s.tat - n * interval(p), floorFor(s, p, cap));
  },
  nextPermitMs(s, p) {
    return gcraStep.permitsMs(s, p, 1);
  },
  permitsMs(s, p, n) {
    // n permits at once conform once TAT - t ≤ (capacity - n) × T.
    const wait = s.tat - (p.capacity - n) * interval(p) - s.at;
    return wait > 0 ? Math.ceil(wait / 1000) : 0;
  },
  idleMs: (s) => Math.max(0, Math.ceil((s.tat - s.at) / 1000)),
  lifeMs: (_s, _p, _now, ttlMs) => ttlMs,
  decode: (view, offset, updatedMs) => ({ tat: view.getFloat64(offset), at: updatedMs * 1000 }),
};
