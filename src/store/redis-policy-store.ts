/**
 * @module store/redis-policy-store
 *
 * The policy document, its versions, the audit history and the client registry
 * in Redis, shared by the fleet. Every key carries the hash tag `{policy}`
 * (one Cluster slot):
 * - `rl:{policy}:version` the current version; `rl:{policy}:doc:<n>` each version's
 *   document (history is never rewritten); `rl:{policy}:audit` the last 1,000
 *   changes; `rl:{policy}:clients` a hash from the keyed hash of each API key
 *   to its record, and `rl:{policy}:clients-version` a counter of its changes.
 * A write is one Lua compare-and-set (`lua/policy-put.lua`), so versions never
 * fork, and it is announced on the channel `rl:{policy}:changes`, which every
 * node subscribes to on its own connection. None of these keys may be evicted:
 * see the README on `maxmemory-policy`.
 */
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { type AuditEntry, type ClientRecord, type PolicyChange, type PolicyStore, type StoredPolicy, StoreUnavailableError } from '../core/types.js';

const PUT_SCRIPT = readFileSync(new URL('../../lua/policy-put.lua', import.meta.url), 'utf8');
type PutCall = (k1: string, k2: string, k3: string, ...args: (string | number)[]) => Promise<unknown>;

export class RedisPolicyStore implements PolicyStore {
  readonly #redis: Redis | Cluster;
  readonly #prefix: string;
  readonly #timeoutMs: number;

  constructor(redis: Redis | Cluster, options: { keyPrefix: string; commandTimeoutMs: number }) {
    this.#redis = redis;
    this.#prefix = `${options.keyPrefix}{policy}:`;
    this.#timeoutMs = options.commandTimeoutMs;
    redis.defineCommand('rlPolicyPut', { numberOfKeys: 3, lua: PUT_SCRIPT });
  }

  get channel(): string {
    return `${this.#prefix}changes`;
  }

  async #call<T>(what: string, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        run(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
        }),
      ]);
    } catch (err) {
      throw new StoreUnavailableError(`redis ${what} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  async currentVersion(): Promise<number> {
    return Number((await this.#call('policy version', () => this.#redis.get(`${this.#prefix}version`))) ?? 0);
  }

  async atVersion(version: number): Promise<StoredPolicy | undefined> {
    const raw = await this.#call('policy read', () => this.#redis.get(`${this.#prefix}doc:${version}`));
    return raw === null ? undefined : { version, document: JSON.parse(raw) };
  }

  async current(): Promise<StoredPolicy | undefined> {
    const v = await this.currentVersion();
    return v === 0 ? undefined : this.atVersion(v);
  }

  async put(document: unknown, expected: number, audit: { actor: string; summary: string }) {
    const entry = JSON.stringify({ ...audit, kind: 'policy', atMs: Date.now() });
    const run = (this.#redis as unknown as { rlPolicyPut: PutCall }).rlPolicyPut;
    const reply = (await this.#call('policy write', () =>
      run.call(this.#redis, `${this.#prefix}version`, `${this.#prefix}doc:${expected + 1}`, `${this.#prefix}audit`, expected, JSON.stringify(document), entry, this.channel),
    )) as [number, number];
    return reply[0] === 1 ? { ok: true as const, version: reply[1] } : { ok: false as const, current: reply[1] };
  }

  async history(limit: number): Promise<AuditEntry[]> {
    const raw = await this.#call('audit read', () => this.#redis.lrange(`${this.#prefix}audit`, 0, limit - 1));
    return raw.map((r) => JSON.parse(r) as AuditEntry);
  }

  async clients(): Promise<Map<string, ClientRecord>> {
    const all = await this.#call('registry read', () => this.#redis.hgetall(`${this.#prefix}clients`));
    return new Map(Object.entries(all).map(([h, r]) => [h, JSON.parse(r) as ClientRecord]));
  }

  async clientsVersion(): Promise<number> {
    return Number((await this.#call('registry version', () => this.#redis.get(`${this.#prefix}clients-version`))) ?? 0);
  }

  async client(keyHash: string): Promise<ClientRecord | undefined> {
    const raw = await this.#call('registry read', () => this.#redis.hget(`${this.#prefix}clients`, keyHash));
    return raw === null ? undefined : (JSON.parse(raw) as ClientRecord);
  }

  async setClient(keyHash: string, record: ClientRecord | undefined, audit: { actor: string; summary: string }): Promise<void> {
    const version = await this.currentVersion();
    const entry = JSON.stringify({ ...audit, kind: 'client', atMs: Date.now(), version });
    const key = `${this.#prefix}clients`;
    const change = JSON.stringify({ kind: 'client', keyHash } satisfies PolicyChange);
    await this.#call('registry write', () => {
      const m = this.#redis.multi();
      if (record) m.hset(key, keyHash, JSON.stringify(record));
      else m.hdel(key, keyHash);
      m.incr(`${this.#prefix}clients-version`);
      m.lpush(`${this.#prefix}audit`, entry).ltrim(`${this.#prefix}audit`, 0, 999).publish(this.channel, change);
      return m.exec();
    });
  }

  async audit(entry: { actor: string; kind: 'policy' | 'client'; summary: string }): Promise<void> {
    const version = await this.currentVersion();
    const line = JSON.stringify({ ...entry, atMs: Date.now(), version });
    await this.#call('audit write', () => this.#redis.multi().lpush(`${this.#prefix}audit`, line).ltrim(`${this.#prefix}audit`, 0, 999).exec());
  }

  async subscribe(onChange: (change: PolicyChange) => void): Promise<() => Promise<void>> {
    // Its own connection (a subscribed connection takes no other command), queueing the
    // SUBSCRIBE until it is connected; ioredis subscribes again after every reconnect.
    const sub = 'nodes' in this.#redis ? this.#redis.duplicate(undefined, { enableOfflineQueue: true }) : this.#redis.duplicate({ enableOfflineQueue: true });
    sub.on('error', () => {});
    sub.on('message', (_channel: string, message: string) => {
      try {
        onChange(JSON.parse(message) as PolicyChange);
      } catch {
        // A message of another shape: the periodic version check catches up anyway.
      }
    });
    try {
      await this.#call('subscribe', () => sub.subscribe(this.channel));
    } catch (err) {
      // Not subscribed: this connection goes, the caller retries with a new one later.
      sub.disconnect();
      throw err;
    }
    return async () => {
      sub.disconnect();
    };
  }
}
