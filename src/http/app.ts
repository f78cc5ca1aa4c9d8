/**
 * @module http/app
 *
 * The service's HTTP surface: `GET /health` (never limited, the balancer's
 * signal), and every other request through the policy engine
 * (`policy-handler.ts`): limited when a rule matches, 404 when none does.
 * Unexpected errors answer JSON, never HTML.
 */
import { Hono } from 'hono';
import type { Logger } from '../log/logger.js';
import type { PolicyEngine } from '../policy/engine.js';
import { type PolicyHandlerOptions, createPolicyHandler } from './policy-handler.js';
import type { RateLimitEnv } from './rate-limit-middleware.js';

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
  engine: PolicyEngine;
  /** Metrics counters, the violation log and how clients are named in it. */
  handler?: PolicyHandlerOptions;
  /** The node's state as last observed: answered from memory, never a Redis call per request. */
  health: () => HealthReport;
  logger: Logger;
};

export function createApp(deps: AppDeps): Hono<RateLimitEnv> {
  const app = new Hono<RateLimitEnv>();

  app.get('/health', (c) => {
    const report = deps.health();
    return c.json(report, report.status === 'draining' ? 503 : 200);
  });

  app.all('*', createPolicyHandler(deps.engine, deps.handler));

  app.notFound((c) => c.json({ detail: 'Not Found' }, 404));
  app.onError((err, c) => {
    deps.logger.error('unhandled error', { error: err.message, path: c.req.path, requestId: c.req.header('x-request-id') });
    return c.json({ detail: 'Internal Server Error' }, 500);
  });
  return app;
}
