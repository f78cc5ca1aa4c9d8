import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('has defaults that run with nothing set', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ port: 8080, redisUrl: undefined, redisTimeoutMs: 100, localMaxKeys: 100_000 });
    expect(c.policy).toEqual({ name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 });
    expect(Object.isFrozen(c)).toBe(true);
  });

  // Every variable the service reads, a non-default value for it, and where it lands.
  const EVERY: [string, string, (c: ReturnType<typeof loadConfig>) => unknown, unknown][] = [
    ['PORT', '9000', (c) => c.port, 9000],
    ['HOST', '127.0.0.1', (c) => c.host, '127.0.0.1'],
    ['REDIS_URL', 'redis://127.0.0.1:6380', (c) => c.redisUrl, 'redis://127.0.0.1:6380'],
    ['REDIS_CLUSTER_NODES', '10.0.0.1:7000,10.0.0.2:7001', (c) => c.redisClusterNodes, [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7001 }]],
    ['REDIS_TIMEOUT_MS', '250', (c) => c.redisTimeoutMs, 250],
    ['DEGRADED_MODE', 'open', (c) => c.degradedMode, 'open'],
    ['SHUTDOWN_TIMEOUT_MS', '9000', (c) => c.shutdownTimeoutMs, 9000],
    ['SHUTDOWN_DRAIN_MS', '2500', (c) => c.shutdownDrainMs, 2500],
    ['KEY_HASH_SECRET', 'a-long-enough-secret', (c) => c.keyHashSecret, 'a-long-enough-secret'],
    ['NEW_KEYS_PER_SEC', '500', (c) => c.newKeysPerSec, 500],
    ['REDIS_KEY_PREFIX', 'x:', (c) => c.redisKeyPrefix, 'x:'],
    ['RATE_LIMIT_CAPACITY', '100', (c) => c.policy.capacity, 100],
    ['RATE_LIMIT_REFILL_PER_SEC', '2.5', (c) => c.policy.refillPerSec, 2.5],
    ['RATE_LIMIT_POLICY_NAME', 'gold', (c) => c.policy.name, 'gold'],
    ['LOCAL_MAX_KEYS', '50', (c) => c.localMaxKeys, 50],
    ['LEASE_TTL_MS', '2000', (c) => c.leaseTtlMs, 2000],
    ['LEASE_MAX_TOKENS', '7', (c) => c.leaseMaxTokens, 7],
    ['LEASE_COLD_TOKENS', '3', (c) => c.leaseColdTokens, 3],
    ['LOG_LEVEL', 'debug', (c) => c.logLevel, 'debug'],
    ['POLICY_FILE', 'config/policies.json', (c) => c.policyFile, 'config/policies.json'],
    ['POLICY_SOURCE', 'file', (c) => c.policySource, 'file'],
    ['CLIENTS_FILE', 'config/clients.json', (c) => c.clientsFile, 'config/clients.json'],
    ['TRUSTED_PROXIES', '10.0.0.0/8, fd00::/8', (c) => c.trustedProxies, ['10.0.0.0/8', 'fd00::/8']],
    ['IPV6_PREFIX', '56', (c) => c.ipv6Prefix, 56],
    ['JWT_SECRET', 'a-jwt-secret-that-is-long-enough-123', (c) => c.jwtSecret, 'a-jwt-secret-that-is-long-enough-123'],
    ['JWKS_FILE', 'config/jwks.json', (c) => c.jwksFile, 'config/jwks.json'],
    ['ADMIN_PORT', '9091', (c) => c.adminPort, 9091],
    ['ADMIN_HOST', '0.0.0.0', (c) => c.adminHost, '0.0.0.0'],
    ['ADMIN_TOKENS', 'ops:a-long-admin-secret-1', (c) => c.adminTokens, 'ops:a-long-admin-secret-1'],
    ['ADMIN_TOKENS_FILE', '/run/secrets/admin', (c) => c.adminTokensFile, '/run/secrets/admin'],
    ['DATA_DIR', '/var/lib/tandem', (c) => c.dataDir, '/var/lib/tandem'],
    ['UPSTREAM_URL', 'http://app:3000', (c) => c.upstreamUrl, 'http://app:3000'],
    ['UPSTREAM_TIMEOUT_MS', '2500', (c) => c.upstreamTimeoutMs, 2500],
    ['WORKERS', 'auto', (c) => c.workers, 'auto'], // with REDIS_URL (above)
  ];

  it('reads every variable it declares, each into its own field', () => {
    expect(EVERY.map(([name]) => name).sort()).toEqual([...CONFIG_VARIABLES].sort());
    const c = loadConfig(Object.fromEntries(EVERY.map(([name, value]) => [name, value])));
    for (const [name, , read, expected] of EVERY) expect(read(c), name).toEqual(expected);
  });

  it('refuses a lease TTL that does not outlive the Redis deadline, and a drain longer than the shutdown', () => {
    expect(() => loadConfig({ REDIS_TIMEOUT_MS: '1000', LEASE_TTL_MS: '3000' })).toThrow(/LEASE_TTL_MS=.*at least 4 × REDIS_TIMEOUT_MS/);
    expect(loadConfig({ REDIS_TIMEOUT_MS: '1000', LEASE_TTL_MS: '4000' }).leaseTtlMs).toBe(4000);
    expect(() => loadConfig({ SHUTDOWN_TIMEOUT_MS: '1000', SHUTDOWN_DRAIN_MS: '1000' })).toThrow(/SHUTDOWN_DRAIN_MS=.*less than SHUTDOWN_TIMEOUT_MS/);
  });

  it('never echoes a secret or a password in its errors', () => {
    const message = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    };
    const bad = message({ REDIS_URL: 'http://admin:hunter2@redis:6379' });
    expect(bad).toMatch(/REDIS_URL=.*admin:\*\*\*@redis/);
    expect(bad).not.toContain('hunter2');
    const short = message({ KEY_HASH_SECRET: 'tooshort' });
    expect(short).toMatch(/KEY_HASH_SECRET=\(secret, not shown\)/);
    expect(short).not.toContain('tooshort');
  });

  it.each([
    ['RATE_LIMIT_CAPACITY', '0', 'a whole number from 1'],
    ['RATE_LIMIT_CAPACITY', 'forty', 'a whole number from 1'],
    ['RATE_LIMIT_REFILL_PER_SEC', '0', 'greater than 0'],
    ['RATE_LIMIT_REFILL_PER_SEC', '-1', 'greater than 0'],
    ['PORT', '70000', 'a whole number from 0 to 65535'],
    ['REDIS_URL', 'localhost:6379', 'redis://'],
    ['LOG_LEVEL', 'loud', 'one of error, warn, info, debug'],
  ])('rejects %s=%s naming the variable and what it accepts', (name, value, accepts) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`${name}=.*expected.*${accepts}`));
  });
});
