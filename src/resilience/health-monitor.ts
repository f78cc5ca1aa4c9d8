/**
 * @module resilience/health-monitor
 *
 * The background side of resilience, so that no request ever waits on it:
 * - while Redis is healthy, a heartbeat every `heartbeatIntervalMs` (default
 *   250 ms) records this node in the fleet set, with an expiry of four
 *   intervals, and learns how many nodes are alive (degraded `local` mode
 *   splits the limit by that number). A node that joins is counted by the others
 *   within one interval; one that leaves gracefully too (it removes itself); one
 *   that crashes within four intervals plus one. A failed heartbeat counts
 *   against the circuit breaker like a failed lease; a successful one proves
 *   nothing about leases and closes nothing;
 * - while the breaker is open, a probe every `probeIntervalMs` (a bounded PING)
 *   moves it to half-open when Redis answers, so the next request's lease is
 *   the trial that closes it. A node with no request to make the trial makes
 *   one itself, a lease on a probe key, on its next round.
 *
 * Every round is guarded: whatever a round throws is logged (throttled) and the
 * next round is scheduled anyway, so the monitor cannot stop for good.
 */
import { randomUUID } from 'node:crypto';
import { type Logger, throttled } from '../log/logger.js';
import type { BucketStore, FleetStore, StoreHealth } from '../core/types.js';
import type { CircuitBreaker } from './circuit-breaker.js';

export type HealthMonitorOptions = {
  store: BucketStore & FleetStore & StoreHealth;
  breaker: CircuitBreaker;
  logger: Logger;
  nodeId?: string;
  heartbeatIntervalMs?: number;
  probeIntervalMs?: number;
};

/** The id of the probe key the monitor's own trial lease uses (hashed like any client id). */
export const PROBE_CLIENT_ID = '\u0000health-probe';
const PROBE_POLICY = { name: 'health-probe', algorithm: 'token_bucket', capacity: 1, refillPerSec: 1 } as const;

export class HealthMonitor {
  readonly nodeId: string;
  /** Live nodes as last counted in Redis; 1 until this node has seen Redis. */
  liveNodes = 1;
  /** Whether the last round reached Redis (a heartbeat, probe or trial answered). */
  redisUp = false;
  readonly #store: BucketStore & FleetStore & StoreHealth;
  readonly #breaker: CircuitBreaker;
  readonly #log: Logger;
  readonly #heartbeatMs: number;
  readonly #probeMs: number;
  readonly #logRoundFailure = throttled(10_000);
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The round in progress, so stop() can let it finish before leaving. */
  #current: Promise<void> | undefined;

  constructor(options: HealthMonitorOptions) {
    this.#store = options.store;
    this.#breaker = options.breaker;
    this.#log = options.logger;
    this.nodeId = options.nodeId ?? randomUUID();
    this.#heartbeatMs = options.heartbeatIntervalMs ?? 250;
    this.#probeMs = options.probeIntervalMs ?? 200;
  }

  /** How long a heartbeat keeps this node counted. */
  get heartbeatTtlMs(): number {
    return this.#heartbeatMs * 4;
  }

  /** Starts the rounds; resolves when the first one is done (bounded by the store's deadline). */
  start(): Promise<void> {
    this.#run();
    return this.#current ?? Promise.resolve();
  }

  #run(): void {
    this.#current = this.#guardedRound();
  }

  async #guardedRound(): Promise<void> {
    try {
      await this.round();
    } catch (err) {
      this.#logRoundFailure((suppressed) =>
        this.#log.error('health monitor round failed; next round scheduled', { error: (err as Error).message, suppressed }),
      );
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.#run(), this.#breaker.isOpen ? this.#probeMs : this.#heartbeatMs);
    this.#timer.unref();
  }

  /** One round: a probe or trial while degraded, a heartbeat while healthy. Public for tests. */
  async round(): Promise<void> {
    if (this.#stopped) return;
    if (this.#breaker.state === 'open') {
      this.redisUp = await this.#store.ping();
      if (this.redisUp) this.#breaker.probeSucceeded();
      return;
    }
    if (this.#breaker.awaitingTrial && this.#breaker.tryCall()) {
      try {
        await this.#store.lease(PROBE_CLIENT_ID, PROBE_POLICY, { need: 0, extra: 0, leaseTtlMs: 1000 });
        this.#breaker.success();
      } catch (err) {
        this.#breaker.failure((err as Error).message);
      }
    }
    if (this.#stopped || this.#breaker.isOpen) return;
    try {
      this.liveNodes = await this.#store.heartbeat(this.nodeId, this.heartbeatTtlMs);
      this.redisUp = true;
    } catch (err) {
      this.redisUp = false;
      this.#breaker.failure((err as Error).message);
    }
  }

  /** Stops probing and takes this node out of the live count. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    // A heartbeat in flight would put this node back into the count after it left.
    await this.#current;
    if (!this.#breaker.isOpen) await this.#store.leave(this.nodeId);
  }
}
