/**
 * @module store/redis-store
 *
 * Global buckets in Redis (one server or a Redis Cluster), shared by every node.
 * One script (`lua/protocol.lua` after the algorithm's part) does whole steps atomically; scripts are
 * registered with ioredis `defineCommand`, which sends EVALSHA and falls back to
 * EVAL on NOSCRIPT, so they survive SCRIPT FLUSH, restarts and failovers.
 *
 * Every call is bounded, whatever ioredis does underneath: the offline queue is
 * off (a command while disconnected fails at once instead of waiting for a
 * reconnect), and each call has a deadline of its own (`commandTimeoutMs`), which
 * also covers Cluster redirections, retries and the EVALSHA-then-EVAL fallback:
 * lease batches share one deadline timer (`#inFlight`), other calls race a timer.
 * ioredis's own per-command `commandTimeout` is not set: it would only duplicate
 * those deadlines, at a Node timer per command. Failures and replies of the wrong
 * shape become `StoreUnavailableError`.
 *
 * Batching: the lease calls made within one event-loop turn (requests read in
 * one poll phase, returns, refill-ahead) wait for `setImmediate` and travel as
 * one script call per algorithm, up to 256 keys each: one round trip, one
 * command, however many keys. Each call still settles within one deadline of
 * being made.
 *
 * Cluster: every key of a client shares a hash tag (`rl:{hash}`), as does the
 * fleet key (`rl:{fleet}`). A batch is grouped by the master serving each key's
 * slot (as ioredis last knew it); the script declares only the first key, so
 * Cluster routes it and CROSSSLOT cannot happen, and its allow-cross-slot-keys
 * flag lets it touch the others on that node. A batch that fails there (a slot
 * moved, a master died) is sent again key by key, which ioredis redirects.
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis, type RedisOptions, ReplyError } from 'ioredis';
import { ALGORITHMS, algorithmOf } from '../algorithms/registry.js';
import {
  type AlgorithmName,
  type BucketAdmin,
  type BucketStore,
  type BucketView,
  type FleetStore,
  type LeaseCallback,
  type LeaseReply,
  type LeaseRequest,
  type Policy,
  type StoreHealth,
  StoreUnavailableError,
} from '../core/types.js';
import { perObject } from '../core/per-object.js';
import { MAX_SPEND_GROUPS } from '../protocol/lease-step.js';
import { decodeBucketValue } from './bucket-format.js';
import { type KeyHasher, bucketKeyName, createKeyHasher, memoizedName } from './key-name.js';
import { HEARTBEAT_SCRIPT, leaseScript } from './lua-scripts.js';

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;
/** A lease call waiting to be sent with the others of its event-loop turn. */
type PendingLease = {
  key: string;
  /** The key's arguments, comma-separated numbers (lua/protocol.lua unpacks them). */
  packed: string;
  /** Its caller's callback; undefined once called (see `settle`). */
  done: LeaseCallback | undefined;
  /** performance.now() by which it must settle. */
  deadlineMs: number;
};

/**
 * Hands `p` its outcome, once: later outcomes (a batch's bug path after a reply) are
 * dropped, as a promise would drop them. A callback that throws is a bug of its caller
 * and must not keep the batch's other calls waiting.
 */
function settle(p: PendingLease, err: Error | undefined, reply?: LeaseReply): void {
  const done = p.done;
  if (done === undefined) return;
  p.done = undefined;
  try {
    done(err, reply);
  } catch {
    // the caller's bug; the lease manager's callbacks do not throw
  }
}

/** A lease batch waiting for its reply: by `deadlineMs` (performance.now()) it is failed as timed out. */
type InFlight = { deadlineMs: number; fail: (err: unknown, timedOut: boolean) => void };
/** Cluster refusals that mean the script ran no step: the batch may be sent again. */
const NOTHING_RAN = /MOVED|ASK|TRYAGAIN|CLUSTERDOWN|CROSSSLOT|non local key/;
/** Most keys one script call carries (its reply and arguments stay small). */
const MAX_BATCH = 256;

const leaseCommand = (algorithm: AlgorithmName) => `rlLease_${algorithm}`;

/** The algorithm's parameters of a policy, comma-separated, cached per policy object. */
const algorithmParams = perObject((policy: Policy): string => algorithmOf(policy).luaArgs(policy).join(','));

export type RedisStoreOptions = {
  /** A single Redis: `redis://host:port`. */
  url?: string;
  /** A Redis Cluster: seed nodes. Takes precedence over `url`. */
  clusterNodes?: { host: string; port: number }[];
  /** Deadline of every Redis call, in ms. */
  commandTimeoutMs: number;
  /** Prefix of every key this store writes. */
  keyPrefix: string;
  /** Extra ioredis options (tests use them to tune reconnects). */
  redisOptions?: RedisOptions;
  /** Lease scripts' sources by algorithm, replacing the assembled ones; tests pass an outdated one. */
  leaseScripts?: Partial<Record<AlgorithmName, string>>;
  /** Names client ids in Redis keys; default unkeyed SHA-256 (see `createKeyHasher`). */
  hashKey?: KeyHasher;
  /** Told of every call: its command, duration and failure kind (metrics). */
  onCall?: (command: string, seconds: number, error?: 'timeout' | 'connection' | 'reply' | 'other') => void;
};

export class RedisStore implements BucketStore, BucketAdmin, FleetStore, StoreHealth {
  readonly mode = 'global' as const;
  readonly redis: Redis | Cluster;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #hashKey: KeyHasher;
  /** A bucket's key name (made once, so a lease call allocates no closure for `memoizedName`). */
  readonly #bucketName = (clientId: string, policy: Policy): string => bucketKeyName(this.#prefix, clientId, policy, this.#hashKey);
  readonly #onCall: NonNullable<RedisStoreOptions['onCall']>;
  /** The lease script's ioredis command, by algorithm. */
  readonly #leaseScripts = new Map<AlgorithmName, ScriptCall>();

  constructor(options: RedisStoreOptions) {
    this.#prefix = options.keyPrefix;
    this.#hashKey = options.hashKey ?? createKeyHasher();
    const onCall = options.onCall;
    // A throwing observer (a metrics bug) must not turn a lease reply into a failure, nor
    // throw out of the reply and deadline handlers of `#send`.
    this.#onCall = onCall
      ? (command, seconds, error) => {
          try {
            onCall(command, seconds, error);
          } catch {
            // ignored: metrics are not worth a request
          }
        }
      : () => {};
    this.#timeoutMs = options.commandTimeoutMs;
    const perNode: RedisOptions = {
      // No `commandTimeout`: every call has its own deadline (module header).
      connectTimeout: Math.max(1000, options.commandTimeoutMs),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(50 * times, 500),
      ...options.redisOptions,
    };
    if (options.clusterNodes && options.clusterNodes.length > 0) {
      this.redis = new Cluster(options.clusterNodes, {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        redisOptions: perNode,
        clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
        retryDelayOnClusterDown: 50,
        retryDelayOnFailover: 50,
        maxRedirections: 3,
        slotsRefreshTimeout: Math.max(1000, options.commandTimeoutMs),
        // A master that died leaves its slots pointing at a dead socket until the slot map
        // is read again; failed calls also ask for a refresh (see #call).
        slotsRefreshInterval: 1000,
      });
    } else if (options.url) {
      // No auto-pipelining: lease calls are already batched per event-loop turn (one script
      // call each), and ioredis's pipeline per turn only added a Pipeline object and its
      // promises to every batch.
      this.redis = new Redis(options.url, perNode);
    } else {
      throw new TypeError('RedisStore: url or clusterNodes is required');
    }
    // Connection errors are reported through failed calls, the circuit breaker and
    // /health; without a listener ioredis would print every reconnect attempt.
    this.redis.on('error', () => {});
    this.redis.on('node error', () => {});
    for (const algorithm of Object.keys(ALGORITHMS) as AlgorithmName[]) {
      const source = options.leaseScripts?.[algorithm] ?? leaseScript(algorithm);
      // Declares one key (the batch's first, for routing); see lua/protocol.lua.
      this.redis.defineCommand(leaseCommand(algorithm), { lua: source, numberOfKeys: 1 });
      this.#leaseScripts.set(algorithm, this.#script(leaseCommand(algorithm)));
    }
    this.redis.defineCommand('rlHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT_SCRIPT });
  }

  #script(name: string): ScriptCall {
    return (this.redis as unknown as Record<string, ScriptCall>)[name] as ScriptCall;
  }

  /** Runs one Redis call with the hard deadline, mapping every failure to StoreUnavailableError. */
  async #call<T>(what: string, run: () => Promise<T>, timeoutMs = this.#timeoutMs): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(this.#noAnswer));
      }, timeoutMs);
    });
    const t0 = performance.now();
    try {
      const r = await Promise.race([run(), deadline]);
      this.#onCall(what, (performance.now() - t0) / 1000);
      return r;
    } catch (err) {
      throw this.#callFailed(what, t0, err, timedOut);
    } finally {
      clearTimeout(timer);
    }
  }

  get #noAnswer(): string {
    return `no answer within ${this.#timeoutMs} ms`;
  }

  /** A failed call: counted by kind, the Cluster slot map refreshed, the error as StoreUnavailableError. */
  #callFailed(what: string, t0: number, err: unknown, timedOut: boolean): StoreUnavailableError {
    const kind = timedOut ? 'timeout' : err instanceof ReplyError ? 'reply' : /connect|closed|writeable|ready|ECONN/i.test((err as Error).message) ? 'connection' : 'other';
    this.#onCall(what, (performance.now() - t0) / 1000, kind);
    if (this.redis instanceof Cluster) this.#refreshSlots();
    return new StoreUnavailableError(`redis ${what} failed: ${(err as Error).message}`, { cause: err });
  }

  #lastSlotsRefresh = 0;
  /** After a failover the slot map is stale until read again: at most one refresh per 500 ms. */
  #refreshSlots(): void {
    const now = Date.now();
    if (now - this.#lastSlotsRefresh < 500) return;
    this.#lastSlotsRefresh = now;
    (this.redis as Cluster).refreshSlotsCache();
  }

  /**
   * One key's step. Calls made within one event-loop turn travel together: one script call
   * per algorithm (per Cluster node), up to MAX_BATCH keys each. Each settles within one
   * deadline of being made, whatever happens to the others.
   */
  lease(clientId: string, policy: Policy, req: LeaseRequest): Promise<LeaseReply> {
    return new Promise<LeaseReply>((resolve, reject) => this.leaseTo(clientId, policy, req, (err, reply) => (err ? reject(err) : resolve(reply as LeaseReply))));
  }

  /** `lease`, its outcome handed to `done` (the lease manager's path: no promise per call). */
  leaseTo(clientId: string, policy: Policy, req: LeaseRequest, done: LeaseCallback): void {
    try {
      this.#enqueue(clientId, policy, req, done);
    } catch (err) {
      done(new StoreUnavailableError(`lease call failed: ${(err as Error).message}`, { cause: err }), undefined);
    }
  }

  #enqueue(clientId: string, policy: Policy, req: LeaseRequest, done: LeaseCallback): void {
    const r = req.report;
    // One argument per key, not a dozen: ioredis's per-argument work (conversion, length,
    // framing) was most of the client's cost of a cold key (profiled: ioredis 16.9 µs/req).
    let packed = `${algorithmParams(policy)},${req.leaseTtlMs},${req.need},${req.extra}`;
    packed += r ? `,1,${r.grantedAtMs},${r.registered},${r.unused},${r.keep ? 1 : 0}` : ',0,0,0,0,0';
    const groups = r ? r.spends : [];
    const n = Math.min(groups.length, MAX_SPEND_GROUPS);
    packed += `,${n}`;
    for (let i = 0; i < n; i++) {
      const [age, count] = groups[i] as readonly [number, number];
      packed += `,${Math.max(0, Math.floor(age))},${count}`;
    }
    // A keyed hash (~2 µs): computed once per key and policy object, kept in the caller's memo.
    const key = memoizedName(req.memo, clientId, policy, this.#bucketName);
    let queue = this.#pending.get(policy.algorithm);
    if (!queue) {
      queue = [];
      this.#pending.set(policy.algorithm, queue);
    }
    queue.push({ key, packed, done, deadlineMs: performance.now() + this.#timeoutMs });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** Lease calls waiting for the end of this event-loop turn, by algorithm. */
  readonly #pending = new Map<AlgorithmName, PendingLease[]>();
  #flushScheduled = false;

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    for (const [algorithm, queue] of this.#pending) {
      if (queue.length === 0) continue;
      this.#pending.set(algorithm, []);
      try {
        for (const group of this.#byNode(queue)) {
          for (let i = 0; i < group.length; i += MAX_BATCH) this.#send(algorithm, group.slice(i, i + MAX_BATCH), true);
        }
      } catch (err) {
        // A bug must not leave calls waiting: each settles once (later settles are no-ops).
        for (const p of queue) settle(p, new StoreUnavailableError(`lease batch failed: ${(err as Error).message}`, { cause: err }));
      }
    }
  };

  /** On Cluster, the calls grouped by the node that owns each key's slot (as last known); else one group. */
  #byNode(queue: PendingLease[]): PendingLease[][] {
    if (!(this.redis instanceof Cluster)) return [queue];
    const slots = this.redis.slots;
    const groups = new Map<string, PendingLease[]>();
    for (const p of queue) {
      const node = slots[calculateSlot(p.key)]?.[0] ?? `unknown:${p.key}`;
      const g = groups.get(node);
      if (g) g.push(p);
      else groups.set(node, [p]);
    }
    return [...groups.values()];
  }

  /**
   * One script call for `batch`. On Cluster, a batch refused before any step ran (MOVED,
   * ASK, TRYAGAIN, a key the node does not serve: a slot moved and the map is stale) is
   * sent again key by key, which ioredis redirects; within each call's own deadline.
   */
  #send(algorithm: AlgorithmName, batch: PendingLease[], mayRetry: boolean): void {
    // One declared key, the first: ioredis and Redis Cluster route (and refuse CROSSSLOT)
    // by declared keys; the script reads the batch's keys from its arguments.
    const n = batch.length;
    const args: (string | number)[] = new Array(2 + 2 * n);
    args[0] = (batch[0] as PendingLease).key;
    args[1] = n;
    let deadlineMs = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const p = batch[i] as PendingLease;
      args[2 + i] = p.key;
      args[2 + n + i] = p.packed;
      if (p.deadlineMs < deadlineMs) deadlineMs = p.deadlineMs;
    }
    const t0 = performance.now();
    // Settled once, by whichever comes first: the reply, the failure or the deadline. Not
    // through `#call`: its async function alone was 2.6 of the store's 12.9 µs per request
    // (sampled at 1,200 req/s of fresh keys), before its deadline promise and Promise.race.
    let settled = false;
    const fail = (err: unknown, timedOut: boolean) => {
      if (settled) return;
      settled = true;
      this.#inFlight.delete(flight);
      const error = this.#callFailed('lease', t0, err, timedOut);
      // Refused because a key is not this node's (a slot moved, the map is stale): nothing
      // ran (the script touches every key before writing any), so key by key through
      // ioredis, which follows redirections, within what is left of each deadline. Never
      // after a timeout or a lost connection: the steps may have run, and running a return
      // twice would free permits another node holds.
      if (mayRetry && n > 1 && this.redis instanceof Cluster && NOTHING_RAN.test(error.message)) {
        for (const p of batch) this.#send(algorithm, [p], false);
        return;
      }
      for (const p of batch) settle(p, error);
    };
    const flight: InFlight = { deadlineMs, fail };
    this.#watch(flight);
    let call: Promise<unknown>;
    try {
      call = (this.#leaseScripts.get(algorithm) as ScriptCall).apply(this.redis, args);
    } catch (err) {
      call = Promise.reject(err);
    }
    call.then(
      (raw) => {
        if (settled) return;
        settled = true;
        this.#inFlight.delete(flight);
        this.#onCall('lease', (performance.now() - t0) / 1000);
        let replies: LeaseReply[];
        try {
          replies = parseLeaseReplies(raw, n);
        } catch (err) {
          for (const p of batch) settle(p, err as Error);
          return;
        }
        for (let i = 0; i < n; i++) settle(batch[i] as PendingLease, undefined, replies[i]);
      },
      (err: unknown) => fail(err, false),
    );
  }

  /**
   * Lease batches in flight, each failed at its deadline by one shared timer rather than a
   * timer of its own: a batch costs a set entry, not a Node timer set and cleared (with the
   * timer list Node makes and drops for it when nothing else waits that long). The timer is
   * armed for the earliest deadline; when it fires, it fails every batch past its deadline
   * and is armed again for the earliest left. Batches answered in time leave the set, so
   * under load it fires about once a deadline, finding nothing due.
   */
  readonly #inFlight = new Set<InFlight>();
  #deadlineTimer: NodeJS.Timeout | undefined;
  /** performance.now() at which the armed timer fires (Infinity: none armed). */
  #timerAt = Number.POSITIVE_INFINITY;

  #watch(f: InFlight): void {
    this.#inFlight.add(f);
    if (f.deadlineMs < this.#timerAt) this.#arm(f.deadlineMs);
  }

  #arm(at: number): void {
    clearTimeout(this.#deadlineTimer);
    this.#timerAt = at;
    // Not ref'd: the Redis connection keeps the process alive while a call is out.
    this.#deadlineTimer = setTimeout(this.#expire, Math.max(1, Math.ceil(at - performance.now()))).unref();
  }

  readonly #expire = (): void => {
    this.#deadlineTimer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    // Node's timers run on the loop's clock, whole ms, and may fire a fraction of a ms
    // before `at` by performance.now(): a batch that close is due.
    const now = performance.now() + 1;
    let next = Number.POSITIVE_INFINITY;
    const due: InFlight[] = [];
    for (const f of this.#inFlight) {
      if (f.deadlineMs <= now) due.push(f);
      else if (f.deadlineMs < next) next = f.deadlineMs;
    }
    // Failed after the walk: a failure hands each call's outcome to its caller, whose callback
    // may make new calls that join the set.
    for (const f of due) f.fail(new Error(this.#noAnswer), true);
    if (next < this.#timerAt) this.#arm(next);
  };

  async peek(clientId: string, policy: Policy): Promise<BucketView | undefined> {
    const key = this.#bucketName(clientId, policy);
    const raw = await this.#call('bucket read', () => this.redis.getBuffer(key));
    const alg = algorithmOf(policy);
    const s = raw ? decodeBucketValue(raw, alg) : undefined;
    return s ? { available: alg.available(s.alg, policy), leased: s.cur.leased + s.prev.leased, updatedMs: s.updatedMs } : undefined;
  }

  async reset(clientId: string, policy: Policy): Promise<void> {
    const key = this.#bucketName(clientId, policy);
    await this.#call('bucket reset', () => this.redis.del(key));
  }

  async heartbeat(nodeId: string, ttlMs: number): Promise<number> {
    const beat = this.#script('rlHeartbeat');
    const n = await this.#call('heartbeat', () => beat.call(this.redis, this.#fleetKey, nodeId, ttlMs));
    if (typeof n !== 'number' || n < 1) throw new StoreUnavailableError(`unexpected heartbeat reply: ${String(n)}`);
    return n;
  }

  async leave(nodeId: string): Promise<void> {
    try {
      await this.#call('leave', () => this.redis.zrem(this.#fleetKey, nodeId));
    } catch {
      // Best effort: the entry expires by itself.
    }
  }

  get #fleetKey(): string {
    return `${this.#prefix}{fleet}`;
  }

  ready(timeoutMs: number): Promise<boolean> {
    if (this.redis.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.redis.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.redis.on('ready', onReady);
    });
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.#call('ping', () => this.redis.ping())) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    try {
      await Promise.race([this.redis.quit(), new Promise((resolve) => setTimeout(resolve, this.#timeoutMs).unref())]);
    } catch {
      // already closed or unreachable: nothing to flush
    }
    this.redis.disconnect();
  }
}

/** Checks the script reply's shape (six numbers per key): an old or foreign script must not be trusted. */
export function parseLeaseReplies(raw: unknown, keys: number): LeaseReply[] {
  if (!Array.isArray(raw) || raw.length !== 6 * keys || !raw.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new StoreUnavailableError(`unexpected lease script reply: ${JSON.stringify(raw)?.slice(0, 100)}`);
  }
  const out: LeaseReply[] = [];
  for (let i = 0; i < raw.length; i += 6) {
    out.push({
      granted: raw[i] as number,
      kept: raw[i + 1] === 1,
      grantedAtMs: raw[i + 2] as number,
      remaining: raw[i + 3] as number,
      retryAfterMs: raw[i + 4] as number,
      lifeMs: raw[i + 5] as number,
    });
  }
  return out;
}
