/**
 * @module lease/key-table
 *
 * Where a node keeps its key states: a bounded LRU in two segments, and a
 * node-wide budget for keys it has never seen.
 * - Keys seen once live in a probation segment (`probationShare` of the
 *   capacity) and move to the main segment on their second request, so a flood
 *   of made-up keys evicts only other made-up keys, never a real client.
 * - First-seen keys are admitted at most `newKeysPerSec` per second (a token
 *   bucket with a burst of 4 s worth), so such a flood costs the store at most
 *   that many lease calls per second; beyond it the caller sheds the request.
 */
import { LRUMapWithDelete } from 'mnemonist';

export type KeyTableOptions<V> = {
  maxKeys: number;
  probationShare: number;
  newKeysPerSec: number;
  /** Called with each state the LRU pushes out. */
  onEvict: (value: V) => void;
};

export class KeyTable<V> {
  readonly #main: LRUMapWithDelete<string, V>;
  readonly #probation: LRUMapWithDelete<string, V>;
  readonly #onEvict: (value: V) => void;
  readonly #newPerMs: number;
  readonly #newBurst: number;
  #newTokens: number;
  #newAt = Number.NaN;

  constructor(o: KeyTableOptions<V>) {
    const probation = Math.max(1, Math.floor(o.maxKeys * o.probationShare));
    this.#probation = new LRUMapWithDelete(probation);
    this.#main = new LRUMapWithDelete(Math.max(1, o.maxKeys - probation));
    this.#onEvict = o.onEvict;
    this.#newPerMs = o.newKeysPerSec / 1000;
    this.#newBurst = o.newKeysPerSec * 4;
    this.#newTokens = this.#newBurst;
  }

  get size(): number {
    return this.#main.size + this.#probation.size;
  }

  /** Every state held, both segments. */
  *values(): IterableIterator<V> {
    for (const [, v] of this.#main) yield v;
    for (const [, v] of this.#probation) yield v;
  }

  /** The key's state, promoted to the main segment on its second request; undefined when unknown. */
  get(id: string): V | undefined {
    const hot = this.#main.get(id);
    if (hot !== undefined) return hot;
    const seen = this.#probation.get(id);
    if (seen !== undefined) {
      this.#probation.delete(id);
      this.#put(this.#main, id, seen);
    }
    return seen;
  }

  /** The key's state without touching the LRU order; undefined when not held. */
  peek(id: string): V | undefined {
    return this.#main.peek(id) ?? this.#probation.peek(id);
  }

  /** Adds a first-seen key's state to probation; false (nothing added) when new keys must be shed now. */
  add(id: string, value: V, nowMs: number): boolean {
    if (!this.#takeNew(nowMs)) return false;
    this.#put(this.#probation, id, value);
    return true;
  }

  /** ms until a new key would be admitted again (at least 1). */
  newKeyWaitMs(): number {
    return Math.max(1, Math.ceil((1 - this.#newTokens) / this.#newPerMs));
  }

  #put(segment: LRUMapWithDelete<string, V>, id: string, v: V): void {
    const out = segment.setpop(id, v);
    if (out?.evicted) this.#onEvict(out.value);
  }

  #takeNew(nowMs: number): boolean {
    const elapsed = Number.isNaN(this.#newAt) ? 0 : Math.max(0, nowMs - this.#newAt);
    this.#newAt = nowMs;
    this.#newTokens = Math.min(this.#newBurst, this.#newTokens + elapsed * this.#newPerMs);
    if (this.#newTokens < 1) return false;
    this.#newTokens--;
    return true;
  }
}
