import { Writable } from 'node:stream';
import winston from 'winston';
import { describe, expect, it } from 'vitest';
import { ViolationLog } from './violations.js';

/** A JSON logger whose lines land in an array. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write: (chunk, _enc, cb) => {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      cb();
    },
  });
  const logger = winston.createLogger({ level: 'info', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  return { logger, lines };
}

describe('ViolationLog', () => {
  it('writes a bounded number of lines for a flood of 100,000 denials, and counts what it left out exactly', () => {
    const { logger, lines } = capture();
    let now = 1_700_000_000_000;
    const v = new ViolationLog({ logger, now: () => now, windowMs: 60_000, perSecond: 20 });
    const hash = (id: string) => `h(${id})`;
    for (let i = 0; i < 100_000; i++) {
      now += 0.1; // 10 s of denials, 10,000 a second
      v.denied({ policy: 'burst', rule: 'default', clientId: `k:client-${i % 500}`, route: '/resource', retryAfterMs: 100, requestId: undefined }, hash);
    }
    v.flush();
    const denials = lines.filter((l) => l.message === 'rate limit exceeded');
    const summaries = lines.filter((l) => String(l.message).startsWith('rate limit exceeded: denials not logged'));
    expect(denials.length).toBeLessThanOrEqual(20 * 11); // at most 20 a second
    expect(lines.length).toBeLessThanOrEqual(300);
    const dropped = summaries.reduce((n, l) => n + (l.dropped as number), 0);
    expect(denials.length + dropped).toBe(100_000);
    expect(v.droppedTotal).toBe(dropped);
    expect(denials[0]).toMatchObject({ policy: 'burst', rule: 'default', client: 'h(k:client-0)', route: '/resource', retryAfterMs: 100 });
    expect(JSON.stringify(lines)).not.toContain('"k:client-');
  });

  it('logs a client\'s first denial in each window, not the ones after it', () => {
    const { logger, lines } = capture();
    let now = 0;
    const v = new ViolationLog({ logger, now: () => now, windowMs: 60_000, perSecond: 100 });
    for (let i = 0; i < 50; i++) v.denied({ policy: 'p', rule: 'r', clientId: 'k:a', route: '/', retryAfterMs: 1, requestId: 'req-1' }, (x) => x);
    now = 60_000;
    v.denied({ policy: 'p', rule: 'r', clientId: 'k:a', route: '/', retryAfterMs: 1, requestId: 'req-2' }, (x) => x);
    const denials = lines.filter((l) => l.message === 'rate limit exceeded');
    expect(denials.map((l) => l.requestId)).toEqual(['req-1', 'req-2']);
  });
});
