/**
 * @module policy/rules
 *
 * A policy document compiled once into what a request is matched against:
 * runtime policies, and rules with their conditions turned into sets and
 * address block lists. Rules are tried in order and the first whose `match`
 * holds applies. The path and method conditions, the only ones most rules
 * differ by, are resolved once per (method, path) and cached (a bounded LRU),
 * so a request does not scan every rule's prefix.
 *
 * `pathPrefix` matches whole segments: `/payments` matches `/payments` and
 * `/payments/42`, not `/paymentsx`.
 */
import ipaddr from 'ipaddr.js';
import { LRUMap } from 'mnemonist';
import type { Policy } from '../core/types.js';
import type { PolicyDocument, RuleSpec } from './document.js';

export type Identity = { kind: 'apiKey' } | { kind: 'ip' } | { kind: 'header'; name: string } | { kind: 'claim'; name: string };

type ValuesMatch = { name: string; values: ReadonlySet<string> };
/** Address blocks, parsed once; matched against an address parsed once per request. */
type AddressBlocks = ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
type ListMatch = { ips: AddressBlocks | undefined; header: ValuesMatch | undefined };

export type CompiledRule = {
  readonly name: string;
  readonly index: number;
  readonly pathPrefix: string | undefined;
  readonly methods: ReadonlySet<string> | undefined;
  readonly tiers: ReadonlySet<string> | undefined;
  readonly ips: AddressBlocks | undefined;
  readonly header: ValuesMatch | undefined;
  readonly claim: ValuesMatch | undefined;
  readonly identity: Identity;
  readonly limits: readonly Policy[];
  readonly cost: number;
  readonly shadow: boolean;
  readonly allow: ListMatch | undefined;
  readonly deny: ListMatch | undefined;
};

/** What matching asks of a request; each attribute is computed only if a rule needs it. */
export type RequestFacts = {
  method: string;
  path: string;
  /** The client's address (after the trusted-proxy walk), if known. */
  ip(): string | undefined;
  /** The same, parsed (once per request: every IP condition matches against it). */
  parsedIp(): ipaddr.IPv4 | ipaddr.IPv6 | undefined;
  header(lowerName: string): string | undefined;
  tier(): string | undefined;
  /** Verified JWT claims; undefined without a valid token. */
  claims(): Record<string, unknown> | undefined;
};

export type CompiledPolicies = {
  readonly rules: readonly CompiledRule[];
  readonly policies: ReadonlyMap<string, Policy>;
  readonly defaultTier: string;
  readonly unknownKeys: 'allow' | 'reject';
  readonly tierClaim: string | undefined;
  /** Some rule matches on or keys by a JWT claim. */
  readonly usesClaims: boolean;
  /** Some rule matches on a tier. */
  readonly usesTiers: boolean;
  /** The first rule whose match holds, or undefined. */
  find(req: RequestFacts): CompiledRule | undefined;
};

/**
 * The limit a document policy names: `limit` permits per `windowSec` (the IETF q
 * and w): a token bucket or GCRA of burst `limit` at `limit / windowSec` per
 * second, or `limit` per window of `windowSec`.
 */
export function toRuntimePolicy(name: string, p: PolicyDocument['policies'][string]): Policy {
  const rate = { name, capacity: p.limit, refillPerSec: p.limit / p.windowSec };
  switch (p.algorithm) {
    case 'token_bucket':
    case 'gcra':
      return Object.freeze({ ...rate, algorithm: p.algorithm });
    case 'fixed_window':
    case 'sliding_window':
      return Object.freeze({ ...rate, algorithm: p.algorithm, windowMs: Math.round(p.windowSec * 1000) });
  }
}

function addressBlocks(entries: readonly string[] | undefined): AddressBlocks | undefined {
  if (!entries) return undefined;
  return entries.map((e) => {
    if (!e.includes('/')) {
      const a = ipaddr.process(e);
      return [a, a.kind() === 'ipv4' ? 32 : 128] as [ipaddr.IPv4 | ipaddr.IPv6, number];
    }
    const [a, bits] = ipaddr.parseCIDR(e);
    // An IPv4-mapped IPv6 block means its IPv4 block (clients are seen as IPv4).
    if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) return [(a as ipaddr.IPv6).toIPv4Address(), Math.max(0, bits - 96)];
    return [a, bits];
  });
}

const valuesMatch = (m: { name: string; values: string[] } | undefined): ValuesMatch | undefined =>
  m ? { name: m.name.toLowerCase(), values: new Set(m.values) } : undefined;

function parseIdentity(by: string): Identity {
  if (by === 'apiKey' || by === 'ip') return { kind: by };
  const [kind, name] = by.split(':') as [string, string];
  return kind === 'header' ? { kind: 'header', name: name.toLowerCase() } : { kind: 'claim', name };
}

function compileRule(spec: RuleSpec, index: number, policies: ReadonlyMap<string, Policy>): CompiledRule {
  const m = spec.match;
  const list = (l: RuleSpec['allow']): ListMatch | undefined => (l ? { ips: addressBlocks(l.ips), header: valuesMatch(l.header) } : undefined);
  return {
    name: spec.name,
    index,
    pathPrefix: m.pathPrefix === '/' ? undefined : m.pathPrefix?.replace(/\/+$/, ''),
    methods: m.methods ? new Set(m.methods) : undefined,
    tiers: m.tiers ? new Set(m.tiers) : undefined,
    ips: addressBlocks(m.ips),
    header: valuesMatch(m.header),
    claim: valuesMatch(m.claim),
    identity: parseIdentity(spec.by),
    limits: spec.limits.map((n) => policies.get(n) as Policy),
    cost: spec.cost,
    shadow: spec.shadow,
    allow: list(spec.allow),
    deny: list(spec.deny),
  };
}

/** Whether `path` is `prefix` or under it, segment-wise. */
export function underPrefix(path: string, prefix: string | undefined): boolean {
  if (prefix === undefined) return true;
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47 /* / */);
}

function addressIn(blocks: AddressBlocks, addr: ipaddr.IPv4 | ipaddr.IPv6 | undefined): boolean {
  if (!addr) return false;
  for (const [net, bits] of blocks) if (net.kind() === addr.kind() && addr.match(net as never, bits)) return true;
  return false;
}

/** Whether the request is on the list (an address in its blocks, or a header value in its set). */
export function onList(l: ListMatch | undefined, req: RequestFacts): boolean {
  if (!l) return false;
  if (l.ips && addressIn(l.ips, req.parsedIp())) return true;
  if (l.header) {
    const v = req.header(l.header.name);
    if (v !== undefined && l.header.values.has(v)) return true;
  }
  return false;
}

/** The conditions other than path and method. */
function attributesHold(r: CompiledRule, req: RequestFacts): boolean {
  if (r.tiers) {
    const t = req.tier();
    if (t === undefined || !r.tiers.has(t)) return false;
  }
  if (r.ips && !addressIn(r.ips, req.parsedIp())) return false;
  if (r.header) {
    const v = req.header(r.header.name);
    if (v === undefined || !r.header.values.has(v)) return false;
  }
  if (r.claim) {
    const v = req.claims()?.[r.claim.name];
    if (typeof v !== 'string' || !r.claim.values.has(v)) return false;
  }
  return true;
}

export function compilePolicies(doc: PolicyDocument, pathCacheSize = 10_000): CompiledPolicies {
  const policies = new Map(Object.entries(doc.policies).map(([n, p]) => [n, toRuntimePolicy(n, p)] as const));
  const rules = doc.rules.map((r, i) => compileRule(r, i, policies));
  // (method, path) → the rules whose path and method conditions hold, in order.
  const byRoute = new LRUMap<string, CompiledRule[]>(pathCacheSize);
  const candidates = (method: string, path: string): CompiledRule[] => {
    const key = `${method} ${path}`;
    let c = byRoute.get(key);
    if (c === undefined) {
      c = rules.filter((r) => underPrefix(path, r.pathPrefix) && (!r.methods || r.methods.has(method)));
      byRoute.set(key, c);
    }
    return c;
  };
  return {
    rules,
    policies,
    defaultTier: doc.defaultTier,
    unknownKeys: doc.unknownKeys,
    tierClaim: doc.tierClaim,
    usesClaims: doc.tierClaim !== undefined || rules.some((r) => r.claim !== undefined || r.identity.kind === 'claim'),
    usesTiers: rules.some((r) => r.tiers !== undefined),
    find(req) {
      for (const r of candidates(req.method, req.path)) if (attributesHold(r, req)) return r;
      return undefined;
    },
  };
}
