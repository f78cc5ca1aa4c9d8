/**
 * @module store/file-policy-store
 *
 * The policy store of one process (embedded mode, no Redis): kept in memory and,
 * with `DATA_DIR` set, in `DATA_DIR/policy-store.json`, written atomically
 * (write a temporary file, fsync, rename, fsync the directory) after every
 * change, so a restart keeps every version, the audit history and the registry.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AuditEntry, ClientRecord, PolicyChange, PolicyStore, StoredPolicy } from '../core/types.js';

type Saved = { versions: StoredPolicy[]; audit: AuditEntry[]; clients: [string, ClientRecord][] };

/** Writes `data` to `path` so that a crash leaves either the old file or the new one. */
export function writeFileAtomic(path: string, data: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export class FilePolicyStore implements PolicyStore {
  readonly #versions = new Map<number, StoredPolicy>();
  #audit: AuditEntry[] = [];
  readonly #clients = new Map<string, ClientRecord>();
  readonly #listeners = new Set<(c: PolicyChange) => void>();
  #clientsVersion = 0;
  readonly #path: string | undefined;

  constructor(dataDir?: string) {
    this.#path = dataDir ? join(dataDir, 'policy-store.json') : undefined;
    if (this.#path) {
      let saved: Saved | undefined;
      try {
        saved = JSON.parse(readFileSync(this.#path, 'utf8')) as Saved;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`DATA_DIR: cannot read ${this.#path}: ${(err as Error).message}`);
      }
      for (const v of saved?.versions ?? []) this.#versions.set(v.version, v);
      this.#audit = saved?.audit ?? [];
      for (const [h, r] of saved?.clients ?? []) this.#clients.set(h, r);
    }
  }

  /** Writes what the store holds plus `change`, then makes the change: a failed write changes nothing. */
  #save(change: { version?: StoredPolicy; audit?: AuditEntry; client?: [string, ClientRecord | undefined] } = {}): void {
    const versions = new Map(this.#versions);
    if (change.version) versions.set(change.version.version, change.version);
    const audit = change.audit ? [change.audit, ...this.#audit].slice(0, 1000) : this.#audit;
    const clients = new Map(this.#clients);
    if (change.client) {
      const [h, r] = change.client;
      if (r) clients.set(h, r);
      else clients.delete(h);
    }
    if (this.#path) writeFileAtomic(this.#path, JSON.stringify({ versions: [...versions.values()], audit, clients: [...clients] } satisfies Saved));
    if (change.version) this.#versions.set(change.version.version, change.version);
    this.#audit = audit;
    if (change.client) {
      this.#clients.clear();
      for (const [h, r] of clients) this.#clients.set(h, r);
    }
  }

  #latest(): number {
    let v = 0;
    for (const k of this.#versions.keys()) v = Math.max(v, k);
    return v;
  }

  currentVersion(): Promise<number> {
    return Promise.resolve(this.#latest());
  }

  atVersion(version: number): Promise<StoredPolicy | undefined> {
    return Promise.resolve(this.#versions.get(version));
  }

  current(): Promise<StoredPolicy | undefined> {
    return this.atVersion(this.#latest());
  }

  put(document: unknown, expected: number, audit: { actor: string; summary: string }) {
    const current = this.#latest();
    if (current !== expected) return Promise.resolve({ ok: false as const, current });
    const version = current + 1;
    this.#save({ version: { version, document }, audit: { ...audit, kind: 'policy', version, atMs: Date.now() } });
    for (const l of this.#listeners) l({ kind: 'policy', version });
    return Promise.resolve({ ok: true as const, version });
  }

  history(limit: number): Promise<AuditEntry[]> {
    return Promise.resolve(this.#audit.slice(0, limit));
  }

  clients(): Promise<Map<string, ClientRecord>> {
    return Promise.resolve(new Map(this.#clients));
  }

  clientsVersion(): Promise<number> {
    return Promise.resolve(this.#clientsVersion);
  }

  client(keyHash: string): Promise<ClientRecord | undefined> {
    return Promise.resolve(this.#clients.get(keyHash));
  }

  setClient(keyHash: string, record: ClientRecord | undefined, audit: { actor: string; summary: string }): Promise<void> {
    this.#save({ client: [keyHash, record], audit: { ...audit, kind: 'client', version: this.#latest(), atMs: Date.now() } });
    this.#clientsVersion++;
    for (const l of this.#listeners) l({ kind: 'client', keyHash });
    return Promise.resolve();
  }

  audit(entry: { actor: string; kind: 'policy' | 'client'; summary: string }): Promise<void> {
    this.#save({ audit: { ...entry, version: this.#latest(), atMs: Date.now() } });
    return Promise.resolve();
  }

  subscribe(onChange: (change: PolicyChange) => void): Promise<() => Promise<void>> {
    this.#listeners.add(onChange);
    return Promise.resolve(async () => {
      this.#listeners.delete(onChange);
    });
  }
}
