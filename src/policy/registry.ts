/**
 * @module policy/registry
 *
 * The client registry: each API key's tier and allow/deny flags, stored only
 * under the keyed hash of the key (`KEY_HASH_SECRET`), never the key itself.
 * Read at start from `CLIENTS_FILE` (raw keys hashed on load, never echoed, not
 * even in validation errors); the admin API will write it. Lookups are cached
 * per key in a bounded LRU, so the HMAC is not paid per request.
 */
import { readFileSync } from 'node:fs';
import { LRUMap } from 'mnemonist';
import { z } from 'zod';
import { formatPath } from './document.js';

import type { ClientRecord } from '../core/types.js';
export type { ClientRecord };

const clientsFile = z
  .object({
    clients: z.array(
      z
        .object({
          apiKey: z.string().min(1).max(256),
          tier: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a tier name'),
          allow: z.boolean().default(false),
          deny: z.boolean().default(false),
        })
        .strict(),
    ),
  })
  .strict();

export class ClientRegistry {
  readonly #byHash = new Map<string, ClientRecord>();
  readonly #cache = new LRUMap<string, ClientRecord | null>(100_000);

  constructor(readonly hash: (apiKey: string) => string) {}

  get size(): number {
    return this.#byHash.size;
  }

  /** The record of `apiKey`, or undefined for a key the registry does not know. */
  lookup(apiKey: string): ClientRecord | undefined {
    // No client registered (the default): nothing to find, so no hash and no cache entry
    // (profiled: the cache's LRU and a new key's HMAC were ~5% of a cold request's CPU).
    if (this.#byHash.size === 0) return undefined;
    const cached = this.#cache.get(apiKey);
    if (cached !== undefined) return cached ?? undefined;
    const record = this.#byHash.get(this.hash(apiKey));
    this.#cache.set(apiKey, record ?? null);
    return record;
  }

  set(apiKey: string, record: ClientRecord): void {
    this.setHashed(this.hash(apiKey), record);
  }

  /** Sets (or deletes, with undefined) the record of a key known only by its hash. */
  setHashed(keyHash: string, record: ClientRecord | undefined): void {
    if (record) this.#byHash.set(keyHash, record);
    else this.#byHash.delete(keyHash);
    // A changed record must be seen at once; changes are rare (admin writes).
    this.#cache.clear();
  }

  /** Replaces every record (a reload from the store). */
  replaceAll(records: ReadonlyMap<string, ClientRecord>): void {
    this.#byHash.clear();
    for (const [h, r] of records) this.#byHash.set(h, r);
    this.#cache.clear();
  }

  /** Every record by key hash (to seed a store). */
  entries(): IterableIterator<[string, ClientRecord]> {
    return this.#byHash.entries();
  }

  /** Loads `CLIENTS_FILE`. Throws an Error naming the bad field's path (never a key). */
  static fromFile(path: string, hash: (apiKey: string) => string): ClientRegistry {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new Error(`CLIENTS_FILE ${path}: ${(err as Error).message.replace(/"[^"]*"/g, '"…"')}`);
    }
    const r = clientsFile.safeParse(raw);
    if (!r.success) {
      const lines = r.error.issues.map((i) => `${formatPath(i.path)}: ${i.message.replace(/"[^"]*"/g, '"…"')}`);
      throw new Error(`CLIENTS_FILE ${path} is invalid:\n  ${lines.join('\n  ')}`);
    }
    const registry = new ClientRegistry(hash);
    for (const c of r.data.clients) registry.#byHash.set(hash(c.apiKey), { tier: c.tier, allow: c.allow, deny: c.deny });
    return registry;
  }
}
