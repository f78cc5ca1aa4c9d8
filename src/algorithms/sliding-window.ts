/**
 * @module algorithms/sliding-window
 *
 * The sliding window counter (seed 001): a request at `t` is allowed when the
 * previous window's count, weighted by the part of it the last `windowMs` still
 * overlap, plus the current window's count stays below `capacity`:
 *   prev × (1 - (t - start) / windowMs) + cur + 1 ≤ capacity.
 * Windows are aligned to the store's clock; the state is two counters and the
 * current window's start and length.
 *
 * As with the fixed window, a leased permit is counted when granted (earlier
 * than it is spent, when the previous window weighs more, so the check is only
 * stricter) and lives no longer than its window. Whole-ms times keep the weight
 * exact: the check is done in integers (× windowMs). Mirrored by
 * `lua/algorithms/sliding_window.lua`.
 */
import type { SlidingWindowParams } from '../core/types.js';
import type { LeaseAlgorithm } from './lease-algorithm.js';
import { windowStart } from './fixed-window.js';

/** The current window's start (store ms) and length, both windows' counts, and the state's time. */
export type SlidingState = { start: number; cur: number; prev: number; len: number; at: number };

/** Permits available at `s.at`, times windowMs (a whole number for whole-ms times). */
const scaledRoom = (s: SlidingState, p: SlidingWindowParams) =>
  p.capacity * p.windowMs - s.prev * (s.start + p.windowMs - s.at) - s.cur * p.windowMs;

export const slidingWindowStep: LeaseAlgorithm<SlidingWindowParams, SlidingState> = {
  tag: 'sw',
  stateTag: 's'.charCodeAt(0),
  stateBytes: 20,
  luaArgs: (p) => [p.capacity, p.windowMs],
  fresh: () => ({ start: Number.NEGATIVE_INFINITY, cur: 0, prev: 0, len: 0, at: 0 }),
  capacity: (p) => p.capacity,
  // Counting, not refilling: leased permits are in `cur`, so `cap` holds by itself.
  advance(s, p, _fromMs, toMs) {
    s.at = Math.max(s.at, toMs);
    const ws = windowStart(s.at, p.windowMs);
    if (s.len !== p.windowMs) {
      // The policy's window changed length: the window containing now, aligned to the new
      // length, counts everything counted so far as its own (once too strict, never lenient).
      s.len = p.windowMs;
      s.start = ws;
      s.cur += s.prev;
      s.prev = 0;
    } else if (ws === s.start + p.windowMs) {
      s.prev = s.cur;
      s.cur = 0;
      s.start = ws;
    } else if (ws > s.start) {
      s.prev = 0;
      s.cur = 0;
      s.start = ws;
    }
  },
  settle() {},
  available: (s, p) => Math.max(0, Math.floor(scaledRoom(s, p) / p.windowMs)),
  take(s, _p, n) {
    s.cur += n;
  },
  // Only permits counted in this window come back: an earlier window's are gone with it.
  giveBack(s, _p, n, _cap, grantedAtMs) {
    if (grantedAtMs >= s.start) s.cur = Math.max(0, s.cur - n);
  },
  nextPermitMs(s, p) {
    return slidingWindowStep.permitsMs(s, p, 1);
  },
  permitsMs(s, p, n) {
    if (scaledRoom(s, p) >= n * p.windowMs) return 0;
    const end = s.start + p.windowMs;
    // Within this window, the previous one's weight falls until n permits fit.
    if (s.prev > 0 && s.cur <= p.capacity - n) {
      const t = end - ((p.capacity - n - s.cur) * p.windowMs) / s.prev;
      if (t < end) return Math.max(1, Math.ceil(t - s.at));
    }
    // Else in the next window, where this window's count weighs as the previous one.
    const t = end + (s.cur > 0 ? Math.max(0, p.windowMs - ((p.capacity - n) * p.windowMs) / s.cur) : 0);
    return Math.max(1, Math.ceil(t - s.at));
  },
  idleMs(s, p) {
    if (s.cur > 0) return Math.max(0, Math.ceil(s.start + 2 * p.windowMs - s.at));
    if (s.prev > 0) return Math.max(0, Math.ceil(s.start + p.windowMs - s.at));
    return 0;
  },
  lifeMs: (s, p, nowMs, ttlMs) => Math.max(0, Math.min(ttlMs, s.start + p.windowMs - nowMs)),
  decode: (view, offset, updatedMs) => ({
    start: view.getFloat64(offset),
    cur: view.getInt32(offset + 8),
    prev: view.getInt32(offset + 12),
    len: view.getInt32(offset + 16),
    at: updatedMs,
  }),
};
