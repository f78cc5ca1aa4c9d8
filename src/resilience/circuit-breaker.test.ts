import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from './circuit-breaker.js';

describe('CircuitBreaker', () => {
  it('opens after the threshold of failures in a row; a success while closed resets the count', () => {
    const changes: string[] = [];
    const b = new CircuitBreaker({ failureThreshold: 3, onChange: (s) => changes.push(s) });
    b.failure('x');
    b.failure('x');
    b.success(); // resets the count
    b.failure('x');
    b.failure('x');
    expect(b.isOpen).toBe(false);
    b.failure('x');
    expect(b.state).toBe('open');
    expect(changes).toEqual(['open']);
  });

  it('closes only when a trial lease succeeds after a probe, never on a success while open', () => {
    const changes: string[] = [];
    const b = new CircuitBreaker({ failureThreshold: 1, onChange: (s) => changes.push(s) });
    b.failure('x');
    b.success(); // a call sent before it opened: proves nothing
    expect(b.state).toBe('open');
    expect(b.tryCall()).toBe(false); // open: no call at all
    b.probeSucceeded(); // PING answered
    expect(b.state).toBe('half-open');
    expect(b.isOpen).toBe(true); // still degraded
    expect(b.tryCall()).toBe(true); // the one trial
    expect(b.tryCall()).toBe(false); // one at a time
    b.success();
    expect(b.state).toBe('closed');
    expect(changes).toEqual(['open', 'closed']);
  });

  it('a failed trial opens it again without a mode change: PING answering while leases fail does not flap', () => {
    const changes: string[] = [];
    const b = new CircuitBreaker({ failureThreshold: 3, onChange: (s) => changes.push(s) });
    b.trip('down');
    for (let i = 0; i < 10; i++) {
      b.probeSucceeded();
      expect(b.tryCall()).toBe(true);
      b.failure('old script');
      expect(b.state).toBe('open');
    }
    expect(changes).toEqual(['open']);
  });

  it('reports a half-open breaker nobody has tried yet, so the monitor can make the trial', () => {
    const b = new CircuitBreaker({ startOpen: true });
    expect(b.awaitingTrial).toBe(false);
    b.probeSucceeded();
    expect(b.awaitingTrial).toBe(true);
    b.tryCall();
    expect(b.awaitingTrial).toBe(false);
  });

  it('gives up a trial whose outcome never came, so it cannot stay half-open for good', () => {
    let now = 0;
    const b = new CircuitBreaker({ startOpen: true, staleTrialMs: 5000, now: () => now });
    b.probeSucceeded();
    expect(b.tryCall()).toBe(true); // never reported
    now = 4000;
    expect(b.tryCall()).toBe(false);
    now = 6000;
    expect(b.tryCall()).toBe(true);
  });

  it('can start open and be tripped at once', () => {
    expect(new CircuitBreaker({ startOpen: true }).isOpen).toBe(true);
    const b = new CircuitBreaker();
    b.trip('start-up');
    expect(b.isOpen).toBe(true);
  });
});
