/**
 * @module http/policy-handler
 *
 * The service's limited routes: every request but the service's own endpoints
 * goes through the policy engine, and the outcome becomes the response:
 * - 200 with the rate-limit headers of every limit of the rule (`RateLimit-Policy`
 *   and `RateLimit` list them all; the legacy `X-RateLimit-*` and the body's
 *   `rate_limit` follow the most constraining one) and the built-in JSON answer;
 * - 429 with the same headers, `Retry-After`, and `{ detail, retry_after_ms, policy }`
 *   naming the limit that denied;
 * - 404 when no rule matches, 405 with `Allow` for a method the service does not
 *   answer, 400/401/403 for a bad or missing identity or a listed client, 503 when
 *   the store cannot answer in `closed` mode. Always JSON; nothing a client sends
 *   produces a 500.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { perObject } from '../core/per-object.js';
import { type Decision, type Policy, StoreUnavailableError } from '../core/types.js';
import type { Outcome, PolicyEngine, RequestInput } from '../policy/engine.js';
import { mostConstraining, rateLimitHeader, rateLimitPolicyList, resetSeconds, retryAfterSeconds } from './rate-limit-headers.js';
import type { ViolationLog } from '../log/violations.js';
import type { Forward } from './upstream.js';
import type { RateLimitEnv } from './rate-limit-middleware.js';
import type { RequestCounters, RequestDecision } from '../metrics/request-counters.js';

type NodeBindings = { incoming?: IncomingMessage };

export const SERVED_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD']);
const ALLOW = [...SERVED_METHODS].join(', ');

/**
 * The request as the engine reads it, from Node's parsed headers when on
 * @hono/node-server (no fetch Headers built). A class rather than an object of
 * closures: a request allocates one small object, its methods are shared.
 */
class NodeRequestInput implements RequestInput {
  readonly peer: RequestInput['peer'];
  constructor(
    readonly method: string,
    readonly path: string,
    private readonly incoming: IncomingMessage,
  ) {
    this.peer = { remoteAddress: incoming.socket?.remoteAddress, forwardedFor: incoming.headers['x-forwarded-for'] as string | undefined };
  }

  header(n: string): string | undefined {
    const v = this.incoming.headers[n];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  headerCount(n: string): number {
    const v = this.incoming.headers[n];
    // Node joins most repeated headers with ", ": count them in the raw list.
    if (v === undefined || (typeof v === 'string' && !v.includes(','))) return v === undefined ? 0 : 1;
    let seen = 0;
    const raw = this.incoming.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === n) seen++;
    return seen;
  }
}

function requestInput(c: Context): RequestInput {
  const incoming = (c.env as NodeBindings | undefined)?.incoming;
  if (incoming) return new NodeRequestInput(c.req.method, c.req.path, incoming);
  return {
    method: c.req.method,
    path: c.req.path,
    header: (n) => c.req.header(n),
    headerCount: (n) => (c.req.header(n) === undefined ? 0 : 1),
    peer: { remoteAddress: undefined, forwardedFor: c.req.header('x-forwarded-for') },
  };
}

function limitHeaders(o: { rule: { limits: readonly Policy[] }; decisions: Decision[] }, top: Decision): Record<string, string> {
  return {
    'RateLimit-Policy': rateLimitPolicyList(o.rule.limits),
    RateLimit: o.decisions.map(rateLimitHeader).join(', '),
    'X-RateLimit-Limit': String(top.limit),
    'X-RateLimit-Remaining': String(top.remaining),
    'X-RateLimit-Reset': String(resetSeconds(top)),
  };
}

/**
 * A JSON answer with the rate-limit headers, as a Response whose init is a plain object:
 * on @hono/node-server it is written with one `writeHead(status, headers)` (Node
 * validates each header once, in `_storeHeader`) and no fetch `Headers` object, instead
 * of a `setHeader` per header (validated and stored in a second object first) plus
 * Hono's own response (profiled: `setHeader` 4.2 µs per request under the cold Zipf load).
 * Headers already set on Node's response (`Connection: close` while draining) are merged
 * by Node.
 */
function limitedResponse(status: number, body: string, headers: Record<string, string>): Response {
  headers['Content-Type'] = 'application/json';
  return new Response(body, { status, headers });
}

/** A number as JSON writes it (finite numbers: their decimal; others: null). */
const jsonNumber = (n: number): string => (Number.isFinite(n) ? String(n) : 'null');

/** The policy's name as a JSON string, cached per policy object. */
const policyJsonName = perObject((p: Policy): string => JSON.stringify(p.name));

/**
 * The built-in answer's body, `{"ok":true,"rate_limit":{policy, limit, remaining, reset}}`,
 * written as `JSON.stringify` writes it but from a per-policy cached name (the nested
 * object and its serialisation cost every admitted request; app.test checks the two agree).
 */
export function allowedBody(top: Decision): string {
  return `{"ok":true,"rate_limit":{"policy":${policyJsonName(top.policy)},"limit":${jsonNumber(top.limit)},"remaining":${jsonNumber(top.remaining)},"reset":${jsonNumber(resetSeconds(top))}}}`;
}

/** The 429 body, `{"detail", "retry_after_ms", "policy"}`, as `JSON.stringify` writes it. */
export function deniedBody(detail: string, retryAfterMs: number, policy: Policy): string {
  return `{"detail":${JSON.stringify(detail)},"retry_after_ms":${jsonNumber(retryAfterMs)},"policy":${policyJsonName(policy)}}`;
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { ...headers, 'Content-Type': 'application/json' } });

export type PolicyHandlerOptions = {
  /** With `UPSTREAM_URL`: admitted requests are forwarded there instead of the built-in answer. */
  forward?: Forward;
  counters?: RequestCounters;
  violations?: ViolationLog;
  /** Names a client in logs (the keyed hash). */
  hashClient?: (clientId: string) => string;
};

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const DENIED_DETAIL = 'Too Many Requests';
const SHED_DETAIL = 'Too many new clients: retry shortly';

/** What `ratelimit_requests_total` counts an outcome as. */
export function requestDecision(o: Outcome): RequestDecision {
  switch (o.kind) {
    case 'no-rule':
      return 'no_rule';
    case 'method-not-allowed':
      return 'method_not_allowed';
    case 'refused':
      return o.status === 403 ? 'deny_listed' : 'refused';
    case 'allow-listed':
      return 'allow_listed';
    case 'denied':
      return o.denied.shed ? 'shed' : 'denied';
    case 'allowed':
      if (o.shadowDenied) return 'shadow_denied';
      return o.decisions.some((d) => d.source === 'fail_open') ? 'fail_open' : 'allowed';
  }
}

export function createPolicyHandler(engine: PolicyEngine, o: PolicyHandlerOptions = {}) {
  const counters = o.counters;
  const unavailable = (err: unknown): Response => {
    if (err instanceof StoreUnavailableError) {
      counters?.request('', 'unavailable');
      return json(503, { detail: 'Rate limiter unavailable' }, { 'Retry-After': '1' });
    }
    throw err;
  };
  // Not async: a request decided from held tokens is answered without a promise.
  return function limitedRoute(c: Context<RateLimitEnv>): Response | Promise<Response> {
    let r: Outcome | Promise<Outcome>;
    try {
      r = engine.decide(requestInput(c));
    } catch (err) {
      return unavailable(err);
    }
    if (r instanceof Promise) return r.then((outcome) => respond(c, outcome), unavailable);
    return respond(c, r);
  };

  function respond(c: Context<RateLimitEnv>, outcome: Outcome): Response | Promise<Response> {
    if (counters) {
      counters.request('rule' in outcome && outcome.rule ? outcome.rule.name : '', requestDecision(outcome));
      if (outcome.kind === 'allowed' || outcome.kind === 'denied') for (const d of outcome.decisions) counters.limit(d, outcome.rule.cost);
    }
    switch (outcome.kind) {
      case 'no-rule':
        return json(404, { detail: 'Not Found' });
      case 'method-not-allowed':
        return json(405, { detail: 'Method Not Allowed' }, { Allow: ALLOW });
      case 'refused':
        return json(outcome.status, { detail: outcome.detail });
      case 'allow-listed':
        return o.forward ? o.forward(c, {}) : c.json({ ok: true });
      case 'denied': {
        const given = c.req.header('x-request-id');
        const requestId = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
        if (o.violations && o.hashClient) {
          o.violations.denied(
            { policy: outcome.denied.policy.name, rule: outcome.rule.name, clientId: outcome.clientId, route: c.req.path, retryAfterMs: outcome.denied.retryAfterMs, requestId },
            o.hashClient,
          );
        }
        const top = mostConstraining(outcome.decisions);
        const denied = outcome.denied;
        const retryMs = Math.max(...outcome.decisions.filter((d) => !d.allowed).map((d) => d.retryAfterMs));
        const headers = limitHeaders(outcome, top);
        headers['Retry-After'] = String(retryAfterSeconds({ ...denied, retryAfterMs: retryMs }));
        headers['X-Request-Id'] = requestId;
        return limitedResponse(429, deniedBody(denied.shed ? SHED_DETAIL : DENIED_DETAIL, retryMs, denied.policy), headers);
      }
      case 'allowed': {
        const top = mostConstraining(outcome.decisions);
        const headers = limitHeaders(outcome, top);
        if (o.forward) return o.forward(c, headers);
        // The built-in answer ends the request here: nothing downstream reads `c.get('rateLimit')`.
        return limitedResponse(200, allowedBody(top), headers);
      }
    }
  }
}
