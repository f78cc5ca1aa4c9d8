/**
 * @module http/rate-limit-headers
 *
 * The response headers of a limited route:
 * - `RateLimit-Policy: "default";q=40;w=4` and `RateLimit: "default";r=12;t=3`, the
 *   structured fields of draft-ietf-httpapi-ratelimit-headers (serialised with the
 *   `structured-headers` library). `q` is the bucket capacity, `w` the seconds it
 *   takes to refill from empty, `r` the tokens left, `t` the seconds until the
 *   bucket is full again.
 * - The legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`,
 *   where Reset is the same as `t`: seconds from now (not an epoch time) until
 *   the bucket is full again.
 */
import { serializeList, serializeString } from 'structured-headers';
import type { Decision, Policy } from '../core/types.js';

const policyHeaders = new WeakMap<Policy, string>();

/** `"name";q=capacity;w=refill-window-seconds`, cached per policy object. */
export function rateLimitPolicyHeader(policy: Policy): string {
  let h = policyHeaders.get(policy);
  if (h === undefined) {
    const w = Math.ceil(policy.capacity / policy.refillPerSec);
    h = serializeList([
      [
        policy.name,
        new Map([
          ['q', policy.capacity],
          ['w', w],
        ]),
      ],
    ]);
    policyHeaders.set(policy, h);
  }
  return h;
}

/** Seconds until the bucket is full again, as sent in `t` and `X-RateLimit-Reset`. */
export function resetSeconds(d: Decision): number {
  return Math.ceil(d.resetMs / 1000);
}

const policyNames = new WeakMap<Policy, string>();

/**
 * `"name";r=remaining;t=seconds-until-full`. Runs on every request, so only the
 * name goes through the serializer (once per policy, which also validates it);
 * `r` and `t` are non-negative integers, whose sf-integer form is their decimal.
 */
export function rateLimitHeader(d: Decision): string {
  let name = policyNames.get(d.policy);
  if (name === undefined) {
    name = serializeString(d.policy.name);
    policyNames.set(d.policy, name);
  }
  return `${name};r=${Math.max(0, Math.floor(d.remaining))};t=${resetSeconds(d)}`;
}

/** Retry-After in whole seconds: rounded up, never 0, never before a token is back. */
export function retryAfterSeconds(d: Decision): number {
  return Math.max(1, Math.ceil(d.retryAfterMs / 1000));
}

const policyLists = new WeakMap<readonly Policy[], string>();

/** `RateLimit-Policy` for several limits: each limit's item, comma-separated (cached per list). */
export function rateLimitPolicyList(policies: readonly Policy[]): string {
  let h = policyLists.get(policies);
  if (h === undefined) {
    h = policies.map(rateLimitPolicyHeader).join(', ');
    policyLists.set(policies, h);
  }
  return h;
}

/** The most constraining decision: the lowest `r`; on a tie, the longest `t`. */
export function mostConstraining(ds: readonly Decision[]): Decision {
  let best = ds[0] as Decision;
  for (const d of ds) {
    if (d.remaining < best.remaining || (d.remaining === best.remaining && d.resetMs > best.resetMs)) best = d;
  }
  return best;
}
