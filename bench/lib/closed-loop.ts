/** A closed-loop autocannon run of GET /resource with a picked API key per request, and what it saw. */
import autocannon from 'autocannon';
import type { KeyPicker } from './keys.js';

export type ClosedLoopResult = { requests: number; seconds: number; ok: number; limited: number; errors: number; p50: number; p99: number; p999: number };

export type ClosedLoopOptions = {
  urls: string[];
  pick: KeyPicker;
  seconds: number;
  connections: number;
  /** Sent with every request, besides the API key. */
  headers?: Record<string, string>;
  /** autocannon's options, when the defaults will not do (sampleInt, timeout). */
  tuning?: { sampleInt?: number; timeout?: number };
};

export async function closedLoop(o: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const headers = o.headers ?? {};
  const r = await autocannon({
    url: o.urls.map((u) => `${u}/resource`) as unknown as string,
    connections: o.connections,
    duration: o.seconds,
    ...o.tuning,
    requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, headers: { ...req.headers, ...headers, 'x-api-key': o.pick() } }) }],
  });
  const codes = r.statusCodeStats ?? {};
  const ok = codes['200']?.count ?? 0;
  const limited = codes['429']?.count ?? 0;
  return {
    requests: r.requests.total,
    seconds: r.duration,
    ok,
    limited,
    errors: r.errors + r.timeouts + r.requests.total - ok - limited,
    p50: r.latency.p50,
    p99: r.latency.p99,
    p999: r.latency.p99_9,
  };
}
