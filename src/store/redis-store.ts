/**
 * @module store/redis-store
 *
 * Global buckets in Redis (one server or a Redis Cluster), shared by every node.
 * One script (`lua/lease.lua`) does a whole step atomically; scripts are
 * registered with ioredis `defineCommand`, which sends EVALSHA and falls back to
 * EVAL on NOSCRIPT, so they survive SCRIPT FLUSH, restarts and failovers.
 *
 * Every call is bounded, whatever ioredis does underneath: the offline queue is
 * off (a command while disconnected fails at once instead of waiting for a
 * reconnect), `commandTimeout` is set, and each call also races a timer of the
 * same length, which also covers Cluster redirections and retries. Failures and
 * replies of the wrong shape become `StoreUnavailableError`.
 *
 * Cluster: each script touches one key, and every key of a client shares a hash
 * tag (`rl:{hash}`), as does the fleet key (`rl:{fleet}`), so no call can hit
 * CROSSSLOT.
 */
import { Cluster, Redis, type RedisOptions, ReplyError } from 'ioredis';
import { ALGORITHMS, algorithmOf } from '../algorithms/registry.js';
import {
  type AlgorithmName,
  type BucketAdmin,
  type BucketStore,
  type BucketView,
  type FleetStore,
  type LeaseReply,
  type LeaseRequest,
  type Policy,
  type StoreHealth,
  StoreUnavailableError,
} from '../core/types.js';
import { MAX_SPEND_GROUPS } from '../protocol/lease-step.js';
import { decodeBucketValue } from './bucket-format.js';
import { type KeyHasher, bucketKeyName, createKeyHasher } from './key-name.js';
import { HEARTBEAT_SCRIPT, leaseScript } from './lua-scripts.js';

type ScriptCall = (key: string, ...args: (string | number)[]) => Promise<unknown>;
const leaseCommand = (algorithm: AlgorithmName) => `rlLease_${algorithm}`;

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
  readonly #onCall: NonNullable<RedisStoreOptions['onCall']>;

  constructor(options: RedisStoreOptions) {
    this.#prefix = options.keyPrefix;
    this.#hashKey = options.hashKey ?? createKeyHasher();
    this.#onCall = options.onCall ?? (() => {});
    this.#timeoutMs = options.commandTimeoutMs;
    const perNode: RedisOptions = {
      commandTimeout: options.commandTimeoutMs,
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
      this.redis = new Redis(options.url, { ...perNode, enableAutoPipelining: true });
    } else {
      throw new TypeError('RedisStore: url or clusterNodes is required');
    }
    // Connection errors are reported through failed calls, the circuit breaker and
    // /health; without a listener ioredis would print every reconnect attempt.
    this.redis.on('error', () => {});
    this.redis.on('node error', () => {});
    for (const algorithm of Object.keys(ALGORITHMS) as AlgorithmName[]) {
      this.redis.defineCommand(leaseCommand(algorithm), { numberOfKeys: 1, lua: options.leaseScripts?.[algorithm] ?? leaseScript(algorithm) });
    }
    this.redis.defineCommand('rlHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT_SCRIPT });
  }

  #script(name: string): ScriptCall {
    return (this.redis as unknown as Record<string, ScriptCall>)[name] as ScriptCall;
  }

  /** Runs one Redis call with the hard deadline, mapping every failure to StoreUnavailableError. */
  async #call<T>(what: string, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(`no answer within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
    });
    const t0 = performance.now();
    try {
      const r = await Promise.race([run(), deadline]);
      this.#onCall(what, (performance.now() - t0) / 1000);
      return r;
    } catch (err) {
      const kind = timedOut ? 'timeout' : err instanceof ReplyError ? 'reply' : /connect|closed|writeable|ready|ECONN/i.test((err as Error).message) ? 'connection' : 'other';
      this.#onCall(what, (performance.now() - t0) / 1000, kind);
      if (this.redis instanceof Cluster) this.#refreshSlots();
      throw new StoreUnavailableError(`redis ${what} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  #lastSlotsRefresh = 0;
  /** After a failover the slot map is stale until read again: at most one refresh per 500 ms. */
  #refreshSlots(): void {
    const now = Date.now();
    if (now - this.#lastSlotsRefresh < 500) return;
    this.#lastSlotsRefresh = now;
    (this.redis as Cluster).refreshSlotsCache();
  }

  async lease(clientId: string, policy: Policy, req: LeaseRequest): Promise<LeaseReply> {
    const r = req.report;
    const args: (string | number)[] = [
      ...algorithmOf(policy).luaArgs(policy),
      req.leaseTtlMs,
      req.need,
      req.extra,
      r ? 1 : 0,
      r ? r.grantedAtMs : 0,
      r ? r.registered : 0,
      r ? r.unused : 0,
      r?.keep ? 1 : 0,
    ];
    const groups = r ? r.spends.slice(0, MAX_SPEND_GROUPS) : [];
    args.push(groups.length);
    for (const [age, count] of groups) args.push(Math.max(0, Math.floor(age)), count);
    const key = bucketKeyName(this.#prefix, clientId, policy, this.#hashKey);
    const run = this.#script(leaseCommand(policy.algorithm));
    const raw = await this.#call('lease', () => run.call(this.redis, key, ...args));
    return parseLeaseReply(raw);
  }

  async peek(clientId: string, policy: Policy): Promise<BucketView | undefined> {
    const key = bucketKeyName(this.#prefix, clientId, policy, this.#hashKey);
    const raw = await this.#call('bucket read', () => this.redis.getBuffer(key));
    const alg = algorithmOf(policy);
    const s = raw ? decodeBucketValue(raw, alg) : undefined;
    return s ? { available: alg.available(s.alg, policy), leased: s.cur.leased + s.prev.leased, updatedMs: s.updatedMs } : undefined;
  }

  async reset(clientId: string, policy: Policy): Promise<void> {
    const key = bucketKeyName(this.#prefix, clientId, policy, this.#hashKey);
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

/** Checks the script reply's shape: an old or foreign script must not be trusted. */
export function parseLeaseReply(raw: unknown): LeaseReply {
  if (!Array.isArray(raw) || raw.length !== 6 || !raw.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new StoreUnavailableError(`unexpected lease script reply: ${JSON.stringify(raw)?.slice(0, 100)}`);
  }
  const [granted, kept, grantedAtMs, remaining, retryAfterMs, lifeMs] = raw as number[];
  return {
    granted: granted as number,
    kept: kept === 1,
    grantedAtMs: grantedAtMs as number,
    remaining: remaining as number,
    retryAfterMs: retryAfterMs as number,
    lifeMs: lifeMs as number,
  };
}
