/**
 * @module store/global-store
 *
 * The port between the lease manager and wherever the global buckets live.
 * `RedisStore` shares them across nodes; `MemoryStore` keeps them in this
 * process (embedded local-only mode, unit tests).
 */
import type { BucketPolicy, LeaseReply, LeaseRequest } from '../bucket/global-bucket.js';

export interface GlobalStore {
  /** `global` when buckets are shared through Redis, `local-only` when they live in this process. */
  readonly mode: 'global' | 'local-only';
  /**
   * One atomic step of the client's global bucket (see `leaseStep`).
   * Rejects with `StoreUnavailableError` when the store cannot answer in time.
   */
  lease(clientId: string, policy: BucketPolicy, req: LeaseRequest): Promise<LeaseReply>;
  /** Resolves true once the store can take commands, false if it cannot within `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean>;
  /**
   * Records this node as alive for `ttlMs` and returns how many nodes are
   * (this one included). Rejects with `StoreUnavailableError` like `lease`.
   */
  heartbeat(nodeId: string, ttlMs: number): Promise<number>;
  /** Removes this node from the live count (best effort, on shutdown). */
  leave(nodeId: string): Promise<void>;
  /** Whether the store answers right now (bounded by the store's deadline). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** The store did not answer within its deadline, refused the connection, or replied nonsense. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
