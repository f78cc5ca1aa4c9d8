/**
 * @module tandem-limiter
 *
 * The library surface: the Hono middleware, the lease manager, the stores and the
 * pure bucket math, for apps that embed the limiter instead of running the service.
 */
export { createMiddleware, type RateLimitEnv, type RateLimitInfo, type RateLimitOptions, type Limiter } from './http/rate-limit-middleware.js';
export { LeaseManager, type Decision, type Policy, type LeaseManagerOptions } from './lease/lease-manager.js';
export { systemClock, type Clock } from './lease/clock.js';
export { RedisStore, type RedisStoreOptions } from './store/redis-store.js';
export { MemoryStore } from './store/memory-store.js';
export { StoreUnavailableError, type GlobalStore } from './store/global-store.js';
export { leaseStep, type BucketPolicy } from './bucket/global-bucket.js';
export { loadConfig, ConfigError, type Config } from './config/config.js';
export { createService, startService } from './service.js';
