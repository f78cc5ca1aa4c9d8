/**
 * @module tandem-limiter
 *
 * The library surface: the Hono middleware, the lease manager, the stores and the
 * pure lease math, for apps that embed the limiter instead of running the service.
 */
export { createMiddleware, type RateLimitEnv, type RateLimitInfo, type RateLimitOptions } from './http/rate-limit-middleware.js';
export { LeaseManager, type LeaseManagerOptions } from './lease/lease-manager.js';
export { systemClock, FakeClock } from './core/clock.js';
export {
  StoreUnavailableError,
  type BucketStore,
  type Clock,
  type Decision,
  type FleetStore,
  type Limiter,
  type Policy,
  type StoreHealth,
  type StoreMemo,
  type TakeResult,
} from './core/types.js';
export { RedisStore, type RedisStoreOptions } from './store/redis-store.js';
export { MemoryStore } from './store/memory-store.js';
export { leaseStep } from './protocol/lease-step.js';
export { tokenBucketStep } from './algorithms/token-bucket.js';
export { loadConfig, ConfigError, type Config } from './config/config.js';
export { createLogger } from './log/logger.js';
export { createService, startService } from './service.js';
