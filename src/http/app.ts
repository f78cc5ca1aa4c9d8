/**
 * @module http/app
 *
 * The service's HTTP surface: `GET /resource` behind the limiter, `GET /health`
 * never limited. A method other than GET or HEAD on `/resource` answers 405 with
 * `Allow` before anything is counted. Unknown routes and unexpected errors answer
 * JSON, never HTML.
 */
import { Hono } from 'hono';
import type { Policy } from '../core/types.js';
import type { Logger } from '../log/logger.js';
import type { Limiter, RateLimitEnv } from './rate-limit-middleware.js';
import { createMiddleware } from './rate-limit-middleware.js';

/** What GET /health reports. */
export type HealthReport = {
  /** `ok` while serving; `draining` while shutting down (answered with 503 so a balancer stops sending). */
  status: 'ok' | 'draining';
  /** `global`: deciding with Redis; `degraded`: Redis away, deciding in memory; `local-only`: no Redis configured. */
  mode: 'global' | 'degraded' | 'local-only';
  redis: 'up' | 'down' | 'not used';
  [more: string]: unknown;
};

export type AppDeps = {
  limiter: Limiter;
  /** The node's state as last observed: answered from memory, never a Redis call per request. */
  health: () => HealthReport;
  policy: Policy;
  logger: Logger;
};

const LIMITED_METHODS = ['GET', 'HEAD'];

export function createApp(deps: AppDeps): Hono<RateLimitEnv> {
  const app = new Hono<RateLimitEnv>();

  app.get('/health', (c) => {
    const report = deps.health();
    return c.json(report, report.status === 'draining' ? 503 : 200);
  });

  app.on(LIMITED_METHODS, '/resource', createMiddleware({ limiter: deps.limiter, policy: deps.policy }), (c) =>
    c.json({ ok: true, rate_limit: c.get('rateLimit') }),
  );
  app.all('/resource', (c) => {
    c.header('Allow', LIMITED_METHODS.join(', '));
    return c.json({ detail: 'Method Not Allowed' }, 405);
  });

  app.notFound((c) => c.json({ detail: 'Not Found' }, 404));
  app.onError((err, c) => {
    deps.logger.error('unhandled error', { error: err.message, path: c.req.path });
    return c.json({ detail: 'Internal Server Error' }, 500);
  });
  return app;
}
