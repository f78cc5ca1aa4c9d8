/**
 * @module algorithms/fixed-window
 *
 * At most `capacity` requests per window of `windowMs`, windows aligned to the
 * store's clock (multiples of `windowMs` since the epoch). The state is the
 * current window's start, length and count.
 *
 * A leased permit is counted in the window when it is granted, and lives no
 * longer than that window: a lease ends at the window's end, and the node stops
 * spending it before (its own clock, from when it sent the call). Unused permits
 * given back in the same window are uncounted; those not given back in time stay
 * counted (under-admission, never over). Mirrored by `lua/algorithms/fixed_window.lua`.
 */
import type { FixedWindowParams } from '../core/types.js';
import type { LeaseAlgorithm } from './lease-algorithm.js';

/** The current window's start (store ms) and length, its count of permits granted, and the state's time. */
export type WindowState = { start: number; count: number; len: number; at: number };

export const windowStart = (t: number, windowMs: number): number => Math.floor(t / windowMs) * windowMs;

export const fixedWindowStep: LeaseAlgorithm<FixedWindowParams, WindowState> = {
  tag: 'fw',
  stateTag: 'f'.charCodeAt(0),
  stateBytes: 16,
  luaArgs: (p) => [p.capacity, p.windowMs],
  fresh: () => ({ start: Number.NEGATIVE_INFINITY, count: 0, len: 0, at: 0 }),
  capacity: (p) => p.capacity,
  // Counting, not refilling: leased permits are in `count`, so `cap` holds by itself.
  advance(s, p, _fromMs, toMs) {
    s.at = Math.max(s.at, toMs);
    const ws = windowStart(s.at, p.windowMs);
    if (s.len !== p.windowMs) {
      // The policy's window changed length: the window containing now, aligned to the new
      // length, still counts everything counted so far (once too strict, never lenient).
      s.len = p.windowMs;
      s.start = ws;
    } else if (ws > s.start) {
      s.start = ws;
      s.count = 0;
    }
  },
  settle() {},
  available: (s, p) => Math.max(0, Math.floor(p.capacity - s.count)),
  take(s, _p, n) {
    s.count += n;
  },
  // Only permits counted in this window come back: an earlier window's are gone with it.
  giveBack(s, _p, n, _cap, grantedAtMs) {
    if (grantedAtMs >= s.start) s.count = Math.max(0, s.count - n);
  },
  nextPermitMs: (s, p) => fixedWindowStep.permitsMs(s, p, 1),
  permitsMs: (s, p, n) => (p.capacity - s.count >= n ? 0 : Math.max(1, Math.ceil(s.start + p.windowMs - s.at))),
  idleMs: (s, p) => (s.count > 0 ? Math.max(0, Math.ceil(s.start + p.windowMs - s.at)) : 0),
  lifeMs: (s, p, nowMs, ttlMs) => Math.max(0, Math.min(ttlMs, s.start + p.windowMs - nowMs)),
  decode: (view, offset, updatedMs) => ({ start: view.getFloat64(offset), count: view.getInt32(offset + 8), len: view.getInt32(offset + 12), at: updatedMs }),
};
