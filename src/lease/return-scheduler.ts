/**
 * @module lease/return-scheduler
 *
 * When unused tokens go back to the store. Leases are kept in a heap by expiry;
 * a sweep queues those about to expire, and a pacer sends the queue a slice at
 * a time (at most `returnsPerSec`, in 10 ms slices), so a wave of expiring
 * leases (12,000 keys touched in a spike expire together a TTL later) never
 * stalls the node. The sweep starts early enough for the backlog to drain
 * before the leases expire. Eviction and shutdown queue returns too.
 *
 * A key has at most one entry in the heap, at the earliest expiry it was
 * tracked for: a renewal, which only pushes the expiry later, adds none, and
 * when the entry comes due for a lease that has been renewed since, it is put
 * back at the lease's current expiry. So a lease call allocates no entry and the
 * heap holds at most one entry per key, where it held one per call for a TTL.
 */
import { Heap, Queue } from 'mnemonist';

export type ReturnSchedulerOptions<K> = {
  /** How often the sweep runs, ms. */
  sweepIntervalMs: number;
  leaseTtlMs: number;
  returnsPerSec: number;
  /** Run the sweep and the pacer on timers; tests call `sweep()` and `flush()`. */
  timers: boolean;
  /** Sends one key's return; resolves when it is done (never rejects). */
  send: (key: K, nowMs: number) => Promise<void> | undefined;
  /** When the key's lease expires, if it is one to return at expiry; undefined otherwise. */
  expiry: (key: K) => number | undefined;
  clock: () => number;
};

type Entry<K> = { key: K; expiresAt: number };

/** What the scheduler keeps on each key: whether it is queued, and its heap entry's expiry (Infinity: none). */
export type Scheduled = { returnQueued: boolean; trackedAt: number };

export class ReturnScheduler<K extends Scheduled> {
  readonly #expiries = new Heap<Entry<K>>((a, b) => a.expiresAt - b.expiresAt);
  readonly #queue = new Queue<K>();
  readonly #o: ReturnSchedulerOptions<K>;
  readonly #perSlice: number;
  readonly #sweepTimer: NodeJS.Timeout | undefined;
  #paceTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(o: ReturnSchedulerOptions<K>) {
    this.#o = o;
    this.#perSlice = Math.max(1, Math.floor(o.returnsPerSec / 100));
    if (o.timers) {
      this.#sweepTimer = setInterval(() => this.sweep(), o.sweepIntervalMs);
      this.#sweepTimer.unref();
    }
  }

  get queued(): number {
    return this.#queue.size;
  }

  /** A lease of `key` that expires at `expiresAt`. */
  track(key: K, expiresAt: number): void {
    // An entry no later than this one is in the heap: when it comes due, it is moved here.
    if (key.trackedAt <= expiresAt) return;
    key.trackedAt = expiresAt;
    this.#expiries.push({ key, expiresAt });
  }

  /** Queues the return of `key` now. */
  queue(key: K): void {
    if (key.returnQueued) return;
    key.returnQueued = true;
    this.#queue.enqueue(key);
    if (this.#o.timers && !this.#stopped && this.#paceTimer === undefined) this.#pace();
  }

  /** Queues the returns of leases about to expire. Runs on a timer; tests call it. */
  sweep(): void {
    const now = this.#o.clock();
    // Early enough that the pacer sends the backlog before the leases expire.
    const lead = Math.min(this.#o.leaseTtlMs / 2, this.#o.sweepIntervalMs * 1.5 + (this.#queue.size / this.#perSlice) * 10);
    while (this.#expiries.size > 0) {
      const e = this.#expiries.peek() as Entry<K>;
      if (e.expiresAt > now + lead) break;
      this.#expiries.pop();
      const k = e.key;
      // The key's earliest entry (a later one, pushed for an earlier expiry, is only re-checked).
      if (k.trackedAt === e.expiresAt) k.trackedAt = Number.POSITIVE_INFINITY;
      const current = this.#o.expiry(k);
      if (current === undefined) continue;
      if (current <= e.expiresAt) this.queue(k);
      // Renewed since it was tracked: due later.
      else this.track(k, current);
    }
  }

  /** Whether a lease expiring at `expiresAt` is within the sweep's reach now. */
  isDue(expiresAt: number): boolean {
    return expiresAt <= this.#o.clock() + this.#o.sweepIntervalMs * 1.5;
  }

  /** Sends up to `max` queued returns now (all by default) and waits for them. */
  async flush(max = Number.POSITIVE_INFINITY): Promise<void> {
    const sent: Promise<void>[] = [];
    const now = this.#o.clock();
    for (let i = 0; i < max && this.#queue.size > 0; i++) {
      const k = this.#queue.dequeue() as K;
      k.returnQueued = false;
      const p = this.#o.send(k, now);
      if (p) sent.push(p);
    }
    await Promise.all(sent);
  }

  /** Stops the timers; queued returns stay for `flush()`. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#sweepTimer);
    clearTimeout(this.#paceTimer);
  }

  #pace(): void {
    this.#paceTimer = setTimeout(() => {
      this.#paceTimer = undefined;
      void this.flush(this.#perSlice);
      if (this.#queue.size > 0 && !this.#stopped) this.#pace();
    }, 10);
    this.#paceTimer.unref();
  }
}
