/**
 * @module metrics/registry
 *
 * The node's Prometheus metrics (prom-client), served by the admin listener at
 * `GET /metrics`. The hot path pays nothing for them: requests and decisions
 * are plain counters (`RequestCounters`, the lease manager's stats) read here
 * at scrape time in `collect()`. Only store calls, which are I/O anyway, observe
 * histograms as they happen. Label values come from the policy document (rule,
 * policy) and fixed enums only: never a client's key, address or header.
 */
import client from 'prom-client';
import type { LeaseCounters } from '../core/types.js';
import { REQUEST_DECISIONS, type RequestCounters, SOURCES } from './request-counters.js';



export type MetricsSources = {
  counters: RequestCounters;
  lease: () => LeaseCounters;
  localKeys: () => number;
  waiting: () => number;
  breaker: () => 'closed' | 'open' | 'half-open';
  /** Mode changes since start, by the mode entered. */
  transitions: () => { degraded: number; global: number };
  liveNodes: () => number;
  policy: () => { version: number; reloadsOk: number; reloadsRefused: number; lastReloadMs: number };
  violationsNotLogged: () => number;
};

/** What a store call reports: its command, its duration, and how it failed (if it did). */
export type RedisCallObserver = (command: string, seconds: number, error?: RedisErrorKind) => void;
export type RedisErrorKind = 'timeout' | 'connection' | 'reply' | 'other';

/** Sub-millisecond buckets: a healthy Redis answers in 0.1–1 ms. */
const SECONDS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** The default metrics whose names promtool flags (gauges named `_total`): dropped; `nodejs_active_handles` etc. (by type) stay. */
const LINTED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];


export function createMetrics(s: MetricsSources): { registry: client.Registry; observeRedisCall: RedisCallObserver } {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  for (const name of LINTED_DEFAULTS) registry.removeSingleMetric(name);
  const registers = [registry];
  const counter = (name: string, help: string, labelNames: string[], collect: (this: client.Counter<string>) => void) =>
    new client.Counter({ name, help, labelNames, registers, collect });
  const gauge = (name: string, help: string, labelNames: string[], collect: (this: client.Gauge<string>) => void) =>
    new client.Gauge({ name, help, labelNames, registers, collect });

  counter('ratelimit_requests_total', 'Requests by matched rule and outcome (rule "" when none matched)', ['rule', 'decision'], function () {
    this.reset();
    for (const [rule, a] of s.counters.requests) {
      REQUEST_DECISIONS.forEach((decision, i) => {
        if (a[i]) this.inc({ rule, decision }, a[i]);
      });
    }
  });
  counter('ratelimit_decisions_total', 'Limit checks by policy, outcome and how they were decided (local: held tokens, or the bucket itself in embedded mode; global: after a lease call; degraded/fail_open: without Redis)', ['policy', 'decision', 'source'], function () {
    this.reset();
    for (const [policy, a] of s.counters.policies) {
      SOURCES.forEach((source, i) => {
        if (a[i]) this.inc({ policy, decision: 'allowed', source }, a[i]);
        if (a[4 + i]) this.inc({ policy, decision: 'denied', source }, a[4 + i]);
      });
    }
  });
  counter('ratelimit_cost_units_total', 'Tokens charged by allowed checks, by policy', ['policy'], function () {
    this.reset();
    for (const [policy, a] of s.counters.policies) this.inc({ policy }, a[8] as number);
  });
  counter('ratelimit_near_limit_total', 'Allowed checks that left less than 20% of the limit, by policy', ['policy'], function () {
    this.reset();
    for (const [policy, a] of s.counters.policies) this.inc({ policy }, a[9] as number);
  });
  counter('ratelimit_lease_calls_total', 'Lease calls to the global store, by kind', ['kind'], function () {
    const l = s.lease();
    this.reset();
    this.inc({ kind: 'demand' }, l.leaseCalls - l.aheadCalls);
    this.inc({ kind: 'ahead' }, l.aheadCalls);
  });
  counter('ratelimit_lease_failures_total', 'Lease calls that failed or answered too late', ['reason'], function () {
    const l = s.lease();
    this.reset();
    this.inc({ reason: 'failed' }, l.storeFailures - l.lateReplies);
    this.inc({ reason: 'late' }, l.lateReplies);
  });
  counter('ratelimit_tokens_granted_total', 'Tokens leased to this node', [], function () {
    this.reset();
    this.inc(s.lease().tokensGranted);
  });
  counter('ratelimit_tokens_returned_total', 'Unused tokens given back to the global store', [], function () {
    this.reset();
    this.inc(s.lease().tokensReturned);
  });
  counter('ratelimit_returns_total', 'Return calls by result', ['result'], function () {
    const l = s.lease();
    this.reset();
    this.inc({ result: 'ok' }, l.returnCalls - Math.min(l.returnCalls, l.returnFailures));
    this.inc({ result: 'failed' }, l.returnFailures);
  });
  counter('ratelimit_degraded_decisions_total', 'Requests decided without Redis (degraded or fail-open)', [], function () {
    this.reset();
    this.inc(s.lease().degradedDecisions);
  });
  counter('ratelimit_new_keys_shed_total', 'First requests of new keys shed over NEW_KEYS_PER_SEC', [], function () {
    this.reset();
    this.inc(s.lease().newKeysShed);
  });
  counter('ratelimit_local_evictions_total', 'Key states pushed out of the local LRU', [], function () {
    this.reset();
    this.inc(s.lease().evictions);
  });
  counter('ratelimit_mode_transitions_total', 'Changes between global and degraded mode, by the mode entered', ['to'], function () {
    const t = s.transitions();
    this.reset();
    this.inc({ to: 'degraded' }, t.degraded);
    this.inc({ to: 'global' }, t.global);
  });
  counter('ratelimit_policy_reloads_total', 'Policy documents applied or refused', ['result'], function () {
    const p = s.policy();
    this.reset();
    this.inc({ result: 'applied' }, p.reloadsOk);
    this.inc({ result: 'refused' }, p.reloadsRefused);
  });
  counter('ratelimit_violations_not_logged_total', 'Denials left out of the log by sampling', [], function () {
    this.reset();
    this.inc(s.violationsNotLogged());
  });
  gauge('ratelimit_degraded', '1 while the node decides without Redis (breaker open or half-open)', [], function () {
    this.set(s.breaker() === 'closed' ? 0 : 1);
  });
  gauge('ratelimit_circuit_breaker_state', 'The circuit breaker: 1 for its current state', ['state'], function () {
    const now = s.breaker();
    for (const st of ['closed', 'open', 'half-open']) this.set({ state: st }, st === now ? 1 : 0);
  });
  gauge('ratelimit_live_nodes', 'Live nodes as counted from heartbeats', [], function () {
    this.set(s.liveNodes());
  });
  gauge('ratelimit_local_keys', 'Key states held in the local LRU', [], function () {
    this.set(s.localKeys());
  });
  gauge('ratelimit_waiting_requests', 'Requests waiting on a lease call now', [], function () {
    this.set(s.waiting());
  });
  gauge('ratelimit_policy_version', 'The policy document version this node runs', [], function () {
    this.set(s.policy().version);
  });
  gauge('ratelimit_policy_last_reload_timestamp_seconds', 'When this node last applied a policy document (Unix time)', [], function () {
    this.set(s.policy().lastReloadMs / 1000);
  });
  const redisCommands = new client.Counter({ name: 'ratelimit_redis_commands_total', help: 'Redis commands sent (a script call counts once), by command', labelNames: ['command'], registers });
  const redisSeconds = new client.Histogram({ name: 'ratelimit_redis_call_seconds', help: 'Redis call latency, by command', labelNames: ['command'], buckets: SECONDS_BUCKETS, registers });
  const leaseSeconds = new client.Histogram({ name: 'ratelimit_lease_call_seconds', help: 'Lease call latency (the lease script)', buckets: SECONDS_BUCKETS, registers });
  const redisErrors = new client.Counter({ name: 'ratelimit_redis_errors_total', help: 'Redis calls that failed, by command and kind', labelNames: ['command', 'kind'], registers });

  return {
    registry,
    observeRedisCall(command, seconds, error) {
      redisCommands.inc({ command });
      redisSeconds.observe({ command }, seconds);
      if (command === 'lease') leaseSeconds.observe(seconds);
      if (error) redisErrors.inc({ command, kind: error });
    },
  };
}
