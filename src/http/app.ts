/**
 * @module http/app
 *
 * The service's HTTP surface: `GET /resource` behind the limiter, `GET /health`
 * never limited. Unknown routes and unexpected errors answer JSON, never HTML.
 */
import { Hono } from 'hono';
import type { Limiter, RateLimitEnv } from './rate-limit-middleware.js';
import { createMiddleware } from './rate-limit-middleware.js';
import type { Policy } from '../lease/lease-manager.js';
import type { GlobalStore } from '../store/global-store.js';
import type { Logger } from '../log/logger.js';

export type AppDeps = {
  limiter: Limiter;
  store: Pick<GlobalStore, 'mode' | 'ping'>;
  policy: Policy;
  logger: Logger;
};

export function createApp(deps: AppDeps): Hono<RateLimitEnv> {
  const app = new Hono<RateLimitEnv>();

  app.get('/health', async (c) => {
    const mode = deps.store.mode;
    const redis = mode === 'global' ? ((await deps.store.ping()) ? 'up' : 'down') : 'not used';
    return c.json({ status: 'ok', mode, redis });
  });

  app.use('/resource', createMiddleware({ limiter: deps.limiter, policy: deps.policy }));
  app.get('/resource', (c) => c.json({ ok: true, rate_limit: c.get('rateLimit') }));

  app.notFound((c) => c.json({ detail: 'Not Found' }, 404));
  app.onError((err, c) => {
    deps.logger.error('unhandled error', { error: err.message, path: c.req.path });
    return c.json({ detail: 'Internal Server Error' }, 500);
  });
  return app;
}
