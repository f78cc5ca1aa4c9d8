/**
 * @module config/config
 *
 * All settings, read from the environment once at start-up, validated with zod,
 * and frozen. A bad value throws `ConfigError` naming the variable and what it
 * accepts; `main.ts` prints it and exits non-zero.
 */
import { z } from 'zod';
import type { Policy } from '../core/types.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `a whole number from ${min} to ${max}`).max(max, `a whole number from ${min} to ${max}`));

const positive = (max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/, `a number greater than 0 and at most ${max}`)
    .transform(Number)
    .pipe(z.number().gt(0, `a number greater than 0 and at most ${max}`).max(max, `a number greater than 0 and at most ${max}`));

const redisUrl = z
  .string()
  .trim()
  .regex(/^rediss?:\/\/\S+$/, 'a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379');

const schema = z.object({
  PORT: int(0, 65535).default(8080),
  HOST: z.string().trim().min(1, 'a host name or address to listen on').default('0.0.0.0'),
  REDIS_URL: redisUrl.optional(),
  REDIS_CLUSTER_NODES: z
    .string()
    .trim()
    .regex(/^[^\s,:]+:\d{1,5}(,[^\s,:]+:\d{1,5})*$/, 'a comma-separated list of host:port, e.g. 10.0.0.1:7000,10.0.0.2:7000')
    .optional(),
  REDIS_TIMEOUT_MS: int(1, 60_000).default(100),
  DEGRADED_MODE: z.enum(['local', 'open', 'closed'], { error: 'one of local, open, closed' }).default('local'),
  SHUTDOWN_TIMEOUT_MS: int(0, 600_000).default(5000),
  SHUTDOWN_DRAIN_MS: int(0, 600_000).default(1000),
  KEY_HASH_SECRET: z.string().min(16, 'a secret of at least 16 characters (the same on every node)').optional(),
  NEW_KEYS_PER_SEC: int(1, 10_000_000).default(3000),
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9:_.-]{0,32}$/, 'up to 32 characters from A-Z a-z 0-9 : _ . -')
    .default('rl:'),
  RATE_LIMIT_CAPACITY: int(1, 1_000_000).default(40),
  RATE_LIMIT_REFILL_PER_SEC: positive(1_000_000).default(10).pipe(z.number().min(0.001, 'a number from 0.001 to 1000000')),
  RATE_LIMIT_POLICY_NAME: z
    .string()
    .regex(/^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/, '1 to 64 printable ASCII characters without " or \\')
    .default('default'),
  LOCAL_MAX_KEYS: int(1, 10_000_000).default(100_000),
  LEASE_TTL_MS: int(10, 600_000).default(30_000),
  LEASE_MAX_TOKENS: int(0, 1_000_000).default(20),
  LEASE_COLD_TOKENS: int(1, 1_000_000).default(4),
  LOG_LEVEL: z.enum(['error', 'warn', 'info', 'debug'], { error: 'one of error, warn, info, debug' }).default('info'),
  POLICY_FILE: z.string().min(1).optional(),
  POLICY_SOURCE: z.enum(['redis', 'file'], { error: 'redis or file' }).default('redis'),
  CLIENTS_FILE: z.string().min(1).optional(),
  TRUSTED_PROXIES: z
    .string()
    .trim()
    .regex(/^[0-9A-Fa-f.:/]+(\s*,\s*[0-9A-Fa-f.:/]+)*$/, 'a comma-separated list of IP addresses or CIDR blocks, e.g. 10.0.0.0/8,fd00::/8')
    .optional(),
  IPV6_PREFIX: int(16, 128).default(64),
  JWT_SECRET: z.string().min(32, 'a secret of at least 32 characters (HS256)').optional(),
  JWKS_FILE: z.string().min(1).optional(),
  ADMIN_PORT: int(0, 65535).default(8081),
  ADMIN_HOST: z.string().trim().min(1, 'a host name or address to listen on').default('127.0.0.1'),
  ADMIN_TOKENS: z.string().min(1).optional(),
  ADMIN_TOKENS_FILE: z.string().min(1).optional(),
  DATA_DIR: z.string().min(1).optional(),
  UPSTREAM_URL: z.string().trim().regex(/^https?:\/\/\S+$/, 'an http:// or https:// URL, e.g. http://app:3000').optional(),
  UPSTREAM_TIMEOUT_MS: int(1, 600_000).default(10_000),
  WORKERS: z.string().trim().regex(/^(auto|[1-9]\d{0,2})$/, 'a number of processes from 1 to 999, or auto (one per core)').default('1'),
})
  // A lease must outlive the call that brings it, or its reply can only be dropped.
  .refine((c) => c.LEASE_TTL_MS >= 4 * c.REDIS_TIMEOUT_MS, {
    path: ['LEASE_TTL_MS'],
    message: 'at least 4 × REDIS_TIMEOUT_MS (a lease must outlive the call that brings it)',
  })
  .refine((c) => c.POLICY_SOURCE !== 'file' || c.POLICY_FILE !== undefined, {
    path: ['POLICY_SOURCE'],
    message: 'redis, or file together with POLICY_FILE (the file that is the document)',
  })
  // Workers of one machine share policies and limits only through Redis.
  .refine((c) => c.WORKERS === '1' || c.REDIS_URL !== undefined || c.REDIS_CLUSTER_NODES !== undefined, {
    path: ['WORKERS'],
    message: '1 without REDIS_URL or REDIS_CLUSTER_NODES (workers share limits and policies only through Redis)',
  })
  .refine((c) => c.SHUTDOWN_TIMEOUT_MS === 0 || c.SHUTDOWN_DRAIN_MS < c.SHUTDOWN_TIMEOUT_MS, {
    path: ['SHUTDOWN_DRAIN_MS'],
    message: 'less than SHUTDOWN_TIMEOUT_MS (draining is part of the shutdown)',
  });

/** Variables whose values are never printed. */
const SECRET_VARIABLES = new Set(['KEY_HASH_SECRET', 'JWT_SECRET', 'ADMIN_TOKENS']);

/** A value fit for an error message: secrets hidden, credentials in URLs masked. */
export function redact(name: string, value: string | undefined): string {
  if (value === undefined) return 'unset';
  if (SECRET_VARIABLES.has(name)) return '(secret, not shown)';
  return JSON.stringify(value.replace(/(\/\/)([^/@\s]*)@/g, (_, slashes: string, auth: string) => `${slashes}${auth.includes(':') ? `${auth.split(':')[0]}:***` : '***'}@`));
}

export type Config = Readonly<{
  port: number;
  host: string;
  redisUrl: string | undefined;
  redisClusterNodes: { host: string; port: number }[] | undefined;
  redisTimeoutMs: number;
  degradedMode: 'local' | 'open' | 'closed';
  shutdownTimeoutMs: number;
  /** How long a stopping node keeps serving (health 503, `Connection: close`) before it stops accepting. */
  shutdownDrainMs: number;
  keyHashSecret: string | undefined;
  newKeysPerSec: number;
  redisKeyPrefix: string;
  policy: Policy;
  localMaxKeys: number;
  leaseTtlMs: number;
  leaseMaxTokens: number;
  leaseColdTokens: number;
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  policyFile: string | undefined;
  policySource: 'redis' | 'file';
  clientsFile: string | undefined;
  trustedProxies: string[];
  ipv6Prefix: number;
  jwtSecret: string | undefined;
  jwksFile: string | undefined;
  adminPort: number;
  adminHost: string;
  adminTokens: string | undefined;
  adminTokensFile: string | undefined;
  dataDir: string | undefined;
  upstreamUrl: string | undefined;
  upstreamTimeoutMs: number;
  /** Processes to run on this machine (node:cluster): a number, or `auto` (one per core). */
  workers: number | 'auto';
}>;

/** The environment variables this service reads. */
export const CONFIG_VARIABLES = Object.keys(schema.shape);

/**
 * Parses and validates the environment. Unset and empty variables take their defaults.
 * @throws ConfigError naming every bad variable and what it accepts.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const input: Record<string, string> = {};
  for (const name of CONFIG_VARIABLES) {
    const v = env[name];
    if (v !== undefined && v !== '') input[name] = v;
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0]);
      return `${name}=${redact(name, input[name])}: expected ${i.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const c = parsed.data;
  return Object.freeze({
    port: c.PORT,
    host: c.HOST,
    redisUrl: c.REDIS_URL,
    redisClusterNodes: c.REDIS_CLUSTER_NODES?.split(',').map((hp) => {
      const i = hp.lastIndexOf(':');
      return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
    }),
    redisTimeoutMs: c.REDIS_TIMEOUT_MS,
    degradedMode: c.DEGRADED_MODE,
    shutdownTimeoutMs: c.SHUTDOWN_TIMEOUT_MS,
    shutdownDrainMs: c.SHUTDOWN_DRAIN_MS,
    keyHashSecret: c.KEY_HASH_SECRET,
    newKeysPerSec: c.NEW_KEYS_PER_SEC,
    redisKeyPrefix: c.REDIS_KEY_PREFIX,
    policy: Object.freeze({ name: c.RATE_LIMIT_POLICY_NAME, algorithm: 'token_bucket', capacity: c.RATE_LIMIT_CAPACITY, refillPerSec: c.RATE_LIMIT_REFILL_PER_SEC }),
    localMaxKeys: c.LOCAL_MAX_KEYS,
    leaseTtlMs: c.LEASE_TTL_MS,
    leaseMaxTokens: c.LEASE_MAX_TOKENS,
    leaseColdTokens: c.LEASE_COLD_TOKENS,
    logLevel: c.LOG_LEVEL,
    policyFile: c.POLICY_FILE,
    policySource: c.POLICY_SOURCE,
    clientsFile: c.CLIENTS_FILE,
    trustedProxies: c.TRUSTED_PROXIES ? c.TRUSTED_PROXIES.split(',').map((x) => x.trim()) : [],
    ipv6Prefix: c.IPV6_PREFIX,
    jwtSecret: c.JWT_SECRET,
    jwksFile: c.JWKS_FILE,
    adminPort: c.ADMIN_PORT,
    adminHost: c.ADMIN_HOST,
    adminTokens: c.ADMIN_TOKENS,
    adminTokensFile: c.ADMIN_TOKENS_FILE,
    dataDir: c.DATA_DIR,
    upstreamUrl: c.UPSTREAM_URL,
    upstreamTimeoutMs: c.UPSTREAM_TIMEOUT_MS,
    workers: c.WORKERS === 'auto' ? 'auto' : Number(c.WORKERS),
  });
}
