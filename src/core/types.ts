/**
 * @module core/types
 *
 * The vocabulary every layer shares: policies, decisions, the clock, the lease
 * protocol's messages, the ports to the stores, and the errors. It imports
 * nothing, so no arrow can run from here back up the layers (see the import
 * graph in the README).
 */

/** The algorithms a policy can name. */
export type AlgorithmName = 'token_bucket' | 'gcra' | 'fixed_window' | 'sliding_window';

/**
 * What every algorithm's parameters say: `capacity`, the most permits a client can
 * use at once (the document's `limit`), and `refillPerSec`, its average rate
 * (`limit / windowSec`). The lease tier sizes leases and estimates `remaining`
 * from these two; the algorithm decides.
 */
type RateParams = {
  readonly capacity: number;
  readonly refillPerSec: number;
};

/** A token bucket: `capacity` tokens, refilled continuously at `refillPerSec`. */
export type TokenBucketParams = RateParams & { readonly algorithm: 'token_bucket' };

/** GCRA: one request per emission interval (1 / `refillPerSec`) on average, bursts up to `capacity`. */
export type GcraParams = RateParams & { readonly algorithm: 'gcra' };

/** At most `capacity` requests per window of `windowMs`, windows aligned to the store's clock. */
export type FixedWindowParams = RateParams & { readonly algorithm: 'fixed_window'; readonly windowMs: number };

/** The sliding window counter: this window's count plus the previous one's, weighted by its overlap. */
export type SlidingWindowParams = RateParams & { readonly algorithm: 'sliding_window'; readonly windowMs: number };

/** An algorithm and its parameters. */
export type LimitParams = TokenBucketParams | GcraParams | FixedWindowParams | SlidingWindowParams;

/** A named limit; the name is what the RateLimit headers show and what buckets are kept per. */
export type Policy = LimitParams & { readonly name: string };

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
  /** How it was decided: from held tokens, after a store call, or without the store. */
  source: DecisionSource;
  /** Set by `MultiLimiter.acquire` when it reserved tokens: the lease they belong to (pass it to `settle`). */
  reservation?: number;
};

/** `local`: held tokens or a known-dry bucket; `global`: after a store call; `degraded`/`fail_open`: without the store. */
export type DecisionSource = 'local' | 'global' | 'degraded' | 'fail_open';

/** Anything that decides requests; the lease manager is one. */
export interface Limiter {
  /** Decides one request costing `cost` tokens (default 1). */
  check(clientId: string, policy: Policy, cost?: number): Decision | Promise<Decision>;
}

/**
 * A limiter that can check one request against several limits all or nothing:
 * `acquire` reserves (an allowed decision holds the tokens), `settle` spends or
 * releases them once every limit has answered.
 */
export interface MultiLimiter extends Limiter {
  acquire(clientId: string, policy: Policy, cost: number): Decision | Promise<Decision>;
  settle(clientId: string, policy: Policy, cost: number, commit: boolean, reservation: number): void;
  /**
   * Whether the tokens reserved as `reservation` may still be spent now. A lease that
   * ends with its window is reserved from until its last moment, so after waiting on
   * another limit the caller checks before committing.
   */
  held(clientId: string, policy: Policy, reservation: number): boolean;
}

/** What the lease manager counts, for health and metrics. */
export type LeaseCounters = {
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
  /** First requests of new keys shed because new keys arrived faster than allowed. */
  newKeysShed: number;
  /** Tokens the store granted this node, and unused ones it gave back. */
  tokensGranted: number;
  tokensReturned: number;
  /** Key states the LRU pushed out. */
  evictions: number;
};

/** What a node does for requests that need Redis while Redis cannot answer. */
export type DegradedMode = 'local' | 'open' | 'closed';

/** Time as a dependency: monotonic milliseconds (not epoch time). */
export interface Clock {
  nowMs(): number;
}

/** What a node says about the lease it holds when it asks again or gives back. */
export type LeaseReport = {
  /** `grantedAtMs` from the reply that granted (or last renewed) the lease. */
  grantedAtMs: number;
  /** Tokens registered to this lease (granted plus kept). */
  registered: number;
  /** Tokens of it not spent yet. */
  unused: number;
  /**
   * The spends since the last report, oldest first, as [ms between the group's
   * latest spend and sending the report, tokens spent in the group].
   */
  spends: ReadonlyArray<readonly [number, number]>;
  /** true: the node keeps its unused tokens (renewal); false: it gives them back. */
  keep: boolean;
};

export type LeaseRequest = {
  /** Tokens wanted now for requests that are waiting; granted in full if available. */
  need: number;
  /** Tokens wanted ahead of demand; granted at most half of what is left after `need`. */
  extra: number;
  leaseTtlMs: number;
  report?: LeaseReport | undefined;
  /** The caller's state for this (client, policy), where the store keeps what it derives from them between calls. */
  memo?: StoreMemo | undefined;
};

/**
 * What a store may remember per key between calls: its name for the bucket (Redis: a
 * keyed hash of the client id, ~2 µs to compute; memory: the map key, built and hashed
 * once), valid for the policy object it was made for.
 */
export type StoreMemo = {
  storeKey?: string | undefined;
  storeKeyPolicy?: Policy | undefined;
  /** A store in this process: the bucket object itself, so a direct `take` skips the map lookup (the store checks it is still live). */
  storeBucket?: unknown;
};

/**
 * What `BucketStore.take` answers: one request decided against the client's bucket itself.
 * The store may hand back the same object on every call: read it before the next one.
 */
export type TakeResult = {
  allowed: boolean;
  /** Whole permits left after this take. */
  remaining: number;
  /** When denied: ms until a permit is back (at least 1); 0 when allowed. */
  retryAfterMs: number;
  /** ms until the bucket is full again if the client stops now. */
  resetMs: number;
  /** Store time of the take: names a reservation for `settleTake` and `takeHeld`. */
  atMs: number;
};

export type LeaseReply = {
  granted: number;
  /** Whether the reported lease's unused tokens stay registered (renewal accepted). */
  kept: boolean;
  /** Store time of this step; identifies the lease in later reports. */
  grantedAtMs: number;
  /** Whole tokens left in the global bucket after the grant. */
  remaining: number;
  /** When less than one whole token is left after the grant: ms until one is back; else 0. */
  retryAfterMs: number;
  /**
   * How long, from the store's time of the step, the permits granted or kept may be
   * spent: the lease TTL, or less when the algorithm's window ends sooner (a permit
   * counted in one window is never spent in the next).
   */
  lifeMs: number;
};

/** Hands over a lease call's outcome: its error (a `StoreUnavailableError`), or its reply. */
export type LeaseCallback = (err: Error | undefined, reply: LeaseReply | undefined) => void;

/** Port: the global buckets, leased from. */
export interface BucketStore {
  /** `global` when buckets are shared through Redis, `local-only` when they live in this process. */
  readonly mode: 'global' | 'local-only';
  /**
   * One atomic step of the client's global bucket under `limit`.
   * Rejects with `StoreUnavailableError` when the store cannot answer in time.
   */
  lease(clientId: string, policy: Policy, req: LeaseRequest): Promise<LeaseReply>;
  /**
   * The same step answered synchronously, for a store in this process (memory): the
   * lease manager then decides a key's first request without a promise. Optional;
   * must not throw.
   */
  leaseSync?(clientId: string, policy: Policy, req: LeaseRequest): LeaseReply;
  /**
   * `lease`, with the outcome handed to `done` instead of a promise: a key's first request
   * then waits on one promise (its own) rather than three (the store's, the caller's
   * reaction to it, its own), and allocates none of theirs. Optional; must not throw;
   * calls `done` exactly once.
   */
  leaseTo?(clientId: string, policy: Policy, req: LeaseRequest, done: LeaseCallback): void;
  /**
   * Decides one request of `cost` permits against the client's bucket itself, with no
   * lease: for a store in this process (memory), where leasing would only be bookkeeping
   * between two parts of one process (the lease manager's `direct` mode). Optional; must
   * not throw.
   */
  take?(clientId: string, policy: Policy, cost: number, memo?: StoreMemo, reserve?: boolean): TakeResult;
  /**
   * Settles `cost` permits a `take` with `reserve` took at `atMs`: spent (`commit`), or put
   * back, but only if the bucket has not moved since (while they were out it refilled as
   * if they were gone; putting them back later could exceed the capacity): otherwise they
   * stay spent. A settle beyond what is reserved does nothing.
   */
  settleTake?(clientId: string, policy: Policy, cost: number, atMs: number, commit: boolean, memo?: StoreMemo): void;
  /** Whether permits reserved by a `take` at `atMs` may still be spent: the bucket has not moved since and their window (if any) has not ended. */
  takeHeld?(clientId: string, policy: Policy, atMs: number, memo?: StoreMemo): boolean;
}

/** Port: the global buckets as operators see them (the admin API). */
export interface BucketAdmin {
  /** The bucket as stored, or undefined when it is fresh (full, nothing leased). */
  peek(clientId: string, policy: Policy): Promise<BucketView | undefined>;
  /** Forgets the bucket: it starts full. */
  reset(clientId: string, policy: Policy): Promise<void>;
}

/** A stored bucket as an operator sees it. */
export type BucketView = {
  /** Whole permits the bucket could grant at `updatedMs`, not counting leased ones. */
  available: number;
  leased: number;
  updatedMs: number;
};

/** Port: which nodes are alive (degraded `local` mode divides limits by their number). */
export interface FleetStore {
  /** Records this node as alive for `ttlMs`; resolves how many nodes are (this one included). */
  heartbeat(nodeId: string, ttlMs: number): Promise<number>;
  /** Removes this node from the live count (best effort, on shutdown). */
  leave(nodeId: string): Promise<void>;
}

/** Port: whether the store answers at all. */
export interface StoreHealth {
  /** Resolves true once the store can take commands, false if it cannot within `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean>;
  /** Whether the store answers right now (bounded by the store's deadline). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** A version of the policy document, as stored. */
export type StoredPolicy = { version: number; document: unknown };

/** One change in the audit history (policy or registry). */
export type AuditEntry = {
  /** The policy version the change made (registry changes: the version current then). */
  version: number;
  atMs: number;
  /** The admin token's name, never its secret. */
  actor: string;
  kind: 'policy' | 'client';
  summary: string;
};

/** A client's registry record (stored under the keyed hash of its API key). */
export type ClientRecord = { tier: string; allow: boolean; deny: boolean };

/** A change another node made, as announced to every node. */
export type PolicyChange = { kind: 'policy'; version: number } | { kind: 'client'; keyHash: string };

/**
 * Port: where the policy document, its versions, the audit history and the
 * client registry live (Redis for a fleet, a local file for one process).
 * Every call rejects with `StoreUnavailableError` when the store cannot answer.
 */
export interface PolicyStore {
  current(): Promise<StoredPolicy | undefined>;
  /** The current version number, 0 when none (cheap: for the periodic check). */
  currentVersion(): Promise<number>;
  atVersion(version: number): Promise<StoredPolicy | undefined>;
  /** Compare and set: stores `document` as version `expected + 1` if `expected` is current. */
  put(document: unknown, expected: number, audit: Omit<AuditEntry, 'version' | 'atMs' | 'kind'>): Promise<{ ok: true; version: number } | { ok: false; current: number }>;
  history(limit: number): Promise<AuditEntry[]>;
  clients(): Promise<Map<string, ClientRecord>>;
  /** A counter bumped by every registry change (cheap: for the periodic check). */
  clientsVersion(): Promise<number>;
  client(keyHash: string): Promise<ClientRecord | undefined>;
  /** Sets (or with `undefined`, deletes) a record; announced to every node. */
  setClient(keyHash: string, record: ClientRecord | undefined, audit: Omit<AuditEntry, 'version' | 'atMs' | 'kind'>): Promise<void>;
  /** Adds an entry to the audit history (an action that changes no document or record, like a usage reset). */
  audit(entry: Omit<AuditEntry, 'version' | 'atMs'>): Promise<void>;
  /** Calls `onChange` for every change announced by any node; returns the unsubscribe. */
  subscribe(onChange: (change: PolicyChange) => void): Promise<() => Promise<void>>;
}

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

/** The store did not answer within its deadline, refused the connection, or replied nonsense. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
