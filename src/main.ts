/**
 * @module main
 *
 * `npm start`: reads the config from the environment, serves, and shuts down
 * gracefully on SIGTERM / SIGINT (drain, stop accepting, finish in-flight
 * requests, return unused leased tokens, leave the fleet, close Redis, exit 0
 * within SHUTDOWN_TIMEOUT_MS, default 5 s).
 *
 * Under `npm start` the signal may reach npm alone (systemd, `docker stop`, a
 * `kill <pid>`): npm then dies without passing it on. So a process started by
 * npm also watches its parent and shuts down the same way when the parent is
 * gone: whichever way the signal arrives, nothing is left serving.
 */
import { ConfigError, loadConfig } from './config/config.js';
import { createLogger } from './log/logger.js';
import { startService } from './service.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const svc = await startService(config, { logger });
  if (svc.store.mode === 'local-only') {
    logger.warn('REDIS_URL is not set: embedded local-only mode, limits are per process, not shared across nodes');
  }
  logger.info('listening', {
    port: svc.port,
    adminPort: svc.adminPort,
    mode: svc.store.mode === 'local-only' ? 'local-only' : svc.breaker.isOpen ? 'degraded' : 'global',
    degradedMode: config.degradedMode,
    policyVersion: svc.runtime.state.version,
    policySource: svc.runtime.state.source,
    leaseTtlMs: config.leaseTtlMs,
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    svc.close(config.shutdownTimeoutMs).then(
      () => {
        logger.info('stopped', { returnCalls: svc.manager.stats.returnCalls });
        process.exit(0);
      },
      (err: unknown) => {
        logger.error('shutdown failed', { error: (err as Error).message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.env.npm_lifecycle_event) {
    const parent = process.ppid;
    const watch = setInterval(() => {
      if (process.ppid !== parent) {
        clearInterval(watch);
        stop('parent process exited');
      }
    }, 200);
    watch.unref();
  }
}

process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandled rejection: ${String(reason)}\n`);
});

main().catch((err: unknown) => {
  process.stderr.write(`failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
