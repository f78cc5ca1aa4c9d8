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
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { type Config, ConfigError, loadConfig } from './config/config.js';
import { createLogger } from './log/logger.js';
import { startService } from './service.js';

/**
 * WORKERS=N: the primary forks N workers, each a node of the fleet with its own local
 * tier, sharing the public port (node:cluster). Signals reach every worker; the primary
 * exits once they all have (bounded by the shutdown timeout), and replaces a worker that
 * dies on its own.
 */
function runPrimary(n: number, shutdownTimeoutMs: number, logger: ReturnType<typeof createLogger>): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals, code = 0) => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    const deadline = setTimeout(() => process.exit(1), shutdownTimeoutMs + 2000);
    deadline.unref();
    const check = setInterval(() => {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        clearInterval(check);
        logger.info('stopped', { workers: n });
        process.exit(code);
      }
    }, 50);
  };
  const fork = (i: number) => {
    let listening = false;
    const w = cluster.fork({ TANDEM_WORKER_INDEX: String(i) });
    w.on('listening', () => {
      listening = true;
    });
    w.on('exit', (code, signal) => {
      if (stopping) return;
      if (!listening) {
        // It never served (a port in use, a bad file): starting it again would fail the same way.
        logger.error('worker failed to start; stopping every worker', { worker: i, code, signal });
        stop('SIGTERM', 1);
        return;
      }
      logger.error('worker exited; starting another', { worker: i, code, signal });
      setTimeout(() => {
        if (!stopping) fork(i);
      }, 1000).unref();
    });
  };
  for (let i = 0; i < n; i++) fork(i);
  logger.info('primary started workers', { workers: n });
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  watchParent(() => stop('SIGTERM'));
}

/** Under `npm start`, shuts down when npm is gone (a signal sent to npm alone is not passed on). */
function watchParent(onGone: () => void): void {
  if (!process.env.npm_lifecycle_event) return;
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(watch);
      onGone();
    }
  }, 200);
  watch.unref();
}

async function main(): Promise<void> {
  let config: Config;
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
  const workers = config.workers === 'auto' ? availableParallelism() : config.workers;
  if (workers > 1 && cluster.isPrimary) {
    runPrimary(workers, config.shutdownTimeoutMs, logger);
    return;
  }
  // A worker of WORKERS=N: its own admin port (ADMIN_PORT + its index), so /metrics covers each.
  const index = Number(process.env.TANDEM_WORKER_INDEX ?? 0);
  if (index > 0 && config.adminPort !== 0) config = { ...config, adminPort: config.adminPort + index };
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
  // A worker's parent is the primary, which watches npm itself.
  if (!cluster.isWorker) watchParent(() => stop('parent process exited'));
}

process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandled rejection: ${String(reason)}\n`);
});

main().catch((err: unknown) => {
  process.stderr.write(`failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
