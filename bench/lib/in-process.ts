/**
 * The policy engine as the in-process benchmarks drive it (bench/decide.ts,
 * bench/cold-decide.ts): one rule limiting every request by its API key with a
 * token bucket, and requests as the HTTP layer hands them to the engine.
 */
import type { MultiLimiter } from '../../src/core/types.js';
import { createClientIp } from '../../src/policy/client-ip.js';
import { parsePolicyDocument } from '../../src/policy/document.js';
import { PolicyEngine, type RequestInput } from '../../src/policy/engine.js';
import { createJwtVerifier } from '../../src/policy/jwt.js';
import { compilePolicies } from '../../src/policy/rules.js';

/** An engine over `limiter` whose one rule allows each API key `limit` requests per `windowSec` (token bucket). */
export function apiKeyEngine(limiter: MultiLimiter, limit: number, windowSec: number): PolicyEngine {
  const parsed = parsePolicyDocument({
    policies: { default: { algorithm: 'token_bucket', limit, windowSec } },
    rules: [{ name: 'default', limits: ['default'] }],
  });
  if (!parsed.ok) throw new Error(`bench policy document: ${JSON.stringify(parsed)}`);
  const compiled = compilePolicies(parsed.document);
  return new PolicyEngine({
    limiter,
    policies: () => compiled,
    jwt: createJwtVerifier({ secret: 'x'.repeat(32) }),
    clientIp: createClientIp({ trustedProxies: [], ipv6Prefix: 64 }),
    servedMethods: new Set(['GET', 'HEAD']),
  });
}

/** `GET /resource` carrying `key` in `X-API-Key`, from a local peer. */
export function apiKeyRequest(key: string): RequestInput {
  return {
    method: 'GET',
    path: '/resource',
    header: (n) => (n === 'x-api-key' ? key : undefined),
    headerCount: (n) => (n === 'x-api-key' ? 1 : 0),
    peer: { remoteAddress: '127.0.0.1', forwardedFor: undefined },
  };
}
