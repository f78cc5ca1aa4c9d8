import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../core/clock.js';
import type { Decision, MultiLimiter, Policy } from '../core/types.js';
import { LeaseManager } from '../lease/lease-manager.js';
import { silentLogger } from '../log/logger.js';
import { MemoryStore } from '../store/memory-store.js';
import { createClientIp } from './client-ip.js';
import { parsePolicyDocument } from './document.js';
import { type Outcome, PolicyEngine, type RequestInput } from './engine.js';
import { createJwtVerifier } from './jwt.js';
import { ClientRegistry } from './registry.js';
import { compilePolicies } from './rules.js';

const JWT_SECRET = 'engine-test-secret-that-is-long-enough';
const managers: LeaseManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

function engine(doc: unknown, opts: { registry?: ClientRegistry; direct?: boolean } = {}) {
  const parsed = parsePolicyDocument(doc);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const compiled = compilePolicies(parsed.document);
  const clock = new FakeClock();
  const manager = new LeaseManager({
    store: new MemoryStore({ clock, sweepIntervalMs: 0 }),
    clock,
    logger: silentLogger(),
    maxKeys: 1000,
    leaseTtlMs: 10_000,
    maxLeaseTokens: 20,
    timers: false,
    direct: opts.direct,
  });
  managers.push(manager);
  const e = new PolicyEngine({
    limiter: manager,
    policies: () => compiled,
    registry: opts.registry,
    jwt: createJwtVerifier({ secret: JWT_SECRET }),
    clientIp: createClientIp({ trustedProxies: ['10.0.0.0/8'], ipv6Prefix: 64 }),
    servedMethods: new Set(['GET', 'HEAD']),
  });
  return { e, clock, manager };
}

type Req = { method?: string; path?: string; headers?: Record<string, string>; ip?: string; xff?: string };
const input = (r: Req): RequestInput => {
  const h = Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    method: r.method ?? 'GET',
    path: r.path ?? '/resource',
    header: (n) => h[n],
    headerCount: (n) => (h[n] === undefined ? 0 : 1),
    peer: { remoteAddress: r.ip ?? '203.0.113.1', forwardedFor: r.xff },
  };
};
const decide = async (e: PolicyEngine, r: Req): Promise<Outcome> => e.decide(input(r));
const kinds = async (e: PolicyEngine, r: Req, n: number) => {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await decide(e, r)).kind);
  return out;
};

const tb = (limit: number, windowSec: number) => ({ algorithm: 'token_bucket', limit, windowSec });

describe('PolicyEngine', () => {
  it.each([
    ['leasing', false],
    ['direct (embedded)', true],
  ])('checks every limit of a rule all or nothing: a request denied by one limit spends nothing from the others (%s)', async (_mode, direct) => {
    const { e } = engine(
      {
        policies: { small: tb(2, 1000), big: tb(10, 1000) },
        rules: [
          { name: 'both', match: { pathPrefix: '/both' }, limits: ['small', 'big'] },
          { name: 'big-only', match: { pathPrefix: '/big' }, limits: ['big'] },
        ],
      },
      { direct },
    );
    const k = { headers: { 'X-API-Key': 'alice' } };
    expect(await kinds(e, { ...k, path: '/both' }, 5)).toEqual(['allowed', 'allowed', 'denied', 'denied', 'denied']);
    const denied = (await decide(e, { ...k, path: '/both' })) as Extract<Outcome, { kind: 'denied' }>;
    expect(denied.denied.policy.name).toBe('small');
    // 'big' was charged for the 2 admitted requests only: 8 left of 10.
    expect(await kinds(e, { ...k, path: '/big' }, 9)).toEqual([...Array(8).fill('allowed'), 'denied']);
  });

  it.each([
    ['leasing', false],
    ['direct (embedded)', true],
  ])('charges `cost` tokens per request (%s)', async (_mode, direct) => {
    const { e } = engine({ policies: { p: tb(10, 1000) }, rules: [{ name: 'r', limits: ['p'], cost: 4 }] }, { direct });
    expect(await kinds(e, { headers: { 'X-API-Key': 'a' } }, 3)).toEqual(['allowed', 'allowed', 'denied']);
  });

  it('in shadow mode decides and counts but never denies, and spends nothing when it would have denied', async () => {
    const { e } = engine({ policies: { p: tb(2, 1000) }, rules: [{ name: 'r', limits: ['p'], shadow: true }] });
    const outs = [];
    for (let i = 0; i < 4; i++) outs.push(await decide(e, { headers: { 'X-API-Key': 'a' } }));
    expect(outs.map((o) => o.kind)).toEqual(['allowed', 'allowed', 'allowed', 'allowed']);
    expect(outs.map((o) => (o as { shadowDenied: boolean }).shadowDenied)).toEqual([false, false, true, true]);
    expect(e.stats.shadowDenied).toBe(2);
  });

  it('answers deny-listed clients 403 and lets allow-listed ones through unlimited', async () => {
    const { e } = engine({
      policies: { p: tb(1, 1000) },
      rules: [{ name: 'r', limits: ['p'], deny: { ips: ['198.51.100.0/24'] }, allow: { header: { name: 'X-Internal', values: ['yes'] } } }],
    });
    expect(await decide(e, { headers: { 'X-API-Key': 'a' }, ip: '198.51.100.7' })).toMatchObject({ kind: 'refused', status: 403 });
    expect(await kinds(e, { headers: { 'X-API-Key': 'a', 'X-Internal': 'yes' } }, 3)).toEqual(['allow-listed', 'allow-listed', 'allow-listed']);
  });

  it('keys by client IP behind a trusted proxy, ignoring a spoofed header from an untrusted hop', async () => {
    const { e } = engine({ policies: { p: tb(1, 1000) }, rules: [{ name: 'r', limits: ['p'], by: 'ip' }] });
    expect((await decide(e, { ip: '10.0.0.2', xff: '198.51.100.7' })).kind).toBe('allowed'); // no API key needed
    expect((await decide(e, { ip: '10.0.0.3', xff: '198.51.100.7' })).kind).toBe('denied'); // same client, other proxy
    // A client sending its own X-Forwarded-For directly cannot pick a fresh identity.
    expect((await decide(e, { ip: '203.0.113.9', xff: '1.1.1.1' })).kind).toBe('allowed');
    expect((await decide(e, { ip: '203.0.113.9', xff: '2.2.2.2' })).kind).toBe('denied');
  });

  it('keys by a header (a tenant) and refuses a missing one with 400', async () => {
    const { e } = engine({ policies: { p: tb(1, 1000) }, rules: [{ name: 'r', limits: ['p'], by: 'header:X-Tenant' }] });
    expect((await decide(e, { headers: { 'X-Tenant': 'acme' } })).kind).toBe('allowed');
    expect((await decide(e, { headers: { 'X-Tenant': 'acme' } })).kind).toBe('denied');
    expect((await decide(e, { headers: { 'X-Tenant': 'globex' } })).kind).toBe('allowed');
    expect(await decide(e, {})).toMatchObject({ kind: 'refused', status: 400 });
  });

  it('keys by a verified JWT claim; a missing, forged or expired token is a 401', async () => {
    const { e } = engine({ policies: { p: tb(1, 1000) }, rules: [{ name: 'r', limits: ['p'], by: 'claim:sub' }] });
    const token = (claims: Record<string, unknown>, secret = JWT_SECRET, exp: number | string = '1h') =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp).sign(new TextEncoder().encode(secret));
    const bearer = async (...a: Parameters<typeof token>) => ({ headers: { Authorization: `Bearer ${await token(...a)}` } });
    expect((await decide(e, await bearer({ sub: 'u1' }))).kind).toBe('allowed');
    expect((await decide(e, await bearer({ sub: 'u1' }))).kind).toBe('denied');
    expect((await decide(e, await bearer({ sub: 'u2' }))).kind).toBe('allowed');
    expect(await decide(e, {})).toMatchObject({ kind: 'refused', status: 401 });
    expect(await decide(e, await bearer({ sub: 'u3' }, 'a-forged-secret-of-some-length-xxxxx'))).toMatchObject({ kind: 'refused', status: 401 });
    expect(await decide(e, await bearer({ sub: 'u3' }, JWT_SECRET, Math.floor(Date.now() / 1000) - 10))).toMatchObject({ kind: 'refused', status: 401, detail: 'Bearer token expired' });
    expect(await decide(e, await bearer({ role: 'x' }))).toMatchObject({ kind: 'refused', status: 401 });
  });

  it('takes tiers from the registry, applies its flags, and rejects unknown keys when told to', async () => {
    const registry = new ClientRegistry((k) => `h(${k})`);
    registry.set('ent', { tier: 'enterprise', allow: false, deny: false });
    registry.set('bad', { tier: 'free', allow: false, deny: true });
    registry.set('vip', { tier: 'free', allow: true, deny: false });
    const doc = {
      policies: { free: tb(1, 1000), pro: tb(3, 1000) },
      rules: [
        { name: 'pro', match: { tiers: ['enterprise'] }, limits: ['pro'] },
        { name: 'free', match: { tiers: ['free'] }, limits: ['free'] },
      ],
    };
    const { e } = engine(doc, { registry });
    expect(await kinds(e, { headers: { 'X-API-Key': 'ent' } }, 4)).toEqual(['allowed', 'allowed', 'allowed', 'denied']);
    expect(await kinds(e, { headers: { 'X-API-Key': 'unknown' } }, 2)).toEqual(['allowed', 'denied']); // default tier free
    expect(await decide(e, { headers: { 'X-API-Key': 'bad' } })).toMatchObject({ kind: 'refused', status: 403 });
    expect(await kinds(e, { headers: { 'X-API-Key': 'vip' } }, 3)).toEqual(['allow-listed', 'allow-listed', 'allow-listed']);
    const strict = engine({ ...doc, unknownKeys: 'reject' }, { registry }).e;
    expect(await decide(strict, { headers: { 'X-API-Key': 'unknown' } })).toMatchObject({ kind: 'refused', status: 401, detail: 'Unknown API key' });
  });

  it('answers 404 when no rule matches and 405 for methods it does not serve, spending nothing', async () => {
    const { e } = engine({ policies: { p: tb(1, 1000) }, rules: [{ name: 'r', match: { pathPrefix: '/api' }, limits: ['p'] }] });
    expect((await decide(e, { path: '/elsewhere', headers: { 'X-API-Key': 'a' } })).kind).toBe('no-rule');
    expect((await decide(e, { path: '/api', method: 'POST', headers: { 'X-API-Key': 'a' } })).kind).toBe('method-not-allowed');
    expect((await decide(e, { path: '/api', headers: { 'X-API-Key': 'a' } })).kind).toBe('allowed');
  });

  it('keeps per-service quotas apart: a spike on one route does not eat another route\'s quota', async () => {
    const { e } = engine({
      policies: { marketing: tb(5, 1000), payments: tb(5, 1000) },
      rules: [
        { name: 'marketing', match: { pathPrefix: '/marketing' }, limits: ['marketing'] },
        { name: 'payments', match: { pathPrefix: '/payments' }, limits: ['payments'] },
      ],
    });
    const k = { headers: { 'X-API-Key': 'tenant' } };
    expect((await kinds(e, { ...k, path: '/marketing' }, 20)).filter((x) => x === 'allowed')).toHaveLength(5);
    expect((await kinds(e, { ...k, path: '/payments' }, 5)).every((x) => x === 'allowed')).toBe(true);
  });
});

describe('PolicyEngine with a window limit among several', () => {
  it('decides again when a reservation died with its window while another limit was asked', async () => {
    const parsed = parsePolicyDocument({
      policies: { w: { algorithm: 'fixed_window', limit: 5, windowSec: 1 }, t: tb(5, 1) },
      rules: [{ name: 'both', limits: ['w', 't'] }],
    });
    if (!parsed.ok) throw new Error('bad document');
    const compiled = compilePolicies(parsed.document);
    // A limiter whose 'w' reservation (sync) dies while 't' (async, first attempt only) is out.
    const log: string[] = [];
    let heldW = true;
    let attempt = 0;
    const decision = (p: Policy, reservation: number): Decision => ({ allowed: true, limit: 5, remaining: 4, resetMs: 0, retryAfterMs: 0, policy: p, source: 'local', reservation });
    const limiter: MultiLimiter = {
      check: () => {
        throw new Error('not used');
      },
      acquire(_c, p) {
        if (p.name === 'w') {
          attempt++;
          heldW = true;
          return decision(p, attempt);
        }
        if (attempt > 1) return decision(p, 100 + attempt);
        return Promise.resolve().then(() => {
          heldW = false; // the window ended meanwhile
          return decision(p, 100 + attempt);
        });
      },
      settle(_c, p, _cost, commit, reservation) {
        log.push(`${p.name}#${reservation}:${commit ? 'commit' : 'release'}`);
      },
      held: (_c, p) => p.name !== 'w' || heldW,
    };
    const e = new PolicyEngine({
      limiter,
      policies: () => compiled,
      jwt: createJwtVerifier({ secret: JWT_SECRET }),
      clientIp: createClientIp({ trustedProxies: [], ipv6Prefix: 64 }),
      servedMethods: new Set(['GET', 'HEAD']),
    });
    const out = await decide(e, { headers: { 'X-API-Key': 'alice' } });
    expect(out.kind).toBe('allowed');
    // Both went back after the first attempt; the second, all held, was spent.
    expect(log).toEqual(['w#1:release', 't#101:release', 'w#2:commit', 't#102:commit']);
  });
});
