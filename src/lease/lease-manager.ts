/**
 * @module lease/lease-manager
 *
 * The local tier: answers most requests from tokens this node already holds,
 * and talks to the global store (Redis or memory) only to lease more.
 *
 * Design notes
 * ------------
 * - Every client id has a `KeyState` in a bounded LRU. A request spends a held
 *   token synchronously: no promise, no I/O.
 * - Single flight: at most one lease call per key is in flight. Requests that
 *   find no token wait on it; when it answers they are served from the grant,
 *   and if more arrived meanwhile than it brought, one more call asks for them.
 * - Lease size adapts: a lease asks for the waiting requests (`need`) and tops
 *   them up to the demand expected over `leaseCoverMs` at the key's observed
 *   arrival rate (`extra`; need + extra at most max(need, `maxLeaseTokens`)).
 *   The store grants `extra` only up to half of what is left, so leases shrink
 *   as the global bucket drains. A key's first lease asks for `coldLeaseTokens`.
 *   Requests queued by a key arriving faster than its policy refills (a burst,
 *   an abuser) lease exactly what waits: prefetching for them would strand
 *   tokens on this node that another node's share of the burst needs.
 * - Spends are reported with their times (up to 16 dated groups), so the store
 *   resumes refill from the spends rather than from the report.
 * - Refill-ahead: once a warm key's held tokens fall below what it spends in
 *   `refillAheadMs`, a background call fetches the next lease (reporting the
 *   current one and keeping its unused tokens), so requests do not wait.
 * - When the store reports its bucket empty (it denied, or granted its last
 *   tokens), the key is denied here, once its held tokens are spent, until the
 *   time the store computed for the next token: no store call meanwhile.
 * - A lease dies `leaseTtlMs` after its request was sent. Shortly before that, a
 *   sweep returns its unused tokens; eviction from the LRU and `close()` do too.
 *   Every leftover is returned: the store frees leases by itself only when the
 *   key's whole deadline passes, which renewals by busy nodes keep moving.
 *   A failed return is dropped and counted: Redis frees the tokens at the lease
 *   deadline. Spends of a failed call are not re-sent (Redis may have applied
 *   them): unsent, they only hold refill back until that deadline.
 * - Degraded mode: when a store call fails, or while the circuit breaker is
 *   open, requests that need the store are decided in memory, by
 *   `degradedMode`: `local` enforces a per-node bucket holding this node's
 *   share of the policy (capacity and refill divided by the live node count,
 *   at least one token); `open` allows and counts; `closed` rejects with
 *   `StoreUnavailableError` (503). Tokens already leased stay usable until
 *   their lease expires, in every mode.
 */
import { Heap, LRUMapWithDelete, Queue } from 'mnemonist';
import { type BucketPolicy, type LeaseReply, type LeaseReport, spendGroups } from '../bucket/global-bucket.js';
import { type TokenBucket, takeToken } from '../bucket/token-bucket.js';
import { type Logger, throttled } from '../log/logger.js';
import { type GlobalStore, StoreUnavailableError } from '../store/global-store.js';
import type { Clock } from './clock.js';

/**
 * Whether lease calls may go to the store (the circuit breaker). `tryCall` grants
 * a call (always when healthy, one trial at a time when half-open); every granted
 * call's outcome is reported with `success` or `failure`.
 */
export interface StoreGate {
  readonly isOpen: boolean;
  tryCall(): boolean;
  success(): void;
  failure(reason: string): void;
}

/** What a node does for requests that need Redis while Redis cannot answer. */
export type DegradedMode = 'local' | 'open' | 'closed';

/** A named bucket policy; the name is what the RateLimit headers show. */
export type Policy = BucketPolicy & { readonly name: string };

/** The answer for one request. A denial is a value, not an error. */
export type Decision = {
  allowed: boolean;
  /** The policy's capacity. */
  limit: number;
  /** Tokens this client has left, as far as this node knows (whole tokens). */
  remaining: number;
  /** ms until the client's bucket is full again, if it stops now. */
  resetMs: number;
  /** When denied: ms until a token can be had (at least 1). 0 when allowed. */
  retryAfterMs: number;
  policy: Policy;
  /** Denied because new keys arrive faster than the node admits them, not by the policy. */
  shed?: true;
};

export type LeaseManagerOptions = {
  store: GlobalStore;
  clock: Clock;
  logger: Logger;
  /** Most client ids held in memory; the least recently used go first. */
  maxKeys: number;
  /** How long a lease may be spent, from the moment its request is sent. */
  leaseTtlMs: number;
  /** Most tokens a lease asks for ahead of demand. */
  maxLeaseTokens: number;
  /** How much demand (in ms at the observed rate) a lease tries to cover. Default 0.8 × leaseTtlMs. */
  leaseCoverMs?: number;
  /** Tokens a lease asks for when the key's rate is not known yet (its first request). Default 1. */
  coldLeaseTokens?: number;
  /** Fetch the next lease when held tokens cover less than this much demand. Default 50. */
  refillAheadMs?: number;
  /** How often expiring leases are queued for return. Default min(1000, leaseTtlMs / 4). */
  sweepIntervalMs?: number;
  /** Run the sweep and the return pacer on timers (default true); tests call `sweep()` and `flushReturns()`. */
  timers?: boolean;
  /** Most return calls per second, paced in slices of 10 ms, so a wave of expiring leases never stalls the node. Default 2000. */
  returnsPerSec?: number;
  /** First-seen keys allowed per second (burst: 4 s worth); beyond, their first request is shed with a 429. Default 3000. */
  newKeysPerSec?: number;
  /** Share of `maxKeys` kept for keys seen once (the probation segment of the LRU). Default 0.2. */
  probationShare?: number;
  /** Decides whether to ask the store at all; none = always ask. */
  breaker?: StoreGate;
  /** Default `local`. */
  degradedMode?: DegradedMode;
  /** Live nodes sharing the limit (for `local` mode). Default 1. */
  liveNodes?: () => number;
  /** How a client id is named in logs (a keyed hash); never the raw id. Default: not named. */
  clientLabel?: (clientId: string) => string;
};

/** Counters for tests, health and benchmarks. */
export type LeaseStats = {
  decisions: number;
  localDecisions: number;
  leaseCalls: number;
  /** Of those, calls made ahead of demand (refill-ahead), with no request waiting. */
  aheadCalls: number;
  returnCalls: number;
  returnFailures: number;
  storeFailures: number;
  /** Lease replies that arrived after their lease had expired here (their waiters were decided degraded). */
  lateReplies: number;
  /** Decisions made in degraded mode (store failed or breaker open). */
  degradedDecisions: number;
  /** Of those, requests allowed only because the mode is `open`. */
  failOpenAllowed: number;
  /** First requests of new keys shed because new keys arrived faster than `newKeysPerSec`. */
  newKeysShed: number;
};

type Waiter = { resolve: (d: Decision) => void; reject: (e: Error) => void };

class KeyState {
  tokens = 0;
  /** Tokens registered in the store for the current lease (granted + kept). */
  registered = 0;
  /** Store time of the current lease, 0 when none. */
  grantedAtMs = 0;
  expiresAt = 0;
  /** When each token of the current lease was spent, since the last report (for refill). */
  spendTimes: number[] = [];
  lastGrant = 0;
  inflight = false;
  waiters: Waiter[] = [];
  deniedUntil = 0;
  lastArrival = Number.NaN;
  /** EWMA of the time between arrivals, ms; NaN until a second arrival. */
  intervalMs = Number.NaN;
  /** Global bucket tokens at `globalAt`, from the last reply. */
  globalRemaining: number;
  globalAt = 0;
  evicted = false;
  /** In the return queue. */
  returnQueued = false;
  /** This node's own bucket, used only in degraded `local` mode. */
  fallback: TokenBucket | undefined;

  constructor(
    readonly id: string,
    public policy: Policy,
  ) {
    this.globalRemaining = policy.capacity;
  }
}

type Expiry = { key: KeyState; expiresAt: number };

export class LeaseManager {
  readonly stats: LeaseStats = {
    decisions: 0,
    localDecisions: 0,
    leaseCalls: 0,
    aheadCalls: 0,
    returnCalls: 0,
    returnFailures: 0,
    storeFailures: 0,
    lateReplies: 0,
    degradedDecisions: 0,
    failOpenAllowed: 0,
    newKeysShed: 0,
  };
  readonly #store: GlobalStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** Keys seen more than once. */
  readonly #main: LRUMapWithDelete<string, KeyState>;
  /** Keys seen once: a flood of made-up keys evicts only these, never the main segment. */
  readonly #probation: LRUMapWithDelete<string, KeyState>;
  /** Leases by expiry time, earliest first. */
  readonly #expiries = new Heap<Expiry>((a, b) => a.expiresAt - b.expiresAt);
  readonly #returns = new Queue<KeyState>();
  readonly #ttlMs: number;
  readonly #maxAhead: number;
  readonly #coverMs: number;
  readonly #aheadMs: number;
  readonly #coldTokens: number;
  readonly #sweepMs: number;
  readonly #returnsPerSlice: number;
  readonly #newKeysPerMs: number;
  readonly #newKeyBurst: number;
  #newKeyTokens: number;
  #newKeyAt = Number.NaN;
  readonly #timers: boolean;
  readonly #sweepTimer: NodeJS.Timeout | undefined;
  #paceTimer: NodeJS.Timeout | undefined;
  readonly #logStoreFailure = throttled(1000);
  readonly #logReturnFailure = throttled(1000);
  readonly #logShed = throttled(10_000);
  #closed = false;
  /** Store calls in flight (leases and returns), so close() can wait for them. */
  readonly #pending = new Set<Promise<void>>();
  readonly #breaker: StoreGate | undefined;
  readonly #degradedMode: DegradedMode;
  readonly #liveNodes: () => number;
  readonly #label: (clientId: string) => string | undefined;

  constructor(options: LeaseManagerOptions) {
    this.#breaker = options.breaker;
    this.#degradedMode = options.degradedMode ?? 'local';
    this.#liveNodes = options.liveNodes ?? (() => 1);
    this.#label = options.clientLabel ?? (() => undefined);
    this.#store = options.store;
    this.#clock = options.clock;
    this.#log = options.logger;
    const probation = Math.max(1, Math.floor(options.maxKeys * (options.probationShare ?? 0.2)));
    this.#probation = new LRUMapWithDelete(probation);
    this.#main = new LRUMapWithDelete(Math.max(1, options.maxKeys - probation));
    this.#ttlMs = options.leaseTtlMs;
    this.#maxAhead = options.maxLeaseTokens;
    this.#coverMs = options.leaseCoverMs ?? options.leaseTtlMs * 0.8;
    this.#aheadMs = options.refillAheadMs ?? 50;
    this.#coldTokens = options.coldLeaseTokens ?? 1;
    this.#sweepMs = options.sweepIntervalMs ?? Math.min(1000, options.leaseTtlMs / 4);
    this.#returnsPerSlice = Math.max(1, Math.floor((options.returnsPerSec ?? 2000) / 100));
    const newKeysPerSec = options.newKeysPerSec ?? 3000;
    this.#newKeysPerMs = newKeysPerSec / 1000;
    this.#newKeyBurst = newKeysPerSec * 4;
    this.#newKeyTokens = this.#newKeyBurst;
    this.#timers = options.timers ?? true;
    if (this.#timers) {
      this.#sweepTimer = setInterval(() => this.sweep(), this.#sweepMs);
      this.#sweepTimer.unref();
    }
  }

  /** Client ids held in memory. */
  get size(): number {
    return this.#main.size + this.#probation.size;
  }

  /** Returns queued and not yet sent. */
  get returnsQueued(): number {
    return this.#returns.size;
  }

  /**
   * Decides one request of `clientId` under `policy`. Synchronous when the node
   * holds a token or knows the key is denied; a promise when it must ask the store,
   * which settles within two store deadlines (the call in flight, then its own).
   * In `closed` degraded mode the promise rejects with `StoreUnavailableError`;
   * this method never throws.
   */
  check(clientId: string, policy: Policy): Decision | Promise<Decision> {
    const now = this.#clock.nowMs();
    this.stats.decisions++;
    const k = this.#key(clientId, policy, now);
    if (k === undefined) return this.#shed(policy);
    const dt = now - k.lastArrival;
    if (dt >= 0) k.intervalMs = Number.isNaN(k.intervalMs) ? dt : k.intervalMs * 0.8 + dt * 0.2;
    k.lastArrival = now;

    if (k.tokens >= 1 && now < k.expiresAt) {
      this.stats.localDecisions++;
      const d = this.#spend(k, now);
      if (!k.inflight && k.deniedUntil <= now && k.tokens < this.#lowWater(k) && !this.#breaker?.isOpen) this.#lease(k, now);
      return d;
    }
    if (k.deniedUntil > now) {
      this.stats.localDecisions++;
      return this.#denial(k, now);
    }
    if (!k.inflight && this.#breaker && !this.#breaker.tryCall()) {
      try {
        return this.#degraded(k, now);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<Decision>((resolve, reject) => {
      k.waiters.push({ resolve, reject });
      if (!k.inflight) this.#lease(k, now);
    });
  }

  /**
   * The key's state: from the main segment, promoted from probation on its second
   * request, or new in probation. `undefined` when a new key must be shed.
   */
  #key(clientId: string, policy: Policy, now: number): KeyState | undefined {
    let k = this.#main.get(clientId);
    if (k !== undefined) {
      k.policy = policy;
      return k;
    }
    k = this.#probation.get(clientId);
    if (k !== undefined) {
      this.#probation.delete(clientId);
      k.policy = policy;
    } else {
      if (!this.#takeNewKey(now)) return undefined;
      k = new KeyState(clientId, policy);
      const out = this.#probation.setpop(clientId, k);
      if (out?.evicted) this.#evicted(out.value);
      return k;
    }
    const out = this.#main.setpop(clientId, k);
    if (out?.evicted) this.#evicted(out.value);
    return k;
  }

  /** The node-wide budget of first-seen keys (a token bucket). */
  #takeNewKey(now: number): boolean {
    const elapsed = Number.isNaN(this.#newKeyAt) ? 0 : Math.max(0, now - this.#newKeyAt);
    this.#newKeyAt = now;
    this.#newKeyTokens = Math.min(this.#newKeyBurst, this.#newKeyTokens + elapsed * this.#newKeysPerMs);
    if (this.#newKeyTokens < 1) return false;
    this.#newKeyTokens--;
    return true;
  }

  #shed(p: Policy): Decision {
    this.stats.newKeysShed++;
    this.#logShed((suppressed) =>
      this.#log.warn('new client keys arrive faster than allowed: shedding their first requests', { suppressed }),
    );
    const retryAfterMs = Math.max(1, Math.ceil((1 - this.#newKeyTokens) / this.#newKeysPerMs));
    return { allowed: false, limit: p.capacity, remaining: 0, resetMs: 0, retryAfterMs, policy: p, shed: true };
  }

  /** Queues the returns of leases about to expire. Runs on a timer; tests call it. */
  sweep(): void {
    const now = this.#clock.nowMs();
    // Start early enough that the pacer sends the backlog before the leases expire.
    const lead = Math.min(this.#ttlMs / 2, this.#sweepMs * 1.5 + (this.#returns.size / this.#returnsPerSlice) * 10);
    while (this.#expiries.size > 0) {
      const e = this.#expiries.peek() as Expiry;
      if (e.expiresAt > now + lead) break;
      this.#expiries.pop();
      if (e.key.expiresAt === e.expiresAt) this.#queueReturn(e.key);
    }
  }

  /** Sends up to `max` queued returns now (all by default) and waits for them. For tests and close(). */
  async flushReturns(max = Number.POSITIVE_INFINITY): Promise<void> {
    const sent: Promise<void>[] = [];
    const now = this.#clock.nowMs();
    for (let i = 0; i < max && this.#returns.size > 0; i++) {
      const k = this.#returns.dequeue() as KeyState;
      k.returnQueued = false;
      const p = this.#giveBack(k, now);
      if (p) sent.push(p);
    }
    await Promise.all(sent);
  }

  /** Stops the timers and returns every unused token, waiting for calls in flight (each bounded by the store's deadline). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    clearTimeout(this.#paceTimer);
    // Lease calls in flight settle first; their replies queue what they bring, as the manager is closed.
    await Promise.allSettled([...this.#pending]);
    for (const [, k] of this.#main) this.#queueReturn(k);
    for (const [, k] of this.#probation) this.#queueReturn(k);
    do {
      await this.flushReturns();
      await Promise.allSettled([...this.#pending]);
    } while (this.#pending.size > 0 || this.#returns.size > 0);
  }

  #track(call: Promise<void>): void {
    this.#pending.add(call);
    void call.finally(() => this.#pending.delete(call));
  }

  #spend(k: KeyState, now: number): Decision {
    k.tokens--;
    k.spendTimes.push(now);
    const p = k.policy;
    const remaining = this.#remaining(k, now);
    return {
      allowed: true,
      limit: p.capacity,
      remaining,
      resetMs: Math.ceil(((p.capacity - remaining) * 1000) / p.refillPerSec),
      retryAfterMs: 0,
      policy: p,
    };
  }

  #denial(k: KeyState, now: number): Decision {
    const p = k.policy;
    return {
      allowed: false,
      limit: p.capacity,
      remaining: 0,
      resetMs: Math.ceil((p.capacity * 1000) / p.refillPerSec),
      retryAfterMs: Math.max(1, Math.ceil(k.deniedUntil - now)),
      policy: p,
    };
  }

  /** Held tokens plus the global bucket as last seen, refilled since: an estimate. */
  #remaining(k: KeyState, now: number): number {
    const p = k.policy;
    const global = k.globalRemaining + ((now - k.globalAt) * p.refillPerSec) / 1000;
    return Math.max(0, Math.min(p.capacity, Math.floor(k.tokens + global)));
  }

  /** Tokens ahead of demand worth asking for: the demand over `leaseCoverMs`. */
  #ahead(k: KeyState): number {
    if (!(k.intervalMs >= 0)) return this.#coldTokens;
    const expected = this.#coverMs / Math.max(k.intervalMs, 0.01);
    return Math.min(this.#maxAhead, Math.floor(expected));
  }

  /**
   * Tokens to ask for on top of `need`. Requests waiting while the key arrives
   * faster than its policy refills are draining the bucket: a burst (or an
   * abuser), whose length nobody knows. Prefetching for it would strand tokens
   * here that another node's share of the same burst needs, so it leases exactly
   * what waits. Keys within their rate get leases sized by their demand.
   */
  #extra(k: KeyState, need: number): number {
    if (need > 0 && k.intervalMs * k.policy.refillPerSec < 1000) return 0;
    return Math.max(0, this.#ahead(k) - need);
  }

  /** Refill-ahead threshold: the demand over `refillAheadMs`, for keys warm enough to use a lease. */
  #lowWater(k: KeyState): number {
    if (!(k.intervalMs * 2 < this.#ttlMs)) return 0;
    return Math.min(Math.floor(k.lastGrant / 2), Math.ceil(this.#aheadMs / Math.max(k.intervalMs, 0.01)));
  }

  /**
   * The report on the current lease; its spends are handed over (the next report
   * starts empty). A lease that has expired here cannot be kept: its unused tokens
   * are given back rather than left counted as leased.
   */
  #report(k: KeyState, now: number, keep: boolean): LeaseReport | undefined {
    const spends = spendGroups(k.spendTimes, now);
    k.spendTimes = [];
    if (k.grantedAtMs === 0) return undefined;
    return {
      grantedAtMs: k.grantedAtMs,
      registered: k.registered,
      unused: k.tokens,
      spends,
      keep: keep && now < k.expiresAt,
    };
  }

  #lease(k: KeyState, now: number): void {
    const need = k.waiters.length;
    if (this.#closed) {
      for (const w of k.waiters.splice(0)) w.reject(new StoreUnavailableError('rate limiter is shut down'));
      return;
    }
    const report = this.#report(k, now, true);
    const unusedAtSend = report?.keep ? report.unused : 0;
    if (!report?.keep) k.tokens = 0;
    k.inflight = true;
    this.stats.leaseCalls++;
    if (need === 0) this.stats.aheadCalls++;
    this.#track(
      this.#store
        .lease(k.id, k.policy, { need, extra: this.#extra(k, need), leaseTtlMs: this.#ttlMs, report })
        .then(
          (reply) => {
            try {
              this.#granted(k, reply, need, now, unusedAtSend);
            } catch (err) {
              // A bug here must not leave requests waiting forever.
              this.#failed(k, err);
            }
          },
          // The spends of a failed report are not sent again: Redis may have applied them
          // and only the reply was lost, and counting them twice would over-admit. Unsent,
          // they only hold refill back until the lease deadline.
          (err: unknown) => this.#failed(k, err),
        )
        .catch((err: unknown) => {
          this.#log.error('lease reply handling failed', { error: (err as Error).message });
        }),
    );
  }

  #granted(k: KeyState, reply: LeaseReply, need: number, sentAt: number, unusedAtSend: number): void {
    k.inflight = false;
    k.fallback = undefined;
    const now = this.#clock.nowMs();
    if (reply.kept) {
      k.registered = unusedAtSend + reply.granted;
      k.tokens += reply.granted;
    } else {
      // The old lease is dead in the store: what was spent from it in flight is not ours to report.
      k.registered = reply.granted;
      k.tokens = reply.granted;
      k.spendTimes = [];
    }
    k.grantedAtMs = k.registered > 0 ? reply.grantedAtMs : 0;
    // One ms short of the store's deadline: Redis TIME is whole ms, performance.now() is not.
    k.expiresAt = sentAt + this.#ttlMs - 1;
    k.lastGrant = reply.granted;
    k.globalRemaining = reply.remaining;
    k.globalAt = now;
    if (k.registered > 0) this.#expiries.push({ key: k, expiresAt: k.expiresAt });
    if (now >= k.expiresAt) {
      // The reply came after the lease it brings had died (an event loop stalled past the
      // TTL): nobody may spend it, and asking again could stall the same way. Its waiters
      // are decided in degraded mode now, so none waits past this reply; the tokens go back.
      this.stats.lateReplies++;
      this.#failed(k, new StoreUnavailableError(`lease reply arrived ${Math.round(now - sentAt)} ms after it was sent, past the lease TTL`));
      return;
    }
    this.#breaker?.success();

    while (k.waiters.length > 0 && k.tokens >= 1) {
      (k.waiters.shift() as Waiter).resolve(this.#spend(k, now));
    }
    // The global bucket has no whole token left: once the held ones are spent, deny here
    // until one is back, without asking.
    // retryAfterMs counts from when Redis ran the step: about halfway through the round
    // trip. Counting from the reply instead would deny for the return trip too, past the
    // moment the token is back (measured: most of the under-admission of hot keys).
    // Too early is safe: the next call just asks Redis again.
    if (reply.retryAfterMs > 0) k.deniedUntil = (sentAt + now) / 2 + reply.retryAfterMs;
    if (reply.granted < need) {
      for (const w of k.waiters.splice(0)) w.resolve(this.#denial(k, now));
    } else if (k.waiters.length > 0) {
      // These arrived while the call was in flight: one more call, with them counted in it.
      this.#lease(k, now);
    }
    if (k.evicted || this.#closed) this.#queueReturn(k);
  }

  #failed(k: KeyState, err: unknown): void {
    k.inflight = false;
    this.stats.storeFailures++;
    const error = err instanceof StoreUnavailableError ? err : new StoreUnavailableError(String(err), { cause: err });
    this.#breaker?.failure(error.message);
    this.#logStoreFailure((suppressed) =>
      this.#log.error('global store failed; deciding in degraded mode', {
        error: error.message,
        degradedMode: this.#degradedMode,
        client: this.#label(k.id),
        suppressed,
      }),
    );
    const now = this.#clock.nowMs();
    for (const w of k.waiters.splice(0)) {
      try {
        w.resolve(this.#degraded(k, now));
      } catch (e) {
        w.reject(e as Error);
      }
    }
    // A sweep that ran while this call was in flight skipped the lease's return; a lease
    // still held is returned now if it is due (or the key is gone), else at its expiry.
    if (k.registered > 0 && k.tokens >= 1) {
      if (k.evicted || this.#closed || now >= k.expiresAt - this.#sweepMs * 1.5) this.#queueReturn(k);
      else this.#expiries.push({ key: k, expiresAt: k.expiresAt });
    }
  }

  /** A decision without the store. Throws `StoreUnavailableError` in `closed` mode. */
  #degraded(k: KeyState, now: number): Decision {
    this.stats.degradedDecisions++;
    const p = k.policy;
    if (this.#degradedMode === 'closed') throw new StoreUnavailableError('global store unavailable (degraded mode closed)');
    if (this.#degradedMode === 'open') {
      this.stats.failOpenAllowed++;
      return { allowed: true, limit: p.capacity, remaining: p.capacity, resetMs: 0, retryAfterMs: 0, policy: p };
    }
    // This node's share of the limit, so N nodes behind a balancer admit about one limit.
    const n = Math.max(1, this.#liveNodes());
    const share = { capacity: Math.max(1, p.capacity / n), refillPerSec: p.refillPerSec / n };
    const t = takeToken(k.fallback, share, now);
    k.fallback = t.bucket;
    return {
      allowed: t.allowed,
      limit: p.capacity,
      remaining: t.remaining,
      resetMs: t.fullInMs,
      retryAfterMs: t.retryAfterMs,
      policy: p,
    };
  }

  #evicted(k: KeyState): void {
    k.evicted = true;
    this.#queueReturn(k);
  }

  /** Queues the key's unused tokens for return; the pacer sends them (close() at once). */
  #queueReturn(k: KeyState): void {
    if (k.returnQueued || k.tokens < 1 || k.grantedAtMs === 0) return;
    k.returnQueued = true;
    this.#returns.enqueue(k);
    if (this.#timers && !this.#closed && this.#paceTimer === undefined) this.#pace();
  }

  /** Sends one slice of queued returns every 10 ms while any wait: at most `returnsPerSec`. */
  #pace(): void {
    this.#paceTimer = setTimeout(() => {
      this.#paceTimer = undefined;
      void this.flushReturns(this.#returnsPerSlice);
      if (this.#returns.size > 0 && !this.#closed) this.#pace();
    }, 10);
    this.#paceTimer.unref();
  }

  /** Gives the key's unused tokens back to the global bucket; failures are dropped and counted. */
  #giveBack(k: KeyState, now: number): Promise<void> | undefined {
    // A call in flight reports this lease itself; its reply or failure queues the return again.
    if (k.inflight || k.tokens < 1) return undefined;
    const report = this.#report(k, now, false);
    k.tokens = 0;
    k.registered = 0;
    k.grantedAtMs = 0;
    k.expiresAt = 0;
    if (!report) return undefined;
    if (this.#breaker?.isOpen) {
      // Redis is away: the tokens come back at the lease deadline by themselves.
      this.stats.returnFailures++;
      return undefined;
    }
    this.stats.returnCalls++;
    const call = this.#store.lease(k.id, k.policy, { need: 0, extra: 0, leaseTtlMs: this.#ttlMs, report }).then(
      () => undefined,
      (err: unknown) => {
        this.stats.returnFailures++;
        this.#logReturnFailure((suppressed) =>
          this.#log.warn('returning unused tokens failed; they come back at the lease deadline', {
            error: (err as Error).message,
            suppressed,
          }),
        );
      },
    );
    this.#track(call);
    return call;
  }
}
