import { parseList } from 'structured-headers';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../core/clock.js';
import { type MultiLimiter, type Policy, StoreUnavailableError } from '../core/types.js';
import { PolicyEngine } from '../policy/engine.js';
import { documentFromPolicy } from '../policy/load.js';
import { compilePolicies } from '../policy/rules.js';
import { SERVED_METHODS, allowedBody, deniedBody } from './policy-handler.js';
import { LeaseManager } from '../lease/lease-manager.js';
import { silentLogger } from '../log/logger.js';
import { MemoryStore } from '../store/memory-store.js';
import { Hono } from 'hono';
import { loadConfig } from '../config/config.js';
import { createService } from '../service.js';
import { createApp } from './app.js';
import { type RateLimitEnv, createMiddleware } from './rate-limit-middleware.js';

const policy: Policy = { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 };
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

function makeManager(clock = new FakeClock()) {
  const store = new MemoryStore({ clock, sweepIntervalMs: 0 });
  const manager = new LeaseManager({ store, clock, logger: silentLogger(), maxKeys: 100, leaseTtlMs: 1000, maxLeaseTokens: 20, coldLeaseTokens: 1 });
  closers.push(() => manager.close());
  return manager;
}

/** The engine the service builds without POLICY_FILE: one rule limiting /resource by API key. */
function engineFor(limiter: MultiLimiter) {
  const compiled = compilePolicies(documentFromPolicy(policy));
  return new PolicyEngine({ limiter, policies: () => compiled, clientIp: () => undefined, servedMethods: SERVED_METHODS });
}

function makeApp() {
  const clock = new FakeClock();
  const manager = makeManager(clock);
  const health = () => ({ status: 'ok' as const, mode: 'local-only' as const, redis: 'not used' as const });
  return { clock, app: createApp({ engine: engineFor(manager), health, logger: silentLogger() }) };
}
const get = (app: ReturnType<typeof makeApp>['app'], key?: string) =>
  app.request('/resource', { headers: key === undefined ? {} : { 'X-API-Key': key } });

describe('response bodies written from templates', () => {
  // The handler writes its JSON bodies without JSON.stringify on the hot path: they must be
  // byte for byte what JSON.stringify gives, whatever the policy is called.
  const names = ['default', 'we"ird\\name', 'ünïcode ✓', 'tab\there', '</script>'];
  const numbers = [0, 1, 39, 40.5, 1e21, Number.NaN, Number.POSITIVE_INFINITY];
  it('allowed: as JSON.stringify writes it', () => {
    for (const name of names) {
      for (const n of numbers) {
        const p: Policy = { ...policy, name };
        const d = { allowed: true, limit: n, remaining: n, resetMs: 2500, retryAfterMs: 0, policy: p, source: 'local' as const };
        const expected = JSON.stringify({ ok: true, rate_limit: { policy: name, limit: n, remaining: n, reset: 3 } });
        expect(allowedBody(d)).toBe(expected);
      }
    }
  });
  it('denied: as JSON.stringify writes it', () => {
    for (const name of names) {
      for (const n of numbers) {
        const p: Policy = { ...policy, name };
        expect(deniedBody('Too Many Requests', n, p)).toBe(JSON.stringify({ detail: 'Too Many Requests', retry_after_ms: n, policy: name }));
      }
    }
  });
});

describe('GET /resource', () => {
  it('200 with JSON and every rate-limit header', async () => {
    const { app } = makeApp();
    const res = await get(app, 'alice');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, rate_limit: { limit: 40, remaining: 39 } });
    expect(res.headers.get('RateLimit-Policy')).toBe('"default";q=40;w=4');
    const [item] = parseList(res.headers.get('RateLimit') as string);
    expect(item?.[0]).toBe('default');
    expect(Object.fromEntries(item?.[1] ?? [])).toEqual({ r: 39, t: 1 });
    expect(res.headers.get('X-RateLimit-Limit')).toBe('40');
    expect(res.headers.get('X-RateLimit-Remaining')).toBe('39');
    expect(res.headers.get('X-RateLimit-Reset')).toBe('1');
  });

  it('429 with retry_after_ms and Retry-After in whole seconds, never 0, never early', async () => {
    const { app } = makeApp();
    for (let i = 0; i < 40; i++) expect((await get(app, 'bob')).status).toBe(200);
    const res = await get(app, 'bob');
    expect(res.status).toBe(429);
    const body = (await res.json()) as { detail: string; retry_after_ms: number };
    expect(body.detail).toBe('Too Many Requests');
    expect(body.retry_after_ms).toBeGreaterThan(0);
    expect(body.retry_after_ms).toBeLessThanOrEqual(100);
    const retryAfter = Number(res.headers.get('Retry-After'));
    expect(retryAfter).toBe(1);
    expect(retryAfter * 1000).toBeGreaterThanOrEqual(body.retry_after_ms);
    expect(res.headers.get('RateLimit')).toBe('"default";r=0;t=4');
    expect(res.headers.get('RateLimit-Policy')).toBe('"default";q=40;w=4');
    expect(res.headers.get('X-RateLimit-Remaining')).toBe('0');
  });

  it('limits each API key separately', async () => {
    const { app } = makeApp();
    for (let i = 0; i < 41; i++) await get(app, 'carol');
    expect((await get(app, 'carol')).status).toBe(429);
    expect((await get(app, 'dave')).status).toBe(200);
  });

  it.each([
    ['missing', undefined, 401],
    ['empty', '', 401],
    ['257 bytes', 'x'.repeat(257), 400],
    ['a control character', 'ab\tc', 400],
    ['DEL', 'ab\x7f', 400],
  ])('rejects a key that is %s with a JSON %i and changes nothing', async (_name, key, status) => {
    const { app } = makeApp();
    const res = await get(app, key);
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(((await res.json()) as { detail: string }).detail).toBeTruthy();
    expect(res.headers.get('RateLimit')).toBeNull();
  });

  it('accepts a key of exactly 256 bytes', async () => {
    const { app } = makeApp();
    expect((await get(app, 'k'.repeat(256))).status).toBe(200);
  });

  it('503 JSON with Retry-After when the global store fails', async () => {
    const failing = { check: () => Promise.reject(new StoreUnavailableError('redis down')) };
    const health = () => ({ status: 'ok' as const, mode: 'degraded' as const, redis: 'down' as const });
    const app = createApp({ engine: engineFor(failing as unknown as MultiLimiter), health, logger: silentLogger() });
    const res = await get(app, 'erin');
    expect(res.status).toBe(503);
    expect(res.headers.get('Retry-After')).toBe('1');
    expect(await res.json()).toEqual({ detail: 'Rate limiter unavailable' });
  });
});

describe('GET /health and the rest', () => {
  it('reports the real service\'s mode, is never limited, and answers 503 while draining', async () => {
    const svc = createService(loadConfig({}), { logger: silentLogger() });
    closers.push(() => svc.close());
    await svc.start();
    for (let i = 0; i < 100; i++) expect((await svc.app.request('/health')).status).toBe(200);
    expect(await (await svc.app.request('/health')).json()).toEqual({ status: 'ok', mode: 'local-only', redis: 'not used' });
    svc.startDraining();
    const res = await svc.app.request('/health');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'draining' });
  });

  it('answers unknown routes with JSON 404', async () => {
    const { app } = makeApp();
    const res = await app.request('/nope');
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ detail: 'Not Found' });
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('answers %s /resource with 405 and Allow, counting nothing', async (method) => {
    const { app } = makeApp();
    const res = await app.request('/resource', { method, headers: { 'X-API-Key': 'mallory' } });
    expect(res.status).toBe(405);
    expect(res.headers.get('Allow')).toBe('GET, HEAD');
    expect(await res.json()).toEqual({ detail: 'Method Not Allowed' });
    const after = await get(app, 'mallory');
    expect(after.headers.get('X-RateLimit-Remaining')).toBe('39'); // the first token this key ever spent
  });

  it('limits HEAD like GET', async () => {
    const { app } = makeApp();
    const res = await app.request('/resource', { method: 'HEAD', headers: { 'X-API-Key': 'hana' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('X-RateLimit-Remaining')).toBe('39');
  });
});

describe('createMiddleware in any Hono app', () => {
  it('sets the typed rateLimit variable and takes a per-request policy', async () => {
    const manager = makeManager();
    const tiny: Policy = { name: 'tiny', algorithm: 'token_bucket', capacity: 2, refillPerSec: 1 };
    const app = new Hono<RateLimitEnv>();
    app.use('*', createMiddleware({ limiter: manager, policy: () => tiny, keyHeader: 'Authorization' }));
    app.get('/x', (c) => c.json(c.get('rateLimit')));
    const call = () => app.request('/x', { headers: { Authorization: 'token-1' } });
    expect(await (await call()).json()).toEqual({ policy: 'tiny', limit: 2, remaining: 1, reset: 1 });
    await call();
    expect((await call()).status).toBe(429);
  });

  it('keeps buckets apart per policy: two routes with different policies do not share one', async () => {
    const manager = makeManager();
    const app = new Hono<RateLimitEnv>();
    app.use('/a', createMiddleware({ limiter: manager, policy: { name: 'a', algorithm: 'token_bucket', capacity: 1, refillPerSec: 1 } }));
    app.use('/b', createMiddleware({ limiter: manager, policy: { name: 'b', algorithm: 'token_bucket', capacity: 1, refillPerSec: 1 } }));
    app.get('/a', (c) => c.json({}));
    app.get('/b', (c) => c.json({}));
    const call = (path: string) => app.request(path, { headers: { 'X-API-Key': 'same-key' } });
    expect((await call('/a')).status).toBe(200);
    expect((await call('/a')).status).toBe(429);
    expect((await call('/b')).status).toBe(200);
  });

  it('throws at construction on a bad limiter', () => {
    expect(() => createMiddleware({ limiter: {} as never, policy })).toThrow(TypeError);
  });
});
