/**
 * @module store/memory-store
 *
 * Global buckets in this process's memory: the embedded local-only mode, where
 * limits are per process. Runs the same `leaseStep` as the Redis script, with the
 * injected clock, and drops buckets once they would be full again (like the PX
 * expiry in Redis), so idle clients cost nothing.
 *
 * It uses the same monotonic clock as the lease manager: the buckets and the
 * leases spent against them are one decision domain, and a wall-clock step
 * (NTP) must not free leases early or refill a bucket in one go. Windows are
 * aligned to that clock plus a fixed offset: with the system clock, the
 * process's start in epoch ms, so a minute's window starts on the minute (as
 * of start-up).
 */
import { algorithmOf } from '../algorithms/registry.js';
import { systemClock } from '../core/clock.js';
import type { BucketAdmin, BucketStore, BucketView, Clock, FleetStore, LeaseReply, LeaseRequest, Policy, StoreHealth } from '../core/types.js';
import { type BucketState, leaseStep } from '../protocol/lease-step.js';
import { memoizedName } from './key-name.js';

type Stored = { state: BucketState<unknown>; expiresAtMs: number };

/** A bucket's map key: like the Redis key name, per client, algorithm and policy. */
const bucketId = (clientId: string, policy: Policy): string => `${clientId}\u0000${policy.algorithm}\u0000${policy.name}`;

export class MemoryStore implements BucketStore, BucketAdmin, FleetStore, StoreHealth {
  readonly mode = 'local-only' as const;
  readonly #buckets = new Map<string, Stored>();
  readonly #clock: Clock;
  readonly #sweep: NodeJS.Timeout | undefined;

  readonly #epochMs: number;

  constructor(options: { clock: Clock; sweepIntervalMs?: number; epochMs?: number }) {
    this.#clock = options.clock;
    this.#epochMs = options.epochMs ?? (options.clock === systemClock ? performance.timeOrigin : 0);
    const every = options.sweepIntervalMs ?? 10_000;
    if (every > 0) {
      this.#sweep = setInterval(() => this.sweep(), every);
      this.#sweep.unref();
    }
  }

  /** How many buckets are held (expired ones go at the next sweep). */
  get size(): number {
    return this.#buckets.size;
  }

  lease(clientId: string, policy: Policy, req: LeaseRequest): Promise<LeaseReply> {
    return Promise.resolve(this.leaseSync(clientId, policy, req));
  }

  leaseSync(clientId: string, policy: Policy, req: LeaseRequest): LeaseReply {
    const now = this.#clock.nowMs();
    const id = memoizedName(req.memo, clientId, policy, bucketId);
    const held = this.#buckets.get(id);
    const prev = held && held.expiresAtMs > now ? held.state : undefined;
    // In place: the held state is replaced by the step's result anyway (one process, no reader between).
    const step = leaseStep(algorithmOf(policy), prev, policy, req, now + this.#epochMs, true);
    if (held) {
      held.state = step.state;
      held.expiresAtMs = now + step.ttlMs;
    } else this.#buckets.set(id, { state: step.state, expiresAtMs: now + step.ttlMs });
    return step.reply;
  }

  peek(clientId: string, policy: Policy): Promise<BucketView | undefined> {
    const held = this.#buckets.get(bucketId(clientId, policy));
    if (!held || held.expiresAtMs <= this.#clock.nowMs()) return Promise.resolve(undefined);
    const s = held.state;
    return Promise.resolve({ available: algorithmOf(policy).available(s.alg, policy), leased: s.cur.leased + s.prev.leased, updatedMs: s.updatedMs });
  }

  reset(clientId: string, policy: Policy): Promise<void> {
    this.#buckets.delete(bucketId(clientId, policy));
    return Promise.resolve();
  }

  /** Drops buckets whose TTL has passed. */
  sweep(): void {
    const now = this.#clock.nowMs();
    for (const [id, held] of this.#buckets) if (held.expiresAtMs <= now) this.#buckets.delete(id);
  }

  /** One process, one node. */
  heartbeat(): Promise<number> {
    return Promise.resolve(1);
  }

  leave(): Promise<void> {
    return Promise.resolve();
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  ping(): Promise<boolean> {
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    if (this.#sweep) clearInterval(this.#sweep);
    this.#buckets.clear();
    return Promise.resolve();
  }
}
