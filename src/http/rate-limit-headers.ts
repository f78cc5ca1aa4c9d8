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
import { perObject } from '../core/per-object.js';
import type { Decision, Policy } from '../core/types.js';

/** `"name";q=capacity;w=refill-window-seconds`, cached per policy object. */
export const rateLimitPolicyHeader = perObject((policy: Policy): string =>
  serializeList([
    [
      policy.name,
      new Map([
        ['q', policy.capacity],
        ['w', Math.ceil(policy.capacity / policy.refillPerSec)],
      ]),
    ],
  ]),
);

/** Seconds until the bucket is full again, as sent in `t` and `X-RateLimit-Reset`. */
export function resetSeconds(d: Decision): number {
  return Math.ceil(d.resetMs / 1000);
}

/** The policy's name as an sf-string (serialised once per policy, which also validates it). */
const sfName = perObject((p: Policy): string => serializeString(p.name));

/**
 * `"name";r=remaining;t=seconds-until-full`. Runs on every request, so only the
 * name goes through the serializer (once per policy);
 * `r` and `t` are non-negative integers, whose sf-integer form is their decimal.
 */
export function rateLimitHeader(d: Decision): string {
  return `${sfName(d.policy)};r=${Math.max(0, Math.floor(d.remaining))};t=${resetSeconds(d)}`;
}

/** Retry-After in whole seconds: rounded up, never 0, never before a token is back. */
export function retryAfterSeconds(d: Decision): number {
  return Math.max(1, Math.ceil(d.retryAfterMs / 1000));
}

/** `RateLimit-Policy` for several limits: each limit's item, comma-separated (cached per list). */
export const rateLimitPolicyList = perObject((policies: readonly Policy[]): string => policies.map(rateLimitPolicyHeader).join(', '));

/** The most constraining decision: the lowest `r`; on a tie, the longest `t`. */
export function mostConstraining(ds: readonly Decision[]): Decision {
  let best = ds[0] as Decision;
  for (const d of ds) {
    if (d.remaining < best.remaining || (d.remaining === best.remaining && d.resetMs > best.resetMs)) best = d;
  }
  return best;
}
