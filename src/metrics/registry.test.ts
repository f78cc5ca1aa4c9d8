import { describe, expect, it } from 'vitest';
import { RequestCounters } from './request-counters.js';
import { type MetricsSources, createMetrics } from './registry.js';

/** Sources for the scrape-time metrics; these tests read only the store-call ones. */
function sources(): MetricsSources {
  const lease = { leaseCalls: 0, aheadCalls: 0, returnCalls: 0, returnFailures: 0, storeFailures: 0, lateReplies: 0, degradedDecisions: 0, failOpenAllowed: 0, newKeysShed: 0, tokensGranted: 0, tokensReturned: 0, evictions: 0 };
  return {
    counters: new RequestCounters(),
    lease: () => lease,
    localKeys: () => 0,
    waiting: () => 0,
    breaker: () => 'closed',
    transitions: () => ({ degraded: 0, global: 0 }),
    liveNodes: () => 1,
    policy: () => ({ version: 1, reloadsOk: 0, reloadsRefused: 0, lastReloadMs: 0 }),
    violationsNotLogged: () => 0,
  };
}

describe('store call metrics', () => {
  it('count and time every call by command, the lease script in its own histogram, failures by kind', async () => {
    const { registry, observeRedisCall } = createMetrics(sources());
    observeRedisCall('lease', 0.0004);
    observeRedisCall('lease', 0.002);
    observeRedisCall('heartbeat', 0.0003);
    observeRedisCall('lease', 0.3, 'timeout');
    const text = await registry.metrics();
    expect(text).toContain('ratelimit_redis_commands_total{command="lease"} 3');
    expect(text).toContain('ratelimit_redis_commands_total{command="heartbeat"} 1');
    expect(text).toContain('ratelimit_redis_call_seconds_count{command="lease"} 3');
    expect(text).toContain('ratelimit_redis_call_seconds_bucket{le="0.0005",command="lease"} 1');
    expect(text).toContain('ratelimit_redis_call_seconds_bucket{le="0.0025",command="lease"} 2');
    expect(text).toContain('ratelimit_redis_call_seconds_count{command="heartbeat"} 1');
    expect(text).toMatch(/ratelimit_redis_call_seconds_sum\{command="lease"\} 0\.302/);
    expect(text).toContain('ratelimit_lease_call_seconds_count 3');
    expect(text).toContain('ratelimit_redis_errors_total{command="lease",kind="timeout"} 1');
  });
});
