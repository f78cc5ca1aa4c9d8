/**
 * @module policy/engine
 *
 * Decides one request under the compiled policy document:
 * 1. the first rule whose match holds (none: the route is not limited, 404), and
 *    a method the service answers (else 405, before anything is spent);
 * 2. its deny list (403) and allow list (not limited);
 * 3. the identity its limits are kept per: the API key (registry flags and
 *    unknown keys apply), the client IP (trusted-proxy walk), a header, or a
 *    verified JWT claim; a missing or bad one is a 4xx, never a 5xx;
 * 4. every limit of the rule, all or nothing: each reserves `cost` tokens, and
 *    they are spent only if all allowed; a request denied by one limit spends
 *    nothing from the others. One limit takes the lease manager's fast path.
 * 5. `shadow` rules decide and count but never deny.
 *
 * Buckets belong to (policy name, identity): rules naming the same policy share
 * it; identities of different kinds never collide (`k:`, `ip:`, `h:`, `c:`).
 */
import ipaddr from 'ipaddr.js';
import type { Decision, MultiLimiter, Policy } from '../core/types.js';
import type { ClientIp, PeerInfo } from './client-ip.js';
import type { JwtFailure, JwtVerifier } from './jwt.js';
import type { ClientRegistry } from './registry.js';
import type { CompiledPolicies, CompiledRule, RequestFacts } from './rules.js';
import { onList } from './rules.js';

export const MAX_IDENTITY_BYTES = 256;
const CONTROL = /[\x00-\x1f\x7f]/;

/** What the engine reads of a request. */
export type RequestInput = {
  method: string;
  path: string;
  /** A header by its lower-case name (Node joins repeated ones with ", "). */
  header(lowerName: string): string | undefined;
  /** How many times the header was sent. */
  headerCount(lowerName: string): number;
  peer: PeerInfo;
};

export type Outcome =
  | { kind: 'no-rule' }
  | { kind: 'method-not-allowed'; rule: CompiledRule }
  | { kind: 'refused'; status: 400 | 401 | 403; detail: string; rule?: CompiledRule }
  | { kind: 'allow-listed'; rule: CompiledRule }
  /** Every limit allowed (or a shadow rule denied: `shadowDenied`). `decisions` follow `rule.limits`. */
  | { kind: 'allowed'; rule: CompiledRule; clientId: string; decisions: Decision[]; shadowDenied: boolean }
  | { kind: 'denied'; rule: CompiledRule; clientId: string; decisions: Decision[]; denied: Decision };

export type EngineDeps = {
  limiter: MultiLimiter;
  /** The document in force; read per request, so a reload is a swap. */
  policies: () => CompiledPolicies;
  registry?: ClientRegistry | undefined;
  jwt?: JwtVerifier | undefined;
  clientIp: (peer: PeerInfo) => ClientIp | undefined;
  /** Header carrying the API key (lower case). Default `x-api-key`. */
  apiKeyHeader?: string;
  /** Methods answered when a rule matches; others get 405 before anything is spent. Default: all. */
  servedMethods?: ReadonlySet<string>;
};

/** Counters for health and metrics. */
export type EngineStats = { shadowDenied: number; allowListed: number; denyListed: number };

const JWT_DETAIL: Record<JwtFailure, string> = {
  missing: 'A valid bearer token is required',
  invalid: 'Invalid bearer token',
  expired: 'Bearer token expired',
};

/**
 * What rules match on, for one request: computed on first use (the client address, its
 * parsed form, the tier), once. A class, so a request allocates one object and no closures.
 */
class Facts implements RequestFacts {
  readonly method: string;
  readonly path: string;
  #ip: ClientIp | undefined | null = null;
  #parsed: ipaddr.IPv4 | ipaddr.IPv6 | undefined | null = null;

  constructor(
    private readonly req: RequestInput,
    private readonly d: EngineDeps,
    private readonly compiled: CompiledPolicies,
    private readonly verified: Record<string, unknown> | undefined,
    private readonly apiKey: string | undefined,
  ) {
    this.method = req.method;
    this.path = req.path;
  }

  clientIp(): ClientIp | undefined {
    if (this.#ip === null) this.#ip = this.d.clientIp(this.req.peer);
    return this.#ip;
  }

  ip(): string | undefined {
    return this.clientIp()?.address;
  }

  parsedIp(): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
    if (this.#parsed === null) {
      const a = this.clientIp()?.address;
      this.#parsed = a !== undefined && ipaddr.isValid(a) ? ipaddr.parse(a) : undefined;
    }
    return this.#parsed;
  }

  header(lowerName: string): string | undefined {
    return this.req.header(lowerName);
  }

  tier(): string | undefined {
    const c = this.compiled;
    const fromRegistry = this.apiKey ? this.d.registry?.lookup(this.apiKey)?.tier : undefined;
    const fromClaim = c.tierClaim ? this.verified?.[c.tierClaim] : undefined;
    return fromRegistry ?? (typeof fromClaim === 'string' ? fromClaim : undefined) ?? c.defaultTier;
  }

  claims(): Record<string, unknown> | undefined {
    return this.verified;
  }
}

export function checkIdentityValue(what: string, v: string | undefined, missing: 400 | 401): { status: 400 | 401; detail: string } | null {
  if (v === undefined || v === '') return { status: missing, detail: `Missing ${what}` };
  // Header values are byte strings (one char per byte), so length is the byte count.
  if (v.length > MAX_IDENTITY_BYTES) return { status: 400, detail: `${what} longer than ${MAX_IDENTITY_BYTES} bytes` };
  if (CONTROL.test(v)) return { status: 400, detail: `${what} contains control characters` };
  return null;
}

export class PolicyEngine {
  readonly stats: EngineStats = { shadowDenied: 0, allowListed: 0, denyListed: 0 };
  readonly #d: EngineDeps;
  readonly #keyHeader: string;

  constructor(deps: EngineDeps) {
    this.#d = deps;
    this.#keyHeader = deps.apiKeyHeader ?? 'x-api-key';
  }

  /** Synchronous unless a JWT must be verified or a limit must ask the store. Rejects only with StoreUnavailableError. */
  decide(req: RequestInput): Outcome | Promise<Outcome> {
    const compiled = this.#d.policies();
    if (compiled.usesClaims && this.#d.jwt) {
      return this.#d.jwt.claims(req.header('authorization')).then((r) => {
        // A token that is present but bad or expired is refused outright: falling through
        // to a rule that does not need it would hide the client's mistake.
        if (!r.ok && r.reason !== 'missing') return { kind: 'refused', status: 401, detail: JWT_DETAIL[r.reason] } as const;
        return this.#decide(compiled, req, r.ok ? (r.claims as Record<string, unknown>) : undefined);
      });
    }
    return this.#decide(compiled, req, undefined);
  }

  #decide(compiled: CompiledPolicies, req: RequestInput, claims: Record<string, unknown> | undefined): Outcome | Promise<Outcome> {
    const d = this.#d;
    const apiKey = req.header(this.#keyHeader);
    const facts = new Facts(req, d, compiled, claims, apiKey);
    const rule = compiled.find(facts);
    if (!rule) return { kind: 'no-rule' };
    if (d.servedMethods && !d.servedMethods.has(req.method)) return { kind: 'method-not-allowed', rule };
    if (onList(rule.deny, facts)) {
      this.stats.denyListed++;
      return { kind: 'refused', status: 403, detail: 'Forbidden', rule };
    }
    if (onList(rule.allow, facts)) {
      this.stats.allowListed++;
      return { kind: 'allow-listed', rule };
    }

    let clientId: string;
    const id = rule.identity;
    if (id.kind === 'apiKey') {
      const bad = checkIdentityValue('API key', apiKey, 401);
      if (bad) return { kind: 'refused', ...bad, rule };
      if (req.headerCount(this.#keyHeader) > 1) return { kind: 'refused', status: 400, detail: 'API key header sent more than once', rule };
      if (d.registry) {
        const record = d.registry.lookup(apiKey as string);
        if (!record && compiled.unknownKeys === 'reject') return { kind: 'refused', status: 401, detail: 'Unknown API key', rule };
        if (record?.deny) {
          this.stats.denyListed++;
          return { kind: 'refused', status: 403, detail: 'Forbidden', rule };
        }
        if (record?.allow) {
          this.stats.allowListed++;
          return { kind: 'allow-listed', rule };
        }
      }
      clientId = `k:${apiKey}`;
    } else if (id.kind === 'ip') {
      const addr = facts.clientIp();
      if (!addr) return { kind: 'refused', status: 400, detail: 'Client address unknown', rule };
      clientId = `ip:${addr.key}`;
    } else if (id.kind === 'header') {
      const v = req.header(id.name);
      const bad = checkIdentityValue(`${id.name} header`, v, 400);
      if (bad) return { kind: 'refused', ...bad, rule };
      if (req.headerCount(id.name) > 1) return { kind: 'refused', status: 400, detail: `${id.name} header sent more than once`, rule };
      clientId = `h:${id.name}:${v}`;
    } else {
      if (!claims) return { kind: 'refused', status: 401, detail: JWT_DETAIL.missing, rule };
      const v = claims[id.name];
      if (typeof v !== 'string' && typeof v !== 'number') return { kind: 'refused', status: 401, detail: `Bearer token has no ${id.name} claim`, rule };
      const bad = checkIdentityValue(`${id.name} claim`, String(v), 401);
      if (bad) return { kind: 'refused', ...bad, rule };
      clientId = `c:${id.name}:${String(v)}`;
    }
    return this.#limit(rule, clientId);
  }

  #limit(rule: CompiledRule, clientId: string, attempt = 1): Outcome | Promise<Outcome> {
    const limiter = this.#d.limiter;
    if (rule.limits.length === 1) {
      const r = limiter.check(clientId, rule.limits[0] as Policy, rule.cost);
      return r instanceof Promise ? r.then((d) => this.#outcome(rule, clientId, [d])) : this.#outcome(rule, clientId, [r]);
    }
    const results = rule.limits.map((p) => limiter.acquire(clientId, p, rule.cost));
    const settle = (ds: Decision[]) => {
      const all = ds.every((x) => x.allowed);
      // All or nothing: every reserved limit is spent, or every one goes back.
      ds.forEach((x, i) => {
        // Only what was reserved (a degraded or fail-open decision reserved nothing).
        if (x.reservation !== undefined) limiter.settle(clientId, rule.limits[i] as Policy, rule.cost, all, x.reservation);
      });
      return this.#outcome(rule, clientId, ds);
    };
    if (!results.some((r) => r instanceof Promise)) return settle(results as Decision[]);
    return Promise.allSettled(results).then((settled) => {
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) {
        // A store fault on one limit: give back what the others reserved, then fail like one limit would.
        settled.forEach((s, i) => {
          if (s.status === 'fulfilled' && s.value.reservation !== undefined) limiter.settle(clientId, rule.limits[i] as Policy, rule.cost, false, s.value.reservation);
        });
        throw failed.reason;
      }
      const ds = settled.map((s) => (s as PromiseFulfilledResult<Decision>).value);
      // While this request waited on one limit, a reservation of another may have ended with
      // its window: spending it now would spend a permit in the window after the one it was
      // counted in. Everything goes back and the request is decided again (once more at most;
      // then it is denied for a moment, a bounded cost of a rare race).
      const dead = ds.map((d, i) => d.reservation !== undefined && !limiter.held(clientId, rule.limits[i] as Policy, d.reservation));
      if (dead.includes(true)) {
        for (const [i, d] of ds.entries()) if (d.reservation !== undefined) limiter.settle(clientId, rule.limits[i] as Policy, rule.cost, false, d.reservation);
        if (attempt < 3) return this.#limit(rule, clientId, attempt + 1);
        // Denied by the limits whose reservations died: retry in a moment.
        return this.#outcome(rule, clientId, ds.map((d, i) => (dead[i] ? { ...d, allowed: false, remaining: 0, retryAfterMs: Math.max(1, d.retryAfterMs) } : d)));
      }
      return settle(ds);
    });
  }

  #outcome(rule: CompiledRule, clientId: string, decisions: Decision[]): Outcome {
    const denied = decisions.find((x) => !x.allowed);
    if (!denied) return { kind: 'allowed', rule, clientId, decisions, shadowDenied: false };
    if (rule.shadow) {
      this.stats.shadowDenied++;
      return { kind: 'allowed', rule, clientId, decisions, shadowDenied: true };
    }
    return { kind: 'denied', rule, clientId, decisions, denied };
  }
}
