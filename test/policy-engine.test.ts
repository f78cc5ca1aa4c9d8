/**
 * The policy engine end to end: two real nodes on one real Redis, a policy file
 * and a clients file, real HTTP.
 * - seed 001: 100 free users on /payments get 429 after 10; one moved to
 *   enterprise through the admin API sees the 429s vanish until 1,000;
 * - several limits per request, all or nothing across both nodes, and the
 *   interval bound of each limit under random traffic;
 * - shadow mode, identity by IP behind a trusted proxy, per-service isolation.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prng } from './helpers/prng.js';
import { sharedRedis } from './helpers/shared-redis.js';
import { type Node, startNode } from './helpers/service.js';

const fx = sharedRedis();
const dir = mkdtempSync(join(tmpdir(), 'policy-engine-'));
const writeJson = (name: string, value: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(value));
  return p;
};
const tb = (limit: number, windowSec: number) => ({ algorithm: 'token_bucket', limit, windowSec });

async function twoNodes(env: Record<string, string>): Promise<[Node, Node]> {
  // A deadline no load on this machine reaches: these tests check the guarantee with Redis
  // healthy, and a timed-out call would decide in degraded mode (per-node shares).
  const a = await startNode({ REDIS_URL: fx.redis.url, REDIS_TIMEOUT_MS: '2000', ...env });
  const b = await startNode({ REDIS_URL: fx.redis.url, REDIS_TIMEOUT_MS: '2000', ...env });
  fx.nodes.push(a, b);
  return [a, b];
}

async function get(node: Node, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${node.url}${path}`, { headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

describe('seed 001: tiers and per-service quotas', () => {
  const policies = {
    policies: { 'payments-free': tb(10, 60), 'payments-pro': tb(1000, 60), marketing: tb(20, 60) },
    rules: [
      { name: 'payments-free', match: { pathPrefix: '/payments', tiers: ['free'] }, limits: ['payments-free'] },
      { name: 'payments-pro', match: { pathPrefix: '/payments', tiers: ['enterprise'] }, limits: ['payments-pro'] },
      { name: 'marketing', match: { pathPrefix: '/marketing' }, limits: ['marketing'] },
    ],
  };
  const users = Array.from({ length: 100 }, (_, i) => `user-${i}-key`);

  it('100 free users on /payments get 429 after 10; one moved to enterprise through the admin API sees the 429s vanish until 1,000', async () => {
    const env = {
      POLICY_FILE: writeJson('seed001.json', policies),
      CLIENTS_FILE: writeJson('clients.json', { clients: users.map((apiKey) => ({ apiKey, tier: 'free' })) }),
      KEY_HASH_SECRET: 'seed-001-test-secret',
      ADMIN_TOKENS: 'ops:seed-001-admin-secret',
    };
    const [a, b] = await twoNodes(env);
    const t0 = performance.now();
    const admitted = await Promise.all(
      users.map(async (key) => {
        let ok = 0;
        for (let i = 0; i < 12; i++) if ((await get(i % 2 ? a : b, '/payments/charge', { 'X-API-Key': key })).status === 200) ok++;
        return ok;
      }),
    );
    const refill = (10 / 60) * ((performance.now() - t0) / 1000);
    for (const ok of admitted) {
      expect(ok).toBeGreaterThanOrEqual(10 - 2); // at most 2 stranded on the other node
      expect(ok).toBeLessThanOrEqual(10 + Math.floor(refill));
    }
    expect(admitted.filter((ok) => ok === 10).length).toBeGreaterThan(90);
    expect(a.manager.stats.degradedDecisions + b.manager.stats.degradedDecisions).toBe(0); // decided with Redis throughout
    // A Marketing spike by the same clients does not touch their Payments quota, nor the reverse.
    const m = await get(a, '/marketing/blast', { 'X-API-Key': users[1] as string });
    expect(m.status).toBe(200);
    expect(m.headers.get('RateLimit-Policy')).toBe('"marketing";q=20;w=60');

    // users[0] moves to enterprise through the admin API; every node sees it (pub/sub).
    const put = await fetch(`${a.adminUrl}/admin/clients`, {
      method: 'PUT',
      headers: { Authorization: 'Bearer seed-001-admin-secret', 'Content-Type': 'application/json' },
      body: JSON.stringify({ apiKey: users[0], tier: 'enterprise' }),
    });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ tier: 'enterprise' });
    const t0b = performance.now();
    while (b.registry.lookup(users[0] as string)?.tier !== 'enterprise' && performance.now() - t0b < 5000) await new Promise((r) => setTimeout(r, 10));
    expect(b.registry.lookup(users[0] as string)?.tier).toBe('enterprise');
    const t1 = performance.now();
    let ok = 0;
    let firstDenied = -1;
    for (let i = 0; i < 1100; i++) {
      const r = await get(i % 2 ? a : b, '/payments/charge', { 'X-API-Key': users[0] as string });
      if (r.status === 200) ok++;
      else if (firstDenied < 0) firstDenied = i;
      if (firstDenied >= 0 && i > firstDenied + 20) break;
    }
    const refillPro = (1000 / 60) * ((performance.now() - t1) / 1000);
    expect(ok).toBeGreaterThanOrEqual(1000 - 40); // two nodes' leases ahead of demand (LEASE_MAX_TOKENS each)
    expect(ok).toBeLessThanOrEqual(1000 + Math.ceil(refillPro));
    // The free users are still limited: users[1] gets no more than 10 + refill over the whole test.
    let more = 0;
    for (let i = 0; i < 5; i++) if ((await get(a, '/payments/charge', { 'X-API-Key': users[1] as string })).status === 200) more++;
    expect((admitted[1] as number) + more).toBeLessThanOrEqual(10 + Math.floor(((10 / 60) * (performance.now() - t0)) / 1000));
  }, 60_000);
});

describe('several limits per request', () => {
  it('are all or nothing across two nodes: a request denied by one limit spends nothing from the others', async () => {
    const [a, b] = await twoNodes({
      POLICY_FILE: writeJson('multi.json', {
        policies: { small: tb(5, 1000), big: tb(100, 1000) },
        rules: [
          { name: 'both', match: { pathPrefix: '/both' }, limits: ['small', 'big'] },
          { name: 'big', match: { pathPrefix: '/big' }, limits: ['big'] },
        ],
      }),
    });
    const k = { 'X-API-Key': 'multi-client' };
    const both = await Promise.all(Array.from({ length: 12 }, (_, i) => get(i % 2 ? a : b, '/both', k)));
    expect(both.filter((r) => r.status === 200)).toHaveLength(5);
    const denied = both.find((r) => r.status === 429);
    expect(denied?.body).toMatchObject({ detail: 'Too Many Requests', policy: 'small' });
    expect(denied?.headers.get('RateLimit-Policy')).toBe('"small";q=5;w=1000, "big";q=100;w=1000');
    expect(denied?.headers.get('RateLimit')).toMatch(/^"small";r=0;t=\d+, "big";r=\d+;t=\d+$/);
    // 'big' was charged 5, not 12: 95 left, served from either node.
    const big = await Promise.all(Array.from({ length: 100 }, (_, i) => get(i % 2 ? a : b, '/big', k)));
    const okBig = big.filter((r) => r.status === 200).length;
    expect(okBig).toBeGreaterThanOrEqual(95 - 2);
    expect(okBig).toBeLessThanOrEqual(95);
  });

  it('hold each limit\'s bound in every interval under random traffic over two nodes', async () => {
    const [a, b] = await twoNodes({
      POLICY_FILE: writeJson('random.json', {
        policies: { fast: tb(10, 2), slow: tb(25, 25) }, // 10 tokens at 5/s; 25 tokens at 1/s
        rules: [{ name: 'r', limits: ['fast', 'slow'] }],
      }),
    });
    const rnd = prng(11);
    const admitted: { sent: number; done: number }[] = [];
    let denied = 0;
    const pending: Promise<void>[] = [];
    const start = performance.now();
    while (performance.now() - start < 3000) {
      const sent = performance.now();
      pending.push(
        get(rnd() < 0.5 ? a : b, '/x', { 'X-API-Key': 'random-client' }).then((r) => {
          if (r.status === 200) admitted.push({ sent, done: performance.now() });
          else if (r.status === 429) denied++;
        }),
      );
      await new Promise((r) => setTimeout(r, rnd() < 0.2 ? 150 * rnd() : 5 * rnd()));
    }
    await Promise.all(pending);
    admitted.sort((x, y) => x.done - y.done);
    // The limits must bind, or the check proves nothing: 'fast' allows at most 10 + 5 × 3 s.
    expect(admitted.length).toBeGreaterThan(15);
    expect(denied).toBeGreaterThan(50);
    for (const [cap, refill] of [
      [10, 5],
      [25, 1],
    ] as const) {
      for (let i = 0; i < admitted.length; i++) {
        for (let j = i; j < admitted.length; j++) {
          // The widest window the admissions i..j can have happened in: from i's send to j's answer.
          const t = ((admitted[j] as { done: number }).done - (admitted[i] as { sent: number }).sent) / 1000;
          expect(j - i + 1).toBeLessThanOrEqual(cap + refill * Math.max(0, t) + 1e-9);
        }
      }
    }
  }, 30_000);
});

describe('rules', () => {
  it('shadow mode decides but never denies', async () => {
    const [a] = await twoNodes({
      POLICY_FILE: writeJson('shadow.json', { policies: { tiny: tb(2, 1000) }, rules: [{ name: 'trial', limits: ['tiny'], shadow: true }] }),
    });
    const rs = await Promise.all(Array.from({ length: 6 }, () => get(a, '/anything', { 'X-API-Key': 'shadowed' })));
    expect(rs.every((r) => r.status === 200)).toBe(true);
  });

  it('keys by client IP only through a trusted proxy', async () => {
    const doc = writeJson('by-ip.json', { policies: { ip: tb(2, 1000) }, rules: [{ name: 'public', by: 'ip', limits: ['ip'] }] });
    const [trusting] = await twoNodes({ POLICY_FILE: doc, TRUSTED_PROXIES: '127.0.0.1' });
    const via = (ip: string) => get(trusting, '/public', { 'X-Forwarded-For': ip });
    expect((await Promise.all([via('198.51.100.1'), via('198.51.100.1'), via('198.51.100.1')])).map((r) => r.status).sort()).toEqual([200, 200, 429]);
    expect((await via('198.51.100.2')).status).toBe(200); // another client behind the same proxy
    await Promise.all(fx.nodes.map((n) => n.close(1000)));
    fx.nodes.length = 0;
    const [direct] = await twoNodes({ POLICY_FILE: doc });
    // Without trusted proxies the header is ignored: every "client" is the socket's address.
    const spoofed = await Promise.all(['203.0.113.1', '203.0.113.2', '203.0.113.3'].map((ip) => get(direct, '/public', { 'X-Forwarded-For': ip })));
    expect(spoofed.map((r) => r.status).sort()).toEqual([200, 200, 429]);
  });

  it('matches on a header and keys by it over real HTTP (a header match once threw on the Node path)', async () => {
    const doc = writeJson('by-tenant.json', {
      policies: { tenant: tb(2, 1000), rest: tb(100, 1000) },
      rules: [
        { name: 'tenants', match: { header: { name: 'X-Tenant-Id', values: ['acme'] } }, by: 'header:X-Tenant-Id', limits: ['tenant'] },
        { name: 'rest', limits: ['rest'] },
      ],
    });
    const [a] = await twoNodes({ POLICY_FILE: doc });
    const acme = await Promise.all(Array.from({ length: 3 }, () => get(a, '/t', { 'X-Tenant-Id': 'acme' })));
    expect(acme.map((r) => r.status).sort()).toEqual([200, 200, 429]);
    expect(acme[0]?.headers.get('RateLimit-Policy')).toBe('"tenant";q=2;w=1000');
    const other = await get(a, '/t', { 'X-Tenant-Id': 'globex', 'X-API-Key': 'k' });
    expect(other.headers.get('RateLimit-Policy')).toBe('"rest";q=100;w=1000');
  });

  it('refuses a bad policy file at start, naming the field', async () => {
    const bad = writeJson('bad.json', { policies: { burst: tb(40, 4) }, rules: [{ name: 'r', limits: ['burst', 'dayly'] }] });
    await expect(startNode({ POLICY_FILE: bad })).rejects.toThrow(/rules\[0\]\.limits\[1\]: unknown policy "dayly"/);
  });
});
