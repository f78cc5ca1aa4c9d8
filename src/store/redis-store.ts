/**
 * @module store/redis-store
 *
 * Global buckets in Redis, shared by every node. One script (`lua/lease.lua`)
 * does a whole step atomically; it is registered with ioredis `defineCommand`,
 * which sends EVALSHA and falls back to EVAL on NOSCRIPT, so the script survives
 * SCRIPT FLUSH and a Redis restart.
 *
 * Every call is bounded: the offline queue is off (a command while disconnected
 * fails at once instead of waiting for a reconnect) and `commandTimeout` rejects
 * a command Redis does not answer in time. Either becomes a
 * `StoreUnavailableError`.
 */
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { BucketPolicy, LeaseReply, LeaseRequest } from '../bucket/global-bucket.js';
import { type GlobalStore, StoreUnavailableError } from './global-store.js';
import { bucketKeyName } from './key-name.js';

const LEASE_SCRIPT = readFileSync(new URL('../../lua/lease.lua', import.meta.url), 'utf8');

type LeaseCommand = {
  rlLease(key: string, ...args: (string | number)[]): Promise<unknown>;
};

export type RedisStoreOptions = {
  url: string;
  /** Deadline of every Redis command, in ms. */
  commandTimeoutMs: number;
  /** Prefix of every key this store writes. */
  keyPrefix: string;
  /** Extra ioredis options (tests use them to tune reconnects). */
  redisOptions?: RedisOptions;
};

export class RedisStore implements GlobalStore {
  readonly mode = 'global' as const;
  readonly redis: Redis;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  /** Commands this store has sent (a script call counts once). */
  commandsSent = 0;

  constructor(options: RedisStoreOptions) {
    this.#prefix = options.keyPrefix;
    this.#timeoutMs = options.commandTimeoutMs;
    this.redis = new Redis(options.url, {
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: Math.max(1000, options.commandTimeoutMs),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      enableAutoPipelining: true,
      retryStrategy: (times) => Math.min(50 * times, 1000),
      ...options.redisOptions,
    });
    // Connection errors are reported through failed commands and /health; without a
    // listener ioredis would print every reconnect attempt as an unhandled error.
    this.redis.on('error', () => {});
    this.redis.defineCommand('rlLease', { numberOfKeys: 1, lua: LEASE_SCRIPT });
  }

  async lease(clientId: string, policy: BucketPolicy, req: LeaseRequest): Promise<LeaseReply> {
    const r = req.report;
    this.commandsSent++;
    let raw: unknown;
    try {
      raw = await (this.redis as unknown as LeaseCommand).rlLease(
        bucketKeyName(this.#prefix, clientId),
        policy.capacity,
        policy.refillPerSec,
        req.leaseTtlMs,
        req.need,
        req.extra,
        r ? r.grantedAtMs : 0,
        r ? r.registered : 0,
        r ? r.unused : 0,
        r ? Math.max(0, Math.round(r.spentAgeMs)) : 0,
        r?.keep ? 1 : 0,
      );
    } catch (err) {
      throw new StoreUnavailableError(`redis lease failed: ${(err as Error).message}`, { cause: err });
    }
    return parseLeaseReply(raw);
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
    if (this.redis.status !== 'ready') return false;
    try {
      this.commandsSent++;
      return (await this.redis.ping()) === 'PONG';
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
  const [granted, kept, grantedAtMs, remaining, retryAfterMs, fullInMs] = raw as number[];
  return {
    granted: granted as number,
    kept: kept === 1,
    grantedAtMs: grantedAtMs as number,
    remaining: remaining as number,
    retryAfterMs: retryAfterMs as number,
    fullInMs: fullInMs as number,
  };
}
