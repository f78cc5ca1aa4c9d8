/**
 * @module log/logger
 *
 * Structured JSON logs through winston. Nothing here ever receives an API key:
 * callers log the keyed hash of the id (`KeyHasher`) when they must name a client.
 */
import winston from 'winston';

export type Logger = winston.Logger;

export function createLogger(level = 'info', options: { silent?: boolean } = {}): Logger {
  return winston.createLogger({
    level,
    silent: options.silent ?? false,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: 'tandem-limiter' },
    transports: [new winston.transports.Console()],
  });
}

/** A logger that drops everything: for unit tests and benchmarks. */
export function silentLogger(): Logger {
  return createLogger('error', { silent: true });
}

/**
 * Calls `log` at most once per `everyMs` and tells it how many calls were
 * swallowed since, so a fault hit by every request is logged, not flooded.
 */
export function throttled(everyMs: number, now: () => number = Date.now): (log: (suppressed: number) => void) => void {
  let last = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  return (log) => {
    const t = now();
    if (t - last < everyMs) {
      suppressed++;
      return;
    }
    last = t;
    const n = suppressed;
    suppressed = 0;
    log(n);
  };
}
