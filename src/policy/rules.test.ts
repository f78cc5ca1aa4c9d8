import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { parsePolicyDocument } from './document.js';
import { type RequestFacts, compilePolicies, underPrefix } from './rules.js';

function compile(doc: unknown) {
  const r = parsePolicyDocument(doc);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return compilePolicies(r.document);
}

const facts = (o: Partial<{ method: string; path: string; ip: string; tier: string; headers: Record<string, string>; claims: Record<string, unknown> }>): RequestFacts => ({
  method: o.method ?? 'GET',
  path: o.path ?? '/',
  ip: () => o.ip,
  parsedIp: () => (o.ip ? ipaddr.parse(o.ip) : undefined),
  header: (n) => o.headers?.[n],
  tier: () => o.tier,
  claims: () => o.claims,
});

const doc = {
  policies: {
    burst: { algorithm: 'token_bucket', limit: 40, windowSec: 4 },
    daily: { algorithm: 'token_bucket', limit: 5000, windowSec: 86400 },
    pro: { algorithm: 'token_bucket', limit: 1000, windowSec: 60 },
  },
  rules: [
    { name: 'internal', match: { ips: ['10.0.0.0/8', '2001:db8::/32'] }, limits: ['pro'] },
    { name: 'payments-free', match: { pathPrefix: '/payments', tiers: ['free'] }, limits: ['burst', 'daily'] },
    { name: 'payments-pro', match: { pathPrefix: '/payments', tiers: ['enterprise'] }, limits: ['pro'] },
    { name: 'tenant-acme', match: { header: { name: 'X-Tenant', values: ['acme'] } }, by: 'header:X-Tenant', limits: ['pro'] },
    { name: 'admins', match: { claim: { name: 'role', values: ['admin'] } }, by: 'claim:sub', limits: ['pro'] },
    { name: 'writes', match: { methods: ['POST', 'PUT'] }, limits: ['burst'], cost: 5 },
    { name: 'default', match: { pathPrefix: '/resource' }, limits: ['burst'] },
  ],
};

describe('compiled rules', () => {
  const c = compile(doc);

  it.each([
    [{ path: '/payments/42', tier: 'free', ip: '203.0.113.1' }, 'payments-free'],
    [{ path: '/payments', tier: 'enterprise', ip: '203.0.113.1' }, 'payments-pro'],
    [{ path: '/payments', tier: 'gold', ip: '203.0.113.1' }, undefined], // no rule for that tier on that path
    [{ path: '/paymentsx', tier: 'free', ip: '203.0.113.1' }, undefined], // prefixes match whole segments
    [{ path: '/payments', tier: 'free', ip: '10.1.2.3' }, 'internal'], // first match wins
    [{ path: '/resource', ip: '2001:db8::5' }, 'internal'],
    [{ path: '/resource', ip: '203.0.113.1', headers: { 'x-tenant': 'acme' } }, 'tenant-acme'],
    [{ path: '/resource', ip: '203.0.113.1', headers: { 'x-tenant': 'other' } }, 'default'],
    [{ path: '/resource', ip: '203.0.113.1', claims: { role: 'admin', sub: 'u1' } }, 'admins'],
    [{ path: '/resource', ip: '203.0.113.1', claims: { role: 'user' } }, 'default'],
    [{ path: '/anything', method: 'POST', ip: '203.0.113.1' }, 'writes'],
    [{ path: '/anything', method: 'GET', ip: '203.0.113.1' }, undefined],
  ])('%o → %s', (f, expected) => {
    expect(c.find(facts(f))?.name).toBe(expected);
  });

  it('compiles limits into runtime token buckets (limit tokens, refilled limit / windowSec per second), and knows what it needs', () => {
    expect(c.policies.get('burst')).toEqual({ name: 'burst', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 });
    expect(c.rules[1]?.limits.map((p) => p.name)).toEqual(['burst', 'daily']);
    expect(c.rules[5]?.cost).toBe(5);
    expect(c.usesClaims).toBe(true);
    expect(c.usesTiers).toBe(true);
  });

  it('an empty match matches every path', () => {
    const all = compile({ policies: doc.policies, rules: [{ name: 'all', limits: ['burst'] }] });
    expect(all.find(facts({ path: '/x/y' }))?.name).toBe('all');
  });

  it('matches path prefixes segment by segment', () => {
    expect(underPrefix('/a/b', '/a')).toBe(true);
    expect(underPrefix('/a', '/a')).toBe(true);
    expect(underPrefix('/ab', '/a')).toBe(false);
    expect(underPrefix('/anything', undefined)).toBe(true);
  });
});
