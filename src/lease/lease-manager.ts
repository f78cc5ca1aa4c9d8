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
import { LRUMap, Queue } from 'mnemonist';
import { type BucketPolicy, type LeaseReply, type LeaseReport, spendGroups } from '../bucket/global-bucket.js';
import { type TokenBucket, takeToken } from '../bucket/token-bucket.js';
import type { CircuitBreaker } from '../resilience/circuit-breaker.js';
import { type Logger, throttled } from '../log/logger.js';
import { type GlobalStore, StoreUnavailableError } from '../store/global-store.js';
import { hashClientId } from '../store/key-name.js';
import type { Clock } from './clock.js';

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
  /** How often expiring leases are returned. Default min(1000, leaseTtlMs / 4). */
  sweepIntervalMs?: number;
  /** Decides whether to ask the store at all; none = always ask. */
  breaker?: CircuitBreaker;
  /** Default `local`. */
  degradedMode?: DegradedMode;
  /** Live nodes sharing the limit (for `local` mode). Default 1. */
  liveNodes?: () => number;
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
  /** Decisions made in degraded mode (store failed or breaker open). */
  degradedDecisions: number;
  /** Of those, requests allowed only because the mode is `open`. */
  failOpenAllowed: number;
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
    degradedDecisions: 0,
    failOpenAllowed: 0,
  };
  readonly #store: GlobalStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #keys: LRUMap<string, KeyState>;
  readonly #expiries = new Queue<Expiry>();
  readonly #ttlMs: number;
  readonly #maxAhead: number;
  readonly #coverMs: number;
  readonly #aheadMs: number;
  readonly #coldTokens: number;
  readonly #sweepMs: number;
  readonly #sweepTimer: NodeJS.Timeout;
  readonly #logStoreFailure = throttled(1000);
  readonly #logReturnFailure = throttled(1000);
  #closed = false;
  /** Lease calls in flight, so close() can wait for them. */
  readonly #pending = new Set<Promise<void>>();
  readonly #breaker: CircuitBreaker | undefined;
  readonly #degradedMode: DegradedMode;
  readonly #liveNodes: () => number;

  constructor(options: LeaseManagerOptions) {
    this.#breaker = options.breaker;
    this.#degradedMode = options.degradedMode ?? 'local';
    this.#liveNodes = options.liveNodes ?? (() => 1);
    this.#store = options.store;
    this.#clock = options.clock;
    this.#log = options.logger;
    this.#keys = new LRUMap(options.maxKeys);
    this.#ttlMs = options.leaseTtlMs;
    this.#maxAhead = options.maxLeaseTokens;
    this.#coverMs = options.leaseCoverMs ?? options.leaseTtlMs * 0.8;
    this.#aheadMs = options.refillAheadMs ?? 50;
    this.#coldTokens = options.coldLeaseTokens ?? 1;
    this.#sweepMs = options.sweepIntervalMs ?? Math.min(1000, options.leaseTtlMs / 4);
    this.#sweepTimer = setInterval(() => this.sweep(), this.#sweepMs);
    this.#sweepTimer.unref();
  }

  /** Client ids held in memory. */
  get size(): number {
    return this.#keys.size;
  }

  /**
   * Decides one request of `clientId` under `policy`. Synchronous when the node
   * holds a token or knows the key is denied; a promise when it must ask the store.
   * Rejects with `StoreUnavailableError` when the store fails.
   */
  check(clientId: string, policy: Policy): Decision | Promise<Decision> {
    const now = this.#clock.nowMs();
    this.stats.decisions++;
    let k = this.#keys.get(clientId);
    if (k === undefined) {
      k = new KeyState(clientId, policy);
      const out = this.#keys.setpop(clientId, k);
      if (out?.evicted) this.#evicted(out.value, now);
    } else {
      k.policy = policy;
    }
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
    if (this.#breaker?.isOpen) return this.#degraded(k, now);
    return new Promise<Decision>((resolve, reject) => {
      k.waiters.push({ resolve, reject });
      if (!k.inflight) this.#lease(k, now);
    });
  }

  /** Returns unused tokens of leases about to expire. Runs on a timer; tests call it. */
  sweep(): void {
    const now = this.#clock.nowMs();
    const horizon = now + this.#sweepMs * 1.5;
    while (this.#expiries.size > 0) {
      const e = this.#expiries.peek() as Expiry;
      if (e.expiresAt > horizon) break;
      this.#expiries.dequeue();
      if (e.key.expiresAt === e.expiresAt) this.#giveBack(e.key, now);
    }
  }

  /** Stops the sweep and returns every unused token, waiting at most for the store's deadline. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    // Lease calls in flight (bounded by the store's deadline) settle first; their
    // replies return what they bring, as the manager is closed.
    await Promise.allSettled([...this.#pending]);
    const now = this.#clock.nowMs();
    const returns: Promise<void>[] = [];
    for (const [, k] of this.#keys) {
      const p = this.#giveBack(k, now);
      if (p) returns.push(p);
    }
    await Promise.all(returns);
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
    const call = this.#store
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
      })
      .finally(() => this.#pending.delete(call));
    this.#pending.add(call);
  }

  #granted(k: KeyState, reply: LeaseReply, need: number, sentAt: number, unusedAtSend: number): void {
    k.inflight = false;
    this.#breaker?.success();
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
    if (k.registered > 0) this.#expiries.enqueue({ key: k, expiresAt: k.expiresAt });

    while (k.waiters.length > 0 && k.tokens >= 1 && now < k.expiresAt) {
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
      this.#lease(k, now);
    }
    if (k.evicted || this.#closed) this.#giveBack(k, now);
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
        client: hashClientId(k.id),
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

  #evicted(k: KeyState, now: number): void {
    k.evicted = true;
    if (!k.inflight) this.#giveBack(k, now);
  }

  /** Gives the key's unused tokens back to the global bucket; failures are dropped and counted. */
  #giveBack(k: KeyState, now: number): Promise<void> | undefined {
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
    return this.#store.lease(k.id, k.policy, { need: 0, extra: 0, leaseTtlMs: this.#ttlMs, report }).then(
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
  }
}
