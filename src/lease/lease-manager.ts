/**
 * @module lease/lease-manager
 *
 * The local tier: answers most requests from tokens this node already holds,
 * and talks to the global store (Redis or memory) only to lease more.
 *
 * How one request is decided (`check`):
 * 1. Find the key's state (`KeyTable`: a two-segment LRU; a first-seen key may
 *    be shed when new keys arrive faster than the node admits them).
 * 2. The key holds a spendable token: spend it, synchronously, and maybe fetch
 *    the next lease in the background (refill-ahead). Most requests end here.
 * 3. The store said the key's bucket is dry: deny here until the time it gave.
 * 4. Otherwise wait for a store call: the one in flight for the key (single
 *    flight), or a new one. When the breaker forbids calls, decide degraded.
 *
 * When a reply comes (`#granted`), the waiters are served from it in arrival
 * order; if it brought fewer tokens than the waiters it was sent for, those are
 * denied; if more requests arrived meanwhile, one more call asks for them. So a
 * request waits on at most two calls, each bounded by the store's deadline. A
 * reply that arrives after the lease it brings has expired (an event loop
 * stalled past the TTL) decides its waiters degraded and gives the tokens back,
 * rather than asking again.
 *
 * Every lease is reported when the key asks again or gives back: the spends,
 * dated, so the store resumes refill from when they happened (`lease.ts`). How
 * much to ask for is `lease-sizing.ts`; when to give unused tokens back is
 * `return-scheduler.ts`; how to decide without the store is `degraded.ts`. The
 * cross-node guarantee itself lives in the store's step (`protocol/lease-step.ts`).
 *
 * `direct` mode (the embedded service, whose store is in this process): no lease
 * at all. Each request is decided by the store's `take` against the bucket
 * itself, synchronously; the key table still bounds the keys and sheds floods of
 * new ones. A lease between two parts of one process buys nothing and costs a
 * lease step, a lease, dated spends and a return per key.
 */
import {
  type BucketStore,
  type Clock,
  type Decision,
  type DecisionSource,
  type DegradedMode,
  type LeaseCallback,
  type LeaseCounters,
  type LeaseReply,
  type LeaseRequest,
  type Policy,
  type StoreGate,
  StoreUnavailableError,
} from '../core/types.js';
import { type Logger, throttled } from '../log/logger.js';
import { degradedDecision } from './degraded.js';
import { KeyState, type Waiter, addWaiter, takeWaiters } from './key-state.js';
import { KeyTable } from './key-table.js';
import { type Lease, applyReply, clearSpends, expireNow, leaseReport, recordSpend } from './lease.js';
import { type SizingOptions, extraTokens, lowWater, nextInterval } from './lease-sizing.js';
import { ReturnScheduler } from './return-scheduler.js';

export type LeaseManagerOptions = {
  store: BucketStore;
  clock: Clock;
  logger: Logger;
  /** Most (policy, client) states held in memory; the least recently used go first. */
  maxKeys: number;
  /** How long a lease may be spent, from the moment its request is sent. */
  leaseTtlMs: number;
  /** Most tokens a lease asks for ahead of demand. */
  maxLeaseTokens: number;
  /** How much demand (in ms at the observed rate) a lease tries to cover. Default 0.8 × leaseTtlMs. */
  leaseCoverMs?: number;
  /** Tokens a lease asks for when the key's rate is not known yet (its first request), at most a tenth of its bucket. Default 4. */
  coldLeaseTokens?: number;
  /** Fetch the next lease when held tokens cover less than this much demand. Default 50. */
  refillAheadMs?: number;
  /** How often expiring leases are queued for return. Default min(1000, leaseTtlMs / 4). */
  sweepIntervalMs?: number;
  /** Run the sweep and the return pacer on timers (default true); tests call `sweep()` and `flushReturns()`. */
  timers?: boolean;
  /** Most return calls per second. Default 2000. */
  returnsPerSec?: number;
  /** First-seen keys admitted per second (burst: 4 s worth); beyond, their first request is shed with a 429. Default 3000. */
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
  /** Longest a request may hold reserved tokens (two store deadlines and a margin); a lease closer to expiry is not reserved from. Default 1000, at most leaseTtlMs / 4. */
  maxHoldMs?: number;
  /** Decide every request with the store's `take`, no leases (a store in this process: embedded mode). Default false. */
  direct?: boolean;
};

/** A store that decides requests itself (`direct` mode). */
type DirectStore = BucketStore & Required<Pick<BucketStore, 'take' | 'settleTake' | 'takeHeld'>>;

/** Counters for tests, health, metrics and benchmarks. */
export type LeaseStats = LeaseCounters & {
  decisions: number;
  localDecisions: number;
};

/**
 * A lease worth a return call: unused tokens to give back, or spends not yet reported
 * (until reported they hold refill back for every node, up to the generation's expiry).
 */
const worthReturning = (lease: Lease) => lease.tokens >= 1 || lease.spends > 0;

/**
 * `<policy>\0`, one string per policy name: a state id made from it shares it, where a
 * template literal would copy the name into every key's id (24 bytes kept per key). One
 * entry per policy name this process has served: as many as the documents ever named.
 */
const idPrefixes = new Map<string, string>();
/** The id a state is kept under: buckets are per (policy, client). NUL cannot occur in a policy name. */
const stateId = (policyName: string, clientId: string): string => {
  let prefix = idPrefixes.get(policyName);
  if (prefix === undefined) {
    prefix = `${policyName}\u0000`;
    idPrefixes.set(policyName, prefix);
  }
  return prefix + clientId;
};

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
    tokensGranted: 0,
    tokensReturned: 0,
    evictions: 0,
  };
  readonly #store: BucketStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #keys: KeyTable<KeyState>;
  readonly #returns: ReturnScheduler<KeyState>;
  readonly #ttlMs: number;
  readonly #sizing: SizingOptions;
  readonly #logStoreFailure = throttled(1000);
  readonly #logReturnFailure = throttled(1000);
  readonly #logShed = throttled(10_000);
  #closed = false;
  /** Store calls in flight (leases and returns), so close() can wait for them. */
  #callsOut = 0;
  /** Resolved when no store call is out (close() waits on them). */
  #whenIdle: (() => void)[] = [];
  readonly #breaker: StoreGate | undefined;
  readonly #degradedMode: DegradedMode;
  readonly #liveNodes: () => number;
  readonly #label: (clientId: string) => string | undefined;
  readonly #maxHoldMs: number;
  /** The store, in `direct` mode (it has `take`, `settleTake` and `takeHeld`); undefined when leasing. */
  readonly #direct: DirectStore | undefined;

  constructor(options: LeaseManagerOptions) {
    if (options.direct) {
      if (!options.store.take || !options.store.settleTake || !options.store.takeHeld) {
        throw new TypeError('LeaseManager: direct mode needs a store with take(), settleTake() and takeHeld()');
      }
      this.#direct = options.store as DirectStore;
    }
    this.#breaker = options.breaker;
    this.#degradedMode = options.degradedMode ?? 'local';
    this.#liveNodes = options.liveNodes ?? (() => 1);
    this.#label = options.clientLabel ?? (() => undefined);
    this.#store = options.store;
    this.#clock = options.clock;
    this.#log = options.logger;
    this.#ttlMs = options.leaseTtlMs;
    // At most a quarter of the TTL: a lease call answers within its deadline, at most a
    // quarter of the TTL (config), so a fresh lease always leaves room for a reservation.
    this.#maxHoldMs = Math.min(options.maxHoldMs ?? 1000, options.leaseTtlMs / 4);
    this.#sizing = {
      maxAhead: options.maxLeaseTokens,
      coverMs: options.leaseCoverMs ?? options.leaseTtlMs * 0.8,
      coldTokens: options.coldLeaseTokens ?? 4,
      aheadMs: options.refillAheadMs ?? 50,
      leaseTtlMs: options.leaseTtlMs,
    };
    this.#keys = new KeyTable<KeyState>({
      maxKeys: options.maxKeys,
      probationShare: options.probationShare ?? 0.2,
      newKeysPerSec: options.newKeysPerSec ?? 3000,
      onEvict: (k) => {
        this.stats.evictions++;
        k.evicted = true;
        // Direct mode holds nothing to give back: the bucket stays in the store.
        if (!this.#direct) this.#returns.queue(k);
      },
    });
    this.#returns = new ReturnScheduler<KeyState>({
      sweepIntervalMs: options.sweepIntervalMs ?? Math.min(1000, options.leaseTtlMs / 4),
      leaseTtlMs: options.leaseTtlMs,
      returnsPerSec: options.returnsPerSec ?? 2000,
      timers: options.timers ?? true,
      clock: () => this.#clock.nowMs(),
      // A lease that ends with its window is not returned at expiry (see #granted), nor one
      // tracked after a failed call: its permits stay counted in the window that ended,
      // which can only make the next window stricter (the sliding window weighs it in).
      expiry: (k) => (k.lease && !k.lease.windowLimited ? k.lease.expiresAt : undefined),
      send: (k, now) => this.#giveBack(k, now),
    });
  }

  /** (Policy, client) states held in memory. */
  get size(): number {
    return this.#keys.size;
  }

  /** Requests waiting on a store call now (counted at scrape time: it walks the keys). */
  get waiting(): number {
    let n = 0;
    for (const k of this.#keys.values()) n += k.waiters.length;
    return n;
  }

  /** Returns queued and not yet sent. */
  get returnsQueued(): number {
    return this.#returns.queued;
  }

  /**
   * Decides one request of `clientId` under `policy`, spending `cost` tokens.
   * Synchronous when the node holds the tokens or knows the key is denied; a
   * promise when it must ask the store, which settles within two store deadlines
   * (the call in flight, then its own). In `closed` degraded mode the promise
   * rejects with `StoreUnavailableError`; this method never throws.
   */
  check(clientId: string, policy: Policy, cost = 1): Decision | Promise<Decision> {
    return this.#decide(clientId, policy, cost, false);
  }

  /**
   * Like `check`, but an allowed decision only reserves the tokens: the caller
   * must `settle` them, spent (`commit`) or not (`release`), once it knows the
   * request's other limits. Reserved tokens are held by nobody else meanwhile.
   * Decisions made in degraded mode are spent at once and cannot be released.
   */
  acquire(clientId: string, policy: Policy, cost: number): Decision | Promise<Decision> {
    return this.#decide(clientId, policy, cost, true);
  }

  /** Settles tokens `acquire` reserved from the lease named `reservation`: spent when `commit`, back to it otherwise. */
  settle(clientId: string, policy: Policy, cost: number, commit: boolean, reservation: number): void {
    const k = this.#keys.peek(stateId(policy.name, clientId));
    if (this.#direct) {
      this.#direct.settleTake(clientId, policy, cost, reservation, commit, k);
      return;
    }
    const lease = k?.lease;
    // The lease the tokens came from is gone (replaced, dropped, evicted): the store counts
    // them until their generation expires, which is what a spend costs; never settle them
    // against another lease (another request's reservation would be taken).
    if (!k || !lease || lease.id !== reservation || lease.reserved < cost) return;
    lease.reserved -= cost;
    if (commit) recordSpend(lease, this.#clock.nowMs(), cost);
    else lease.tokens += cost;
    if (k.evicted || this.#closed) this.#returns.queue(k);
  }

  held(clientId: string, policy: Policy, reservation: number): boolean {
    if (this.#direct) return this.#direct.takeHeld(clientId, policy, reservation, this.#keys.peek(stateId(policy.name, clientId)));
    const lease = this.#keys.peek(stateId(policy.name, clientId))?.lease;
    return lease !== undefined && lease.id === reservation && this.#clock.nowMs() < lease.expiresAt;
  }

  #decide(clientId: string, policy: Policy, cost: number, hold: boolean): Decision | Promise<Decision> {
    const now = this.#clock.nowMs();
    this.stats.decisions++;
    const id = stateId(policy.name, clientId);
    let k = this.#keys.get(id);
    if (k === undefined) {
      k = new KeyState(clientId, policy);
      if (!this.#keys.add(id, k, now)) return this.#shed(policy);
    } else {
      k.policy = policy;
    }
    if (this.#direct) return this.#closed ? Promise.reject(new StoreUnavailableError('rate limiter is shut down')) : this.#take(k, cost, hold);
    k.intervalMs = nextInterval(k.intervalMs, k.lastArrival, now);
    k.lastArrival = now;

    if (k.spendable(now, cost, hold ? this.#maxHoldMs : 0)) {
      this.stats.localDecisions++;
      const d = this.#spend(k, now, cost, hold, 'local');
      if (!k.inflight && k.deniedUntil <= now && !this.#breaker?.isOpen && (k.lease?.tokens ?? 0) < lowWater(k.intervalMs, k.lastGrant, k.policy.refillPerSec, k.globalRemaining, this.#sizing)) {
        this.#lease(k, now);
      }
      return d;
    }
    if (k.deniedUntil > now) {
      this.stats.localDecisions++;
      return this.#denial(k, now, 'local');
    }
    if (!k.inflight && this.#breaker && !this.#breaker.tryCall()) {
      try {
        return this.#degraded(k, now);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (this.#store.leaseSync && !k.inflight) return this.#decideNow(k, now, cost, hold);
    return new Promise<Decision>((resolve, reject) => {
      addWaiter(k, { cost, hold, resolve, reject });
      if (!k.inflight) this.#lease(k, now);
    });
  }

  /** `direct` mode: the request decided by the store's bucket itself. */
  #take(k: KeyState, cost: number, hold: boolean): Decision {
    this.stats.localDecisions++;
    const p = k.policy;
    const t = (this.#direct as DirectStore).take(k.clientId, p, cost, k, hold);
    const d: Decision = {
      allowed: t.allowed,
      limit: p.capacity,
      remaining: t.remaining,
      resetMs: t.resetMs,
      retryAfterMs: t.retryAfterMs,
      policy: p,
      source: 'local',
    };
    if (hold && t.allowed) d.reservation = t.atMs;
    return d;
  }

  /**
   * The store is in this process and answers at once (embedded mode): the request
   * waits on a call that completes before `#lease` returns, so it is decided without
   * a promise (a key's first request costs what a held token does, plus the step).
   */
  #decideNow(k: KeyState, now: number, cost: number, hold: boolean): Decision | Promise<Decision> {
    let decided: Decision | undefined;
    let failed: Error | undefined;
    const w: Waiter = { cost, hold, resolve: (d) => (decided = d), reject: (e) => (failed = e) };
    addWaiter(k, w);
    this.#lease(k, now);
    if (decided) return decided;
    if (failed) return Promise.reject(failed);
    // Not answered by the call (no known path leads here): it waits like any other request.
    return new Promise<Decision>((resolve, reject) => {
      w.resolve = resolve;
      w.reject = reject;
    });
  }

  /**
   * The named policies' limits changed: what this node holds under the old limits goes
   * back (queued for return), and local denials computed from them are forgotten, so the
   * next request of each key leases under the new limits.
   */
  forgetPolicies(names: readonly string[]): void {
    const set = new Set(names);
    const now = this.#clock.nowMs();
    for (const k of this.#keys.values()) {
      if (!set.has(k.policy.name)) continue;
      // A call out now was sent under the old limits: its reply must not make tokens spendable.
      k.forgets++;
      k.deniedUntil = 0;
      k.fallback = undefined;
      if (k.lease) {
        // Expired here from now on: not spent again; the next call for the key, or the
        // paced return, gives its unused tokens back. Reservations still settle.
        expireNow(k.lease, now);
        this.#returns.queue(k);
      }
    }
  }

  /** Forgets what this node holds for `clientId` under every policy (its buckets were reset). */
  forgetClient(clientId: string): void {
    for (const k of this.#keys.values()) {
      if (k.clientId !== clientId) continue;
      k.forgets++;
      k.deniedUntil = 0;
      k.fallback = undefined;
      // The reset bucket does not know this lease: drop it rather than return it.
      if (k.lease) k.lease = undefined;
    }
  }

  /** Queues the returns of leases about to expire. Runs on a timer; tests call it. */
  sweep(): void {
    this.#returns.sweep();
  }

  /** Sends up to `max` queued returns now (all by default) and waits for them. For tests and close(). */
  flushReturns(max?: number): Promise<void> {
    return this.#returns.flush(max);
  }

  #closing: Promise<void> | undefined;

  /** Stops the timers and returns every unused token, waiting for calls in flight (each bounded by the store's deadline). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#returns.stop();
    // Lease calls in flight settle first; their replies queue what they bring, as the manager is closed.
    await this.#idle();
    // Direct mode holds nothing to give back.
    if (!this.#direct) for (const k of this.#keys.values()) this.#returns.queue(k);
    do {
      await this.#returns.flush();
      await this.#idle();
    } while (this.#callsOut > 0 || this.#returns.queued > 0);
  }

  #shed(p: Policy): Decision {
    this.stats.newKeysShed++;
    this.#logShed((suppressed) =>
      this.#log.warn('new client keys arrive faster than allowed: shedding their first requests', { suppressed }),
    );
    return { allowed: false, limit: p.capacity, remaining: 0, resetMs: 0, retryAfterMs: this.#keys.newKeyWaitMs(), policy: p, shed: true, source: 'local' };
  }

  /** The store call, as a promise even if the store throws synchronously (a custom store, a bug). */
  #storeLease(k: KeyState, req: LeaseRequest): Promise<LeaseReply> {
    try {
      return this.#store.lease(k.clientId, k.policy, req);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * The store call with its outcome handed to `done`, once: through the store's `leaseTo`
   * when it has one (no promise per call), else through its promise.
   */
  #storeLeaseTo(k: KeyState, req: LeaseRequest, done: LeaseCallback): void {
    if (this.#store.leaseTo) {
      try {
        this.#store.leaseTo(k.clientId, k.policy, req, done);
      } catch (err) {
        // A store that breaks its contract (must not throw) still answers its caller.
        done(err as Error, undefined);
      }
      return;
    }
    this.#storeLease(k, req).then(
      (reply) => done(undefined, reply),
      (err: unknown) => done(err as Error, undefined),
    );
  }

  /**
   * A store call ended (`#callsOut` counts them, so close() can wait). A counter rather
   * than a set of promises: a lease call costs no extra promise (the set's `.finally`
   * was 0.7 µs per request in the cold-key profile).
   */
  #callEnded(): void {
    if (--this.#callsOut === 0 && this.#whenIdle.length > 0) for (const resolve of this.#whenIdle.splice(0)) resolve();
  }

  #idle(): Promise<void> {
    return this.#callsOut === 0 ? Promise.resolve() : new Promise((resolve) => this.#whenIdle.push(resolve));
  }

  #spend(k: KeyState, now: number, cost: number, hold: boolean, source: DecisionSource): Decision {
    const lease = k.lease as NonNullable<KeyState['lease']>;
    lease.tokens -= cost;
    if (hold) lease.reserved += cost;
    else recordSpend(lease, now, cost);
    const p = k.policy;
    const remaining = this.#remaining(k, now);
    const d: Decision = {
      allowed: true,
      limit: p.capacity,
      remaining,
      resetMs: Math.ceil(((p.capacity - remaining) * 1000) / p.refillPerSec),
      retryAfterMs: 0,
      policy: p,
      source,
    };
    if (hold) d.reservation = lease.id;
    return d;
  }

  #denial(k: KeyState, now: number, source: DecisionSource): Decision {
    const p = k.policy;
    return {
      allowed: false,
      limit: p.capacity,
      remaining: 0,
      resetMs: Math.ceil((p.capacity * 1000) / p.refillPerSec),
      retryAfterMs: Math.max(1, Math.ceil(k.deniedUntil - now)),
      policy: p,
      source,
    };
  }

  /** Held tokens plus the global bucket as last seen, refilled since: an estimate. */
  #remaining(k: KeyState, now: number): number {
    const p = k.policy;
    const global = k.globalRemaining + ((now - k.globalAt) * p.refillPerSec) / 1000;
    return Math.max(0, Math.min(p.capacity, Math.floor((k.lease?.tokens ?? 0) + global)));
  }

  #lease(k: KeyState, now: number): void {
    let need = 0;
    for (const w of k.waiters) need += w.cost;
    if (this.#closed) {
      // A call the breaker granted reports its outcome, even one never sent.
      this.#breaker?.failure('rate limiter is shut down');
      for (const w of takeWaiters(k)) w.reject(new StoreUnavailableError('rate limiter is shut down'));
      return;
    }
    const report = k.lease ? leaseReport(k.lease, now, true) : undefined;
    // The spends are handed over: the next report starts empty.
    if (k.lease) clearSpends(k.lease);
    const unusedAtSend = report?.keep ? report.unused : 0;
    // A lease that could not be kept (expired here) is given back by this report.
    if (report && !report.keep) k.lease = undefined;
    k.inflight = true;
    this.stats.leaseCalls++;
    if (need === 0) this.stats.aheadCalls++;
    const extra = extraTokens(k.intervalMs, k.policy.refillPerSec, k.globalRemaining, need, this.#sizing);
    const forgets = k.forgets;
    const req = { need, extra, leaseTtlMs: this.#ttlMs, report, memo: k };
    if (this.#store.leaseSync) {
      let reply: LeaseReply;
      try {
        reply = this.#store.leaseSync(k.clientId, k.policy, req);
      } catch (err) {
        this.#failed(k, err);
        return;
      }
      this.#replied(k, reply, need, now, unusedAtSend, forgets);
      return;
    }
    this.#callsOut++;
    // The callback does not throw (`#replied` and `#failedSafely` log a bug instead).
    this.#storeLeaseTo(k, req, (err, reply) => {
      this.#callEnded();
      // The spends of a failed report are not sent again: Redis may have applied them
      // and only the reply was lost, and counting them twice would over-admit. Unsent,
      // they only hold refill back until the lease's generation expires.
      if (err !== undefined) this.#failedSafely(k, err);
      else this.#replied(k, reply as LeaseReply, need, now, unusedAtSend, forgets);
    });
  }

  /** `#failed`, for the store's callback: a bug in it is logged, never thrown into the store. */
  #failedSafely(k: KeyState, err: unknown): void {
    try {
      this.#failed(k, err);
    } catch (bug) {
      this.#log.error('lease reply handling failed', { error: (bug as Error).message });
    }
  }

  /** `#granted`, and a bug in it must not leave requests waiting forever (nor throw). */
  #replied(k: KeyState, reply: LeaseReply, need: number, sentAt: number, unusedAtSend: number, forgets: number): void {
    try {
      this.#granted(k, reply, need, sentAt, unusedAtSend, forgets);
    } catch (err) {
      this.#failedSafely(k, err);
    }
  }

  #granted(k: KeyState, reply: LeaseReply, need: number, sentAt: number, unusedAtSend: number, forgets: number): void {
    k.inflight = false;
    // The degraded-mode bucket (k.fallback) is kept: a Redis that fails every other call must
    // not hand out a fresh share each time. Left alone, it refills by itself.
    const now = this.#clock.nowMs();
    k.lease = applyReply(k.lease, reply, sentAt, unusedAtSend, this.#ttlMs);
    this.stats.tokensGranted += reply.granted;
    k.lastGrant = reply.granted;
    k.globalRemaining = reply.remaining;
    k.globalAt = now;
    // A lease that ends with its window is not returned on expiry: its permits die with the
    // window anyway, and returning every key's lease just before the same aligned instant
    // would load Redis exactly when every key leases again.
    if (k.lease && !k.lease.windowLimited) this.#returns.track(k, k.lease.expiresAt);
    if (forgets !== k.forgets) {
      // Sent under limits that have changed since: what it brought goes back unspent, and the
      // requests waiting on it ask again under the new limits.
      this.#breaker?.success();
      if (k.lease) {
        expireNow(k.lease, now);
        this.#returns.queue(k);
      }
      if (k.waiters.length > 0) this.#lease(k, now);
      return;
    }
    if (k.lease && now >= k.lease.expiresAt && reply.lifeMs < this.#ttlMs && now - sentAt < this.#ttlMs && !k.windowEnded) {
      // Not late: the window the permits were counted in ended while the reply travelled.
      // They die with it; the requests waiting ask again (once), in the new window.
      this.#breaker?.success();
      k.lease = undefined;
      k.windowEnded = true;
      if (k.waiters.length > 0) this.#lease(k, now);
      return;
    }
    k.windowEnded = false;
    if (k.lease && now >= k.lease.expiresAt) {
      this.stats.lateReplies++;
      this.#failed(k, new StoreUnavailableError(`lease reply arrived ${Math.round(now - sentAt)} ms after it was sent, past the lease TTL`));
      return;
    }
    this.#breaker?.success();

    // In arrival order: a request that does not fit waits for the next call, and so do
    // those behind it.
    while (k.waiters.length > 0) {
      const w = k.waiters[0] as Waiter;
      if (!k.spendable(now, w.cost, w.hold ? this.#maxHoldMs : 0)) break;
      // The last one out leaves the key no array (see key-state.ts).
      if (k.waiters.length === 1) takeWaiters(k);
      else k.waiters.shift();
      w.resolve(this.#spend(k, now, w.cost, w.hold, 'global'));
    }
    // The global bucket has no whole token left: once the held ones are spent, deny here
    // until one is back, without asking.
    // retryAfterMs counts from when Redis ran the step: about halfway through the round
    // trip. Counting from the reply instead would deny for the return trip too, past the
    // moment the token is back (measured: most of the under-admission of hot keys).
    // Too early is safe: the next call just asks Redis again.
    if (reply.retryAfterMs > 0) k.deniedUntil = (sentAt + now) / 2 + reply.retryAfterMs;
    if (reply.granted < need) {
      for (const w of takeWaiters(k)) w.resolve(this.#denial(k, now, 'global'));
    } else if (k.waiters.length > 0) {
      // These arrived while the call was in flight: one more call, with them counted in it.
      this.#lease(k, now);
    }
    if (k.evicted || this.#closed) this.#returns.queue(k);
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
        client: this.#label(k.clientId),
        suppressed,
      }),
    );
    const now = this.#clock.nowMs();
    for (const w of takeWaiters(k)) {
      try {
        w.resolve(this.#degraded(k, now));
      } catch (e) {
        w.reject(e as Error);
      }
    }
    // A sweep that ran while this call was in flight skipped the lease's return; a lease
    // still held goes back now if it is due (or the key is gone), else at its expiry.
    if (k.lease && worthReturning(k.lease)) {
      if (k.evicted || this.#closed || this.#returns.isDue(k.lease.expiresAt)) this.#returns.queue(k);
      else this.#returns.track(k, k.lease.expiresAt);
    }
  }

  #degraded(k: KeyState, now: number): Decision {
    this.stats.degradedDecisions++;
    const d = degradedDecision(this.#degradedMode, k, this.#liveNodes(), now);
    if (this.#degradedMode === 'open') this.stats.failOpenAllowed++;
    return d;
  }

  /** Gives the key's unused tokens back to the global bucket; failures are dropped and counted. */
  #giveBack(k: KeyState, now: number): Promise<void> | undefined {
    // A call in flight reports this lease itself; its reply or failure queues the return again.
    // Reserved tokens stay counted in the store (the report leaves them out).
    if (k.inflight || !k.lease || !worthReturning(k.lease)) return undefined;
    const report = leaseReport(k.lease, now, false);
    k.lease = undefined;
    if (this.#breaker?.isOpen) {
      // Redis is away: the tokens come back when their generation expires.
      this.stats.returnFailures++;
      return undefined;
    }
    this.stats.returnCalls++;
    this.stats.tokensReturned += report.unused;
    const call = this.#storeLease(k, { need: 0, extra: 0, leaseTtlMs: this.#ttlMs, report, memo: k }).then(
      () => undefined,
      (err: unknown) => {
        this.stats.returnFailures++;
        this.#logReturnFailure((suppressed) =>
          this.#log.warn('returning unused tokens failed; they come back when their lease generation expires', {
            error: (err as Error).message,
            suppressed,
          }),
        );
      },
    );
    this.#callsOut++;
    return call.then(() => this.#callEnded());
  }
}
