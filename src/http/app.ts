/**
 * @module http/app
 *
 * The service's HTTP surface: `GET /resource` behind the limiter, `GET /health`
 * never limited. Unknown routes and unexpected errors answer JSON, never HTML.
 */
import { Hono } from 'hono';
import type { Policy } from '../lease/lease-manager.js';
import type { Logger } from '../log/logger.js';
import type { Limiter, RateLimitEnv } from './rate-limit-middleware.js';
import { createMiddleware } from './rate-limit-middleware.js';

/** What GET /health reports. */
export type HealthReport = {
  status: 'ok';
  /** `global`: deciding with Redis; `degraded`: Redis away, deciding in memory; `local-only`: no Redis configured. */
  mode: 'global' | 'degraded' | 'local-only';
  redis: 'up' | 'down' | 'not used';
  [more: string]: unknown;
};

export type AppDeps = {
  limiter: Limiter;
  health: () => Promise<HealthReport>;
  policy: Policy;
  logger: Logger;
};

export function createApp(deps: AppDeps): Hono<RateLimitEnv> {
  const app = new Hono<RateLimitEnv>();

  app.get('/health', async (c) => c.json(await deps.health()));

  app.use('/resource', createMiddleware({ limiter: deps.limiter, policy: deps.policy }));
  app.get('/resource', (c) => c.json({ ok: true, rate_limit: c.get('rateLimit') }));

  app.notFound((c) => c.json({ detail: 'Not Found' }, 404));
  app.onError((err, c) => {
    deps.logger.error('unhandled error', { error: err.message, path: c.req.path });
    return c.json({ detail: 'Internal Server Error' }, 500);
  });
  return app;
}
