import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('has defaults that run with nothing set', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ port: 8080, redisUrl: undefined, redisTimeoutMs: 100, localMaxKeys: 100_000 });
    expect(c.policy).toEqual({ name: 'default', capacity: 40, refillPerSec: 10 });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads every variable', () => {
    const c = loadConfig({
      PORT: '9000',
      REDIS_URL: 'redis://127.0.0.1:6380',
      RATE_LIMIT_CAPACITY: '100',
      RATE_LIMIT_REFILL_PER_SEC: '2.5',
      LOCAL_MAX_KEYS: '50',
      LEASE_TTL_MS: '2000',
    });
    expect(c).toMatchObject({ port: 9000, redisUrl: 'redis://127.0.0.1:6380', localMaxKeys: 50, leaseTtlMs: 2000 });
    expect(c.policy).toMatchObject({ capacity: 100, refillPerSec: 2.5 });
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
