/**
 * @module log/violations
 *
 * Rate-limit violations in the log, bounded however hard a client pushes: a
 * denial is logged only if it is its client's first in the current window
 * (`windowMs`, per policy and client), and at most `perSecond` lines a second
 * are written; the denials left out are counted and reported in one line per
 * second ("N denials not logged"). A flood of 100,000 denials therefore writes
 * a few hundred lines. Clients are named by the keyed hash of their identity.
 */
import { LRUMap } from 'mnemonist';
import type { Logger } from './logger.js';

export type Violation = {
  policy: string;
  rule: string;
  /** The keyed hash of the client's identity; never the identity itself. */
  client: string;
  route: string;
  retryAfterMs: number;
  requestId: string | undefined;
};

export type ViolationLogOptions = { logger: Logger; windowMs?: number; perSecond?: number; now?: () => number; maxClients?: number };

export class ViolationLog {
  readonly #log: Logger;
  readonly #windowMs: number;
  readonly #perSecond: number;
  readonly #now: () => number;
  /** `policy\0client` → the window it was last logged in. */
  readonly #seen: LRUMap<string, number>;
  #second = -1;
  #linesThisSecond = 0;
  #dropped = 0;
  /** Denials seen and left out, since start (for tests and metrics). */
  droppedTotal = 0;
  logged = 0;

  constructor(o: ViolationLogOptions) {
    this.#log = o.logger;
    this.#windowMs = o.windowMs ?? 60_000;
    this.#perSecond = o.perSecond ?? 20;
    this.#now = o.now ?? Date.now;
    this.#seen = new LRUMap(o.maxClients ?? 10_000);
  }

  /** A denial. `hashClient` is only called when the line is written. */
  denied(v: Omit<Violation, 'client'> & { clientId: string }, hashClient: (id: string) => string): void {
    const now = this.#now();
    const second = Math.floor(now / 1000);
    if (second !== this.#second) this.#flush(second);
    const window = Math.floor(now / this.#windowMs);
    const key = `${v.policy}\u0000${v.clientId}`;
    // The per-second cap first: under a flood most denials stop there, before the LRU.
    if (this.#linesThisSecond >= this.#perSecond || this.#seen.get(key) === window) {
      this.#dropped++;
      this.droppedTotal++;
      return;
    }
    this.#seen.set(key, window);
    this.#linesThisSecond++;
    this.logged++;
    this.#log.warn('rate limit exceeded', {
      policy: v.policy,
      rule: v.rule,
      client: hashClient(v.clientId),
      route: v.route,
      retryAfterMs: v.retryAfterMs,
      requestId: v.requestId,
    });
  }

  /** Reports what the last second left out (called at the next second, or by a timer). */
  #flush(second: number): void {
    if (this.#dropped > 0) {
      this.#log.info('rate limit exceeded: denials not logged (already logged for their client this window, or over the per-second cap)', {
        dropped: this.#dropped,
      });
      this.logged++;
    }
    this.#second = second;
    this.#linesThisSecond = 0;
    this.#dropped = 0;
  }

  /** Writes the pending count now (a timer calls this, so a flood that stops is still reported). */
  flush(): void {
    this.#flush(Math.floor(this.#now() / 1000));
  }
}
