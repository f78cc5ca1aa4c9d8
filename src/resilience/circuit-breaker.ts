/**
 * @module resilience/circuit-breaker
 *
 * Whether this node should ask Redis at all. Three states:
 *
 * - `closed` (global mode): every lease call goes to Redis. `failureThreshold`
 *   failed or timed-out calls in a row open it.
 * - `open` (degraded): no request asks Redis; requests are decided in memory.
 *   The health monitor's background probe (a bounded PING) moves it to
 *   half-open when Redis answers.
 * - `half-open` (still degraded): a PING proves only that a socket answers, not
 *   that leases work (an old script, a Cluster slot whose master is down). So
 *   one real lease call at a time goes through as a trial; its success closes
 *   the breaker, its failure opens it again until the next probe. Nothing else
 *   (a PING, a heartbeat) closes it.
 *
 * `onChange` is called on every change between degraded (open or half-open)
 * and closed, never for open ↔ half-open: those are not mode changes. Callers
 * throttle what they log.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export type CircuitBreakerOptions = {
  failureThreshold?: number;
  /** A mode change: `closed` (global) or `open` (degraded). */
  onChange?: (state: 'closed' | 'open', reason: string) => void;
  /** Start open (Redis did not answer at start-up). */
  startOpen?: boolean;
  /** A trial whose outcome was never reported (a bug) is given up after this long, so half-open cannot stick. Default 5000. */
  staleTrialMs?: number;
  now?: () => number;
};

export class CircuitBreaker {
  #state: BreakerState;
  #failures = 0;
  #trialInFlight = false;
  /** Trials granted since the breaker went half-open. */
  #trials = 0;
  #trialAt = 0;
  readonly #staleTrialMs: number;
  readonly #now: () => number;
  readonly #threshold: number;
  readonly #onChange: (state: 'closed' | 'open', reason: string) => void;

  constructor(options: CircuitBreakerOptions = {}) {
    this.#threshold = options.failureThreshold ?? 3;
    this.#onChange = options.onChange ?? (() => {});
    this.#state = options.startOpen ? 'open' : 'closed';
    this.#staleTrialMs = options.staleTrialMs ?? 5000;
    this.#now = options.now ?? (() => performance.now());
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Degraded: open or half-open. Background work (refill-ahead, returns) waits for closed. */
  get isOpen(): boolean {
    return this.#state !== 'closed';
  }

  /**
   * May a lease call go to the store now? Always when closed; when half-open,
   * for one trial call at a time (the caller must report its outcome with
   * `success` or `failure`); never when open.
   */
  tryCall(): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'half-open' && (!this.#trialInFlight || this.#now() - this.#trialAt > this.#staleTrialMs)) {
      this.#trialInFlight = true;
      this.#trialAt = this.#now();
      this.#trials++;
      return true;
    }
    return false;
  }

  /** A lease call worked. Closes a half-open breaker; a success while open (a call sent before it opened) proves nothing. */
  success(): void {
    if (this.#state === 'closed') {
      this.#failures = 0;
    } else if (this.#state === 'half-open') {
      this.#trialInFlight = false;
      this.#failures = 0;
      this.#state = 'closed';
      this.#onChange('closed', 'a trial lease succeeded');
    }
  }

  /** A call failed or timed out. */
  failure(reason: string): void {
    if (this.#state === 'half-open') {
      // The trial failed: back to open until the next probe.
      this.#trialInFlight = false;
      this.#state = 'open';
      return;
    }
    this.#failures++;
    if (this.#state === 'closed' && this.#failures >= this.#threshold) {
      this.#state = 'open';
      this.#onChange('open', reason);
    }
  }

  /** The probe reached Redis: let one trial lease through. */
  probeSucceeded(): void {
    if (this.#state === 'open') {
      this.#state = 'half-open';
      this.#trialInFlight = false;
      this.#trials = 0;
    }
  }

  /** Half-open and no request has tried a lease since: the monitor makes the trial itself. */
  get awaitingTrial(): boolean {
    return this.#state === 'half-open' && this.#trials === 0;
  }

  /** Opens at once (start-up without Redis). */
  trip(reason: string): void {
    if (this.#state !== 'closed') return;
    this.#state = 'open';
    this.#onChange('open', reason);
  }
}
