import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from './circuit-breaker.js';

describe('CircuitBreaker', () => {
  it('opens after the threshold of failures in a row, closes on the first success, reports each change once', () => {
    const changes: string[] = [];
    const b = new CircuitBreaker({ failureThreshold: 3, onChange: (s) => changes.push(s) });
    b.failure('x');
    b.failure('x');
    b.success(); // resets the count
    b.failure('x');
    b.failure('x');
    expect(b.isOpen).toBe(false);
    b.failure('x');
    expect(b.isOpen).toBe(true);
    b.failure('x');
    b.failure('x');
    b.success();
    b.success();
    expect(b.state).toBe('closed');
    expect(changes).toEqual(['open', 'closed']);
  });

  it('can start open and be tripped at once', () => {
    expect(new CircuitBreaker({ startOpen: true }).isOpen).toBe(true);
    const b = new CircuitBreaker();
    b.trip('start-up');
    expect(b.isOpen).toBe(true);
  });
});
