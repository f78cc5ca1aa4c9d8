/**
 * @module resilience/circuit-breaker
 *
 * Whether this node should ask Redis at all. Closed (healthy) until
 * `failureThreshold` calls in a row fail or time out; then open, and requests
 * are decided in memory. It closes again on the first success, which in
 * practice comes from the health monitor's background probe, so no request
 * ever waits on a Redis that is away. Each change is reported once.
 */
export type BreakerState = 'closed' | 'open';

export type CircuitBreakerOptions = {
  failureThreshold?: number;
  onChange?: (state: BreakerState, reason: string) => void;
  /** Start open (Redis did not answer at start-up). */
  startOpen?: boolean;
};

export class CircuitBreaker {
  #state: BreakerState;
  #failures = 0;
  readonly #threshold: number;
  readonly #onChange: (state: BreakerState, reason: string) => void;

  constructor(options: CircuitBreakerOptions = {}) {
    this.#threshold = options.failureThreshold ?? 3;
    this.#onChange = options.onChange ?? (() => {});
    this.#state = options.startOpen ? 'open' : 'closed';
  }

  get state(): BreakerState {
    return this.#state;
  }

  get isOpen(): boolean {
    return this.#state === 'open';
  }

  success(): void {
    this.#failures = 0;
    if (this.#state === 'open') {
      this.#state = 'closed';
      this.#onChange('closed', 'redis answered');
    }
  }

  failure(reason: string): void {
    this.#failures++;
    if (this.#state === 'closed' && this.#failures >= this.#threshold) {
      this.#state = 'open';
      this.#onChange('open', reason);
    }
  }

  /** Opens at once (start-up without Redis). */
  trip(reason: string): void {
    if (this.#state === 'open') return;
    this.#state = 'open';
    this.#onChange('open', reason);
  }
}
