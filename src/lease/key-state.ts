/**
 * @module lease/key-state
 *
 * What a node keeps per (policy, client): the lease it holds, the store call in
 * flight and the requests waiting on it, and what it has learnt about the key.
 *
 * Phases, explicit in two fields rather than encoded in numbers:
 * - `lease`: undefined (holds nothing) or the lease held;
 * - `inflight`: whether a store call for the key is out. A call can be out
 *   while a lease is held (refill-ahead), and requests wait only when the key
 *   holds no spendable token.
 */
import type { LocalBucket } from '../algorithms/local-bucket.js';
import type { Decision, Policy, StoreMemo } from '../core/types.js';
import type { Lease } from './lease.js';

/** A request waiting on a store call: `cost` tokens, reserved (`hold`) or spent at once. */
export type Waiter = { cost: number; hold: boolean; resolve: (d: Decision) => void; reject: (e: Error) => void };

/**
 * No request waiting: one shared, frozen array, so a key that waits on nothing keeps none.
 * Only `addWaiter` adds (it replaces this array) and only `takeWaiters` empties all at
 * once; a push onto it would throw rather than make a request wait on every key.
 */
const NO_WAITERS = Object.freeze([]) as unknown as Waiter[];

/**
 * Adds a request to the key's waiters. The first one gets an array of exactly one slot:
 * `push` onto an empty array reserves 17 (V8's growth), 136 bytes a cold key would keep
 * for as long as it is held, though most keys never have a second waiter.
 */
export function addWaiter(k: KeyState, w: Waiter): void {
  if (k.waiters === NO_WAITERS) k.waiters = [w];
  else k.waiters.push(w);
}

/** Every request waiting, taken off the key (which then keeps no array). */
export function takeWaiters(k: KeyState): Waiter[] {
  const all = k.waiters;
  k.waiters = NO_WAITERS;
  return all;
}

export class KeyState implements StoreMemo {
  lease: Lease | undefined;
  inflight = false;
  /** In arrival order; changed only through `addWaiter`, `takeWaiters` and `shift` (see NO_WAITERS). */
  waiters: Waiter[] = NO_WAITERS;
  /** Denied here, without asking, until this time: the store said its bucket is dry. */
  deniedUntil = 0;
  lastArrival = Number.NaN;
  /** EWMA of the time between arrivals, ms; NaN until a second arrival. */
  intervalMs = Number.NaN;
  /** Tokens granted by the last reply (refill-ahead threshold). */
  lastGrant = 0;
  /** Global bucket tokens at `globalAt`, from the last reply: for the `remaining` estimate. */
  globalRemaining: number;
  globalAt = 0;
  /** Dropped from the LRU: whatever it holds goes back. */
  evicted = false;
  /** In the return queue. */
  returnQueued = false;
  /** The expiry its entry in the return scheduler's heap is for; Infinity when it has none. */
  trackedAt = Number.POSITIVE_INFINITY;
  /** Bumped when what the node holds for the key is forgotten (limits changed, usage reset): calls sent before are void. */
  forgets = 0;
  /** The last reply came after the end of the window its permits were counted in (its waiters asked again). */
  windowEnded = false;
  /** This node's own bucket, used only in degraded `local` mode. */
  fallback: LocalBucket | undefined;
  /** The store's name for the key's bucket, and the policy it was made for (`StoreMemo`). */
  storeKey: string | undefined;
  storeKeyPolicy: Policy | undefined;
  /** The bucket itself, when the store is in this process (`StoreMemo`). */
  storeBucket: unknown = undefined;

  constructor(
    /** The client id as the store knows it (the API key or other identity). */
    readonly clientId: string,
    public policy: Policy,
  ) {
    this.globalRemaining = policy.capacity;
  }

  /**
   * Whether `cost` held tokens may be taken now and used until `nowMs + marginMs`. A
   * lease that ends with its window needs no margin: it would leave the window's last
   * moments unusable, and whoever holds its tokens checks `held` before spending them.
   */
  spendable(nowMs: number, cost: number, marginMs = 0): boolean {
    const l = this.lease;
    return l !== undefined && l.tokens >= cost && nowMs + (l.windowLimited ? 0 : marginMs) < l.expiresAt;
  }
}
