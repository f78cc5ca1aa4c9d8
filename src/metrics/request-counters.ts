/**
 * @module metrics/request-counters
 *
 * What every request adds to the metrics, as plain numbers: per rule, a small
 * array indexed by outcome; per policy, one indexed by decision and source. The
 * hot path does a map lookup and an increment, and allocates nothing once a
 * rule or policy has been seen; the Prometheus collector (`metrics/registry.ts`)
 * reads them at scrape time. Label values come only from the policy document
 * (rule and policy names) and fixed enums, never from anything a client sends,
 * so the series count is bounded by the document.
 */
import type { Decision, DecisionSource } from '../core/types.js';

/** A request's outcome, as `ratelimit_requests_total{decision}` counts it. */
export const REQUEST_DECISIONS = [
  'allowed',
  'denied',
  'shadow_denied',
  'allow_listed',
  'deny_listed',
  'fail_open',
  'shed',
  'refused',
  'no_rule',
  'method_not_allowed',
  'unavailable',
] as const;
export type RequestDecision = (typeof REQUEST_DECISIONS)[number];
const DECISION_INDEX = Object.fromEntries(REQUEST_DECISIONS.map((d, i) => [d, i])) as Record<RequestDecision, number>;

export const SOURCES: readonly DecisionSource[] = ['local', 'global', 'degraded', 'fail_open'];
const SOURCE_INDEX: Record<DecisionSource, number> = { local: 0, global: 1, degraded: 2, fail_open: 3 };

/** An allowed request this close to a limit counts as near it (Envoy's `near_limit`, 80%). */
export const NEAR_LIMIT_RATIO = 0.8;

/** Per policy: checks by [allowed|denied][source], then cost units, then near-limit checks. */
export type PolicyCounts = Float64Array;
const COST = 8;
const NEAR = 9;

export class RequestCounters {
  /** rule name ("" when no rule matched) → requests by outcome (REQUEST_DECISIONS order). */
  readonly requests = new Map<string, Float64Array>();
  /** policy name → checks: [0..3] allowed by source, [4..7] denied by source, [8] cost units, [9] near limit. */
  readonly policies = new Map<string, PolicyCounts>();
  request(rule: string, decision: RequestDecision): void {
    let a = this.requests.get(rule);
    if (a === undefined) {
      a = new Float64Array(REQUEST_DECISIONS.length);
      this.requests.set(rule, a);
    }
    const i = DECISION_INDEX[decision];
    a[i] = (a[i] as number) + 1;
  }

  /** One limit a request was checked against. */
  limit(d: Decision, cost: number): void {
    const name = d.policy.name;
    let a = this.policies.get(name);
    if (a === undefined) {
      a = new Float64Array(10);
      this.policies.set(name, a);
    }
    const i = (d.allowed ? 0 : 4) + SOURCE_INDEX[d.source];
    a[i] = (a[i] as number) + 1;
    if (d.allowed) {
      a[COST] = (a[COST] as number) + cost;
      if (d.remaining < d.limit * (1 - NEAR_LIMIT_RATIO)) a[NEAR] = (a[NEAR] as number) + 1;
    }
  }
}
