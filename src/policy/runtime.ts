/**
 * @module policy/runtime
 *
 * The policy document and client registry a node runs, kept in step with the
 * policy store (Redis for a fleet, a local file in embedded mode):
 * - at start: the store's current document; if the store has none yet, the
 *   node seeds it with `POLICY_FILE` (or the environment's single policy) and
 *   `CLIENTS_FILE`. Once a document lives in the store, the store wins; a node
 *   whose seed differs says so once (log and admin /health). If the store
 *   cannot be read, the node starts from the last document and registry it
 *   saved locally (`DATA_DIR/last-policy.json`), else from its seed (and
 *   `CLIENTS_FILE`, or no registry: every client gets the default tier), and
 *   says which;
 * - changes announced by any node (pub/sub) are applied at once; a check every
 *   `checkIntervalMs` (default 1 s) catches a missed announcement;
 * - a swap is atomic: a request reads the compiled document once and is decided
 *   wholly under it. Policies whose limits changed have their leases on this
 *   node given back (`onPoliciesChanged`), so a lowered limit holds at once.
 * A document that fails validation (written around the API) is never applied:
 * the last good one stays, and the error is logged.
 */
import { isDeepStrictEqual } from 'node:util';
import { type FSWatcher, readFileSync, statSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ClientRecord, PolicyChange, PolicyStore, StoredPolicy } from '../core/types.js';
import { type Logger, throttled } from '../log/logger.js';
import { type PolicyDocument, parsePolicyDocument } from './document.js';
import type { ClientRegistry } from './registry.js';
import { type CompiledPolicies, compilePolicies } from './rules.js';

export type PolicySource = 'store' | 'local copy' | 'seed' | 'file';

/** What `DATA_DIR/last-policy.json` holds. */
type LocalCopy = { policy: StoredPolicy; clients: [string, ClientRecord][] };

export type PolicyRuntimeOptions = {
  store: PolicyStore;
  /** What seeds an empty store, and what the node runs if it cannot read the store and has no local copy. */
  seed: PolicyDocument;
  /** How the seed was given, for messages: `POLICY_FILE config/x.json` or `the environment`. */
  seedName: string;
  /** The live registry the engine reads; `seedClients` (CLIENTS_FILE) seeds an empty store. */
  registry: ClientRegistry;
  seedClients?: ClientRegistry | undefined;
  logger: Logger;
  /** Writes the last applied document there (`last-policy.json`), for a start with the store away. */
  dataDir?: string | undefined;
  /** Called with the names of policies whose limits changed or disappeared. */
  onPoliciesChanged?: (names: string[]) => void;
  /** Persists a local copy; the embedded store does that itself. */
  saveLocalCopy?: (path: string, data: string) => void;
  checkIntervalMs?: number;
  /**
   * `POLICY_SOURCE=file`: the document is this file on every node, never the store's. It is
   * watched (the file and its directory, so a Kubernetes ConfigMap's symlink swap is seen)
   * and checked every `checkIntervalMs`; a new file that fails validation is refused and the
   * last good one kept. The registry still lives in the store.
   */
  file?: string | undefined;
};

export class PolicyRuntime {
  #compiled: CompiledPolicies;
  #document: PolicyDocument;
  #version = 0;
  #clientsVersion = -1;
  #source: PolicySource = 'seed';
  #seedDiffers = false;
  readonly #o: PolicyRuntimeOptions;
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  readonly #logSyncFailure = throttled(10_000);
  #syncing: Promise<void> | undefined;

  constructor(o: PolicyRuntimeOptions) {
    this.#o = o;
    this.#document = o.seed;
    this.#compiled = compilePolicies(o.seed);
    if (o.seedClients) o.registry.replaceAll(new Map(o.seedClients.entries()));
  }

  /** The compiled document in force. */
  get compiled(): CompiledPolicies {
    return this.#compiled;
  }

  get document(): PolicyDocument {
    return this.#document;
  }

  /** What the node runs: the version (0 before the store was read) and where it came from. */
  get state(): { version: number; source: PolicySource; seedDiffers: boolean } {
    return { version: this.#version, source: this.#source, seedDiffers: this.#seedDiffers };
  }

  /** Documents applied and refused since start, and when the last one was applied (wall ms). */
  readonly reloads = { ok: 0, refused: 0, lastMs: Date.now() };

  async start(): Promise<void> {
    if (this.#o.file) {
      this.#startFileMode(this.#o.file);
    } else {
      try {
        await this.#loadOrSeed();
      } catch (err) {
        this.#startOffline(err as Error);
      }
    }
    await this.#subscribe();
    const every = this.#o.checkIntervalMs ?? 1000;
    this.#timer = setInterval(() => void this.sync(), every);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    for (const w of this.#watchers) w.close();
    clearTimeout(this.#fileDebounce);
    await this.#unsubscribe?.().catch(() => {});
  }

  /** Catches up with the store: a newer document, a changed registry, a subscription lost at start. */
  sync(): Promise<void> {
    this.#syncing ??= this.#sync().finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  async #sync(): Promise<void> {
    if (this.#o.file) this.#checkFile();
    try {
      if (this.#o.file) {
        if (!this.#unsubscribe) await this.#subscribe();
        await this.#syncClients();
        return;
      }
      if (this.#source !== 'store') {
        await this.#loadOrSeed();
        this.#o.logger.info('policy store reachable again: running its document', { version: this.#version });
      }
      if (!this.#unsubscribe) await this.#subscribe();
      const v = await this.#o.store.currentVersion();
      if (v > this.#version) await this.#applyVersion(v);
      await this.#syncClients();
    } catch (err) {
      this.#logSyncFailure((suppressed) => this.#o.logger.warn('policy store check failed; running the last document', { error: (err as Error).message, suppressed }));
    }
  }

  /** An empty registry in the store takes CLIENTS_FILE's records. */
  async #seedClients(): Promise<void> {
    const store = this.#o.store;
    if (!this.#o.seedClients || this.#o.seedClients.size === 0 || (await store.clients()).size > 0) return;
    for (const [h, rec] of this.#o.seedClients.entries()) await store.setClient(h, rec, { actor: 'seed', summary: 'seeded from CLIENTS_FILE' });
  }

  async #syncClients(): Promise<void> {
    const cv = await this.#o.store.clientsVersion();
    if (cv !== this.#clientsVersion) {
      this.#o.registry.replaceAll(await this.#o.store.clients());
      this.#clientsVersion = cv;
      this.#saveLocalCopy();
    }
  }

  readonly #watchers: FSWatcher[] = [];
  #fileDebounce: NodeJS.Timeout | undefined;
  #fileStamp = '';
  readonly #logFileRefused = throttled(10_000);

  #startFileMode(path: string): void {
    this.#version = 1;
    this.#source = 'file';
    this.#fileStamp = this.#stamp(path);
    // The directory too: an editor or a ConfigMap replaces the file (rename, symlink swap),
    // which ends a watch on the file itself.
    for (const target of [path, dirname(path)]) {
      try {
        const w = watch(target, () => {
          clearTimeout(this.#fileDebounce);
          this.#fileDebounce = setTimeout(() => this.#checkFile(), 100);
          this.#fileDebounce.unref();
        });
        w.on('error', () => {});
        w.unref();
        this.#watchers.push(w);
      } catch {
        // Not watchable (some file systems): the periodic check still sees changes.
      }
    }
    void this.#seedClients()
      .then(() => this.#syncClients())
      .catch(() => {});
  }

  /** The policy file when `POLICY_SOURCE=file` (admin writes to the document are refused). */
  get file(): string | undefined {
    return this.#o.file;
  }

  /** What identifies the file's content now: size, mtime and inode of what the path resolves to. */
  #stamp(path: string): string {
    try {
      const st = statSync(path);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  /** Re-reads the policy file if it changed; a bad one is refused and the last good one stays. */
  #checkFile(): void {
    const path = this.#o.file as string;
    const stamp = this.#stamp(path);
    if (stamp === this.#fileStamp) return;
    this.#fileStamp = stamp;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      this.#logFileRefused((suppressed) => this.#o.logger.error('policy file unreadable; the last good document stays', { file: path, error: (err as Error).message, suppressed }));
      return;
    }
    if (isDeepStrictEqual(raw, this.#document)) return;
    const parsed = parsePolicyDocument(raw);
    if (!parsed.ok) {
      this.reloads.refused++;
      this.#o.logger.error('policy file refused; the last good document stays', { file: path, errors: parsed.errors.slice(0, 5) });
      return;
    }
    this.#apply({ version: this.#version + 1, document: parsed.document }, 'file');
    this.#o.logger.info('policy file changed: applied', { file: path, version: this.#version });
  }

  /** Listens for announcements; without them, the periodic check still catches up (and retries this). */
  async #subscribe(): Promise<void> {
    try {
      this.#unsubscribe = await this.#o.store.subscribe((c) => this.#onChange(c));
    } catch (err) {
      this.#logSyncFailure((suppressed) =>
        this.#o.logger.warn('cannot subscribe to policy changes; the periodic check catches up meanwhile', { error: (err as Error).message, suppressed }),
      );
    }
  }

  async #loadOrSeed(): Promise<void> {
    const store = this.#o.store;
    let current = await store.current();
    if (!current) {
      const r = await store.put(this.#o.seed, 0, { actor: 'seed', summary: `seeded from ${this.#o.seedName}` });
      current = r.ok ? { version: r.version, document: this.#o.seed } : await store.current();
      if (current) this.#o.logger.info('policy store was empty: seeded it', { from: this.#o.seedName, version: current.version });
    }
    await this.#seedClients();
    this.#clientsVersion = await store.clientsVersion();
    this.#o.registry.replaceAll(await store.clients());
    // Never backwards: an announcement may have brought a newer version meanwhile.
    if (current && (current.version >= this.#version || this.#source !== 'store')) this.#apply(current, 'store');
    this.#saveLocalCopy();
    const differs = current !== undefined && !isDeepStrictEqual(current.document, this.#o.seed);
    if (differs && !this.#seedDiffers) {
      this.#o.logger.warn(`${this.#o.seedName} differs from the policy store's document, which wins; to apply it: PUT it to /admin/policy on the admin port`, {
        version: this.#version,
      });
    }
    this.#seedDiffers = differs;
  }

  #startOffline(err: Error): void {
    const path = this.#o.dataDir ? join(this.#o.dataDir, 'last-policy.json') : undefined;
    if (path) {
      try {
        const saved = JSON.parse(readFileSync(path, 'utf8')) as LocalCopy;
        if (this.#apply(saved.policy, 'local copy')) {
          // The registry as last seen too: registered clients keep their tiers and flags.
          this.#o.registry.replaceAll(new Map(saved.clients));
          this.#o.logger.warn('policy store unreachable at start: running the last document and registry saved locally', {
            version: saved.policy.version,
            clients: saved.clients.length,
            error: err.message,
          });
          return;
        }
      } catch {
        // none saved yet: the seed
      }
    }
    this.#source = 'seed';
    this.#o.logger.warn(`policy store unreachable at start: running ${this.#o.seedName} until it answers`, { error: err.message });
  }

  #onChange(c: PolicyChange): void {
    if (c.kind === 'policy') {
      if (this.#o.file) return; // the file is the document
      if (c.version > this.#version) void this.#applyVersion(c.version).catch(() => {});
    } else {
      this.#o.store.client(c.keyHash).then(
        (record) => {
          this.#o.registry.setHashed(c.keyHash, record);
          this.#saveLocalCopy();
        },
        () => {},
      );
    }
  }

  /** A version this node wrote itself (the admin API): applied at once if newer. */
  adopt(stored: StoredPolicy): void {
    if (stored.version > this.#version) this.#apply(stored, 'store');
  }

  async #applyVersion(v: number): Promise<void> {
    const stored = await this.#o.store.atVersion(v);
    if (stored && stored.version > this.#version) this.#apply(stored, 'store');
  }

  /** Validates, compiles and swaps in `stored`; false (and the last good one kept) if it is invalid. */
  #apply(stored: StoredPolicy, source: PolicySource): boolean {
    const parsed = parsePolicyDocument(stored.document);
    if (!parsed.ok) {
      this.reloads.refused++;
      this.#o.logger.error('refused an invalid policy document from the store; the last good one stays', { version: stored.version, errors: parsed.errors.slice(0, 5) });
      return false;
    }
    this.reloads.ok++;
    this.reloads.lastMs = Date.now();
    const next = compilePolicies(parsed.document);
    const changed: string[] = [];
    for (const [name, p] of this.#compiled.policies) {
      const q = next.policies.get(name);
      if (!q || JSON.stringify(q) !== JSON.stringify(p)) changed.push(name);
    }
    this.#compiled = next;
    this.#document = parsed.document;
    this.#version = stored.version;
    this.#source = source;
    if (changed.length > 0) this.#o.onPoliciesChanged?.(changed);
    if (source === 'store') this.#saveLocalCopy(stored);
    return true;
  }

  /** The document and registry in force, for a start with the store away. */
  #saveLocalCopy(policy: StoredPolicy = { version: this.#version, document: this.#document }): void {
    if (!this.#o.dataDir || !this.#o.saveLocalCopy) return;
    try {
      const copy: LocalCopy = { policy, clients: [...this.#o.registry.entries()] };
      this.#o.saveLocalCopy(join(this.#o.dataDir, 'last-policy.json'), JSON.stringify(copy));
    } catch (err) {
      this.#o.logger.warn('could not save the policy document locally', { error: (err as Error).message });
    }
  }
}
