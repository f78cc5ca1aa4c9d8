/**
 * @module resilience/health-monitor
 *
 * The background side of resilience, so that no request ever waits on it:
 * - while Redis is healthy, a heartbeat every `heartbeatIntervalMs` records this
 *   node in the fleet set and learns how many nodes are alive (degraded `local`
 *   mode splits the limit by that number); a failed heartbeat counts against the
 *   circuit breaker like a failed lease;
 * - while the breaker is open, a probe every `probeIntervalMs` (a bounded PING)
 *   closes it on the first answer, so the node is back in global mode within
 *   about a probe interval of Redis answering.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import type { GlobalStore } from '../store/global-store.js';
import type { CircuitBreaker } from './circuit-breaker.js';

export type HealthMonitorOptions = {
  store: GlobalStore;
  breaker: CircuitBreaker;
  logger: Logger;
  nodeId?: string;
  heartbeatIntervalMs?: number;
  probeIntervalMs?: number;
};

export class HealthMonitor {
  readonly nodeId: string;
  /** Live nodes as last counted in Redis; 1 until this node has seen Redis. */
  liveNodes = 1;
  readonly #store: GlobalStore;
  readonly #breaker: CircuitBreaker;
  readonly #heartbeatMs: number;
  readonly #probeMs: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The round in progress, so stop() can let it finish before leaving. */
  #current: Promise<void> | undefined;

  constructor(options: HealthMonitorOptions) {
    this.#store = options.store;
    this.#breaker = options.breaker;
    this.nodeId = options.nodeId ?? randomUUID();
    this.#heartbeatMs = options.heartbeatIntervalMs ?? 1000;
    this.#probeMs = options.probeIntervalMs ?? 200;
  }

  start(): void {
    this.#run();
  }

  #run(): void {
    this.#current = this.#tick();
  }

  /** One round: a probe while the breaker is open, then a heartbeat if Redis answers. */
  async #tick(): Promise<void> {
    if (this.#stopped) return;
    if (this.#breaker.isOpen && (await this.#store.ping())) this.#breaker.success();
    if (this.#stopped) return;
    if (!this.#breaker.isOpen) {
      try {
        this.liveNodes = await this.#store.heartbeat(this.nodeId, this.#heartbeatMs * 3);
        this.#breaker.success();
      } catch (err) {
        this.#breaker.failure((err as Error).message);
      }
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.#run(), this.#breaker.isOpen ? this.#probeMs : this.#heartbeatMs);
    this.#timer.unref();
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
