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

  #save(): void {
    if (!this.#path) return;
    const saved: Saved = { versions: [...this.#versions.values()], audit: this.#audit, clients: [...this.#clients] };
    writeFileAtomic(this.#path, JSON.stringify(saved));
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
    this.#versions.set(version, { version, document });
    this.#audit.unshift({ ...audit, kind: 'policy', version, atMs: Date.now() });
    this.#audit = this.#audit.slice(0, 1000);
    this.#save();
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
    if (record) this.#clients.set(keyHash, record);
    else this.#clients.delete(keyHash);
    this.#clientsVersion++;
    this.#audit.unshift({ ...audit, kind: 'client', version: this.#latest(), atMs: Date.now() });
    this.#audit = this.#audit.slice(0, 1000);
    this.#save();
    for (const l of this.#listeners) l({ kind: 'client', keyHash });
    return Promise.resolve();
  }

  audit(entry: { actor: string; kind: 'policy' | 'client'; summary: string }): Promise<void> {
    this.#audit.unshift({ ...entry, version: this.#latest(), atMs: Date.now() });
    this.#audit = this.#audit.slice(0, 1000);
    this.#save();
    return Promise.resolve();
  }

  subscribe(onChange: (change: PolicyChange) => void): Promise<() => Promise<void>> {
    this.#listeners.add(onChange);
    return Promise.resolve(async () => {
      this.#listeners.delete(onChange);
    });
  }
}
