/**
 * @module http/rate-limit-middleware
 *
 * The limiter as a Hono middleware. Identifies the client by its API key
 * (`X-API-Key` by default), asks the lease manager, and either lets the request
 * through with the rate-limit headers set and `c.get('rateLimit')` filled in, or
 * answers 429 itself. The API key is only ever passed to the limiter: never
 * logged, never put in a response.
 *
 * Status codes: 401 missing or empty key; 400 key over 256 bytes, with control
 * characters, or sent in more than one header (Node joins repeated headers
 * with ", ", which would make a new key of them); 429 limited; 503 when the
 * global store cannot answer in time.
 *
 * @example
 * const app = new Hono<RateLimitEnv>();
 * app.use('/api/*', createMiddleware({ limiter, policy }));
 * app.get('/api/x', (c) => c.json({ left: c.get('rateLimit').remaining }));
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { type Decision, type Limiter, type Policy, StoreUnavailableError } from '../core/types.js';
import { rateLimitHeader, rateLimitPolicyHeader, resetSeconds, retryAfterSeconds } from './rate-limit-headers.js';

/** What a limited route can read from `c.get('rateLimit')`. */
export type RateLimitInfo = {
  /** Policy name, as in the RateLimit headers. */
  policy: string;
  /** Bucket capacity. */
  limit: number;
  /** Tokens left (an estimate across nodes). */
  remaining: number;
  /** Seconds until the bucket is full again. */
  reset: number;
};

export type RateLimitEnv = { Variables: { rateLimit: RateLimitInfo } };

export type { Limiter };

export type RateLimitOptions = {
  limiter: Limiter;
  /** The policy for every request, or a function choosing it per request. */
  policy: Policy | ((c: Context) => Policy);
  /** Header carrying the API key. Default `X-API-Key`. */
  keyHeader?: string;
};

export const MAX_KEY_BYTES = 256;
const CONTROL = /[\x00-\x1f\x7f]/;

/**
 * Whether the request carried the header more than once. Node joins repeated
 * headers into one value with ", "; only the raw headers tell them apart, and
 * they are read only when the joined value could be such a join.
 */
function repeatedHeader(c: Context, value: string, lowerName: string): boolean {
  if (!value.includes(',')) return false;
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const raw = incoming?.rawHeaders;
  if (!raw) return false;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === lowerName) seen++;
  return seen > 1;
}

/** Validates the key: null when fine, else the status and message to answer with. */
export function checkApiKey(key: string | undefined): { status: 400 | 401; detail: string } | null {
  if (key === undefined || key === '') return { status: 401, detail: 'Missing API key' };
  // Header values are byte strings (one char per byte), so length is the byte count.
  if (key.length > MAX_KEY_BYTES) return { status: 400, detail: `API key longer than ${MAX_KEY_BYTES} bytes` };
  if (CONTROL.test(key)) return { status: 400, detail: 'API key contains control characters' };
  return null;
}

export function createMiddleware(options: RateLimitOptions): MiddlewareHandler<RateLimitEnv> {
  const { limiter } = options;
  const header = options.keyHeader ?? 'X-API-Key';
  const lowerHeader = header.toLowerCase();
  const policyFor = typeof options.policy === 'function' ? options.policy : () => options.policy as Policy;
  if (typeof limiter?.check !== 'function') throw new TypeError('createMiddleware: options.limiter.check must be a function');

  return async function rateLimit(c, next) {
    const key = c.req.header(header);
    const bad = checkApiKey(key);
    if (bad) return c.json({ detail: bad.detail }, bad.status);
    if (repeatedHeader(c, key as string, lowerHeader)) return c.json({ detail: `${header} sent more than once` }, 400);

    let decision: Decision;
    try {
      const policy = policyFor(c);
      const r = limiter.check(key as string, policy);
      decision = r instanceof Promise ? await r : r;
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        c.header('Retry-After', '1');
        return c.json({ detail: 'Rate limiter unavailable' }, 503);
      }
      throw err;
    }

    const reset = resetSeconds(decision);
    const headers: Record<string, string> = {
      'RateLimit-Policy': rateLimitPolicyHeader(decision.policy),
      RateLimit: rateLimitHeader(decision),
      'X-RateLimit-Limit': String(decision.limit),
      'X-RateLimit-Remaining': String(decision.remaining),
      'X-RateLimit-Reset': String(reset),
    };
    if (!decision.allowed) {
      headers['Retry-After'] = String(retryAfterSeconds(decision));
      headers['Content-Type'] = 'application/json';
      const detail = decision.shed ? 'Too many new clients: retry shortly' : 'Too Many Requests';
      const body = JSON.stringify({ detail, retry_after_ms: decision.retryAfterMs });
      // A plain-object init lets @hono/node-server write the headers without building a Headers object.
      return new Response(body, { status: 429, headers });
    }
    // On @hono/node-server the headers go straight onto Node's response, merged when the
    // handler's response is written, instead of building a fetch Headers object per request
    // (Hono does that for more than one header). Elsewhere (app.request, other runtimes) c.header.
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    if (outgoing && typeof outgoing.setHeader === 'function' && !outgoing.headersSent) {
      for (const name in headers) outgoing.setHeader(name, headers[name] as string);
    } else {
      for (const name in headers) c.header(name, headers[name]);
    }
    c.set('rateLimit', { policy: decision.policy.name, limit: decision.limit, remaining: decision.remaining, reset });
    await next();
  };
}
