/**
 * The limiters this project is compared with, each as the same Hono route
 * (`GET /resource`, key in `X-API-Key`, JSON body, the same five rate-limit
 * headers, 429 with Retry-After), so only the limiting differs:
 *
 * - `rlflex`: rate-limiter-flexible's `RateLimiterRedis` over ioredis, the most
 *   used Node limiter. It counts points per fixed window; 40 points per 4 s has
 *   the same burst (40) and long-run rate (10/s) as the token bucket.
 * - `seed-lua`: the seeds' design, one GET plus one Lua token-bucket call per
 *   request, no local tier (`seed-token-bucket.lua`).
 * - `hono-rate-limiter`: the Hono middleware `hono-rate-limiter` with its default
 *   in-process `MemoryStore` (no Redis: the peer of our embedded mode), a fixed
 *   window of 40 per 4 s keyed by `X-API-Key`, `standardHeaders: 'draft-7'`
 *   (`RateLimit-Policy` and `RateLimit`, the pair closest to ours; it has no
 *   `X-RateLimit-*` legacy headers, so it sends two fewer). A missing key is a
 *   401 as for the others; a 429 carries Retry-After and a JSON `detail`.
 */
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import { rateLimiter } from 'hono-rate-limiter';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

const CAPACITY = 40;
const REFILL = 10;

function headers(remaining: number, resetS: number, retryS?: number): Record<string, string> {
  const h: Record<string, string> = {
    'Content-Type': 'application/json',
    'RateLimit-Policy': `"default";q=${CAPACITY};w=4`,
    RateLimit: `"default";r=${remaining};t=${resetS}`,
    'X-RateLimit-Limit': String(CAPACITY),
    'X-RateLimit-Remaining': String(remaining),
    'X-RateLimit-Reset': String(resetS),
  };
  if (retryS !== undefined) h['Retry-After'] = String(retryS);
  return h;
}

const unauthorized = () => new Response('{"detail":"Missing API key"}', { status: 401, headers: { 'Content-Type': 'application/json' } });
const unavailable = () =>
  new Response('{"detail":"Rate limiter unavailable"}', { status: 503, headers: { 'Content-Type': 'application/json', 'Retry-After': '1' } });

function redisClient(url: string): Redis {
  const r = new Redis(url, { enableOfflineQueue: true, maxRetriesPerRequest: 1, commandTimeout: 1000 });
  r.on('error', () => {});
  return r;
}

export function rlflexApp(redisUrl: string): Hono {
  const limiter = new RateLimiterRedis({ storeClient: redisClient(redisUrl), keyPrefix: 'rlflx', points: CAPACITY, duration: 4 });
  const app = new Hono();
  app.get('/resource', async (c) => {
    const key = c.req.header('x-api-key');
    if (!key) return unauthorized();
    try {
      const r = await limiter.consume(key);
      const reset = Math.ceil(r.msBeforeNext / 1000);
      return new Response('{"ok":true,"rate_limit":null}', { status: 200, headers: headers(r.remainingPoints, reset) });
    } catch (r) {
      if (!(r instanceof RateLimiterRes)) return unavailable();
      const s = Math.max(1, Math.ceil(r.msBeforeNext / 1000));
      const body = JSON.stringify({ detail: 'Too Many Requests', retry_after_ms: r.msBeforeNext });
      return new Response(body, { status: 429, headers: headers(0, s, s) });
    }
  });
  return app;
}

const SEED_SCRIPT = readFileSync(new URL('./seed-token-bucket.lua', import.meta.url), 'utf8');

export function seedLuaApp(redisUrl: string): Hono {
  const redis = redisClient(redisUrl);
  redis.defineCommand('seedBucket', { numberOfKeys: 1, lua: SEED_SCRIPT });
  const bucket = (redis as unknown as { seedBucket(k: string, c: number, r: number): Promise<[number, number, number]> }).seedBucket.bind(redis);
  const app = new Hono();
  app.get('/resource', async (c) => {
    const key = c.req.header('x-api-key');
    if (!key) return unauthorized();
    try {
      await redis.get(`seed:tier:${key}`); // the seed's per-request policy lookup
      const [allowed, left, waitMs] = await bucket(`seed:bucket:${key}`, CAPACITY, REFILL);
      const reset = Math.ceil(((CAPACITY - left) * 1000) / REFILL / 1000);
      if (allowed === 1) return new Response('{"ok":true,"rate_limit":null}', { status: 200, headers: headers(left, reset) });
      const s = Math.max(1, Math.ceil(waitMs / 1000));
      return new Response(JSON.stringify({ detail: 'Too Many Requests', retry_after_ms: waitMs }), { status: 429, headers: headers(0, reset, s) });
    } catch {
      return unavailable();
    }
  });
  return app;
}

export function honoRateLimiterApp(): Hono {
  const app = new Hono();
  app.use('/resource', async (c, next) => {
    if (!c.req.header('x-api-key')) return unauthorized();
    await next();
  });
  app.use(
    '/resource',
    rateLimiter({
      windowMs: (CAPACITY / REFILL) * 1000,
      limit: CAPACITY,
      standardHeaders: 'draft-7',
      keyGenerator: (c) => c.req.header('x-api-key') as string,
      message: { detail: 'Too Many Requests' },
    }),
  );
  // Through the context, so that the headers the middleware set reach the response.
  app.get('/resource', (c) => c.json({ ok: true, rate_limit: null }));
  return app;
}
