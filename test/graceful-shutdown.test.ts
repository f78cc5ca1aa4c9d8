/**
 * Stopping a node, as a real process and as a real server:
 * - `node src/main.ts` on SIGTERM and SIGINT: a request really in flight across
 *   the signal (waiting on a frozen Redis) is answered, with `Connection: close`;
 *   unused leased tokens go back to Redis, the node leaves the fleet, exit 0
 *   within the shutdown timeout;
 * - `npm start`: a SIGTERM to npm alone (what systemd or `docker stop` sends)
 *   or to the whole process group leaves nothing serving;
 * - draining: keep-alive clients hitting a node while it stops see no
 *   connection reset; /health answers 503 while it drains.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BucketState } from '../src/protocol/lease-step.js';
import { leasedOf, readBucket } from './helpers/bucket-state.js';
import { RedisProcess, freePort } from './helpers/redis-server.js';
import { startNode } from './helpers/service.js';

let redis: RedisProcess;
beforeAll(async () => {
  redis = await RedisProcess.start();
});
afterAll(async () => {
  await redis.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Started = { proc: ChildProcess; url: string; exited: Promise<{ code: number | null; signal: string | null; ms: number }>; log: () => string };

/** Starts `command args` with the service's environment and waits for /health. */
async function startProcess(command: string, args: string[], env: Record<string, string> = {}): Promise<Started> {
  const port = await freePort();
  const proc = spawn(command, args, {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', ADMIN_PORT: '0', REDIS_URL: redis.url, LOG_LEVEL: 'info', SHUTDOWN_DRAIN_MS: '200', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so a test can signal the group
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let killedAt = 0;
  const origKill = proc.kill.bind(proc);
  proc.kill = (sig?: NodeJS.Signals | number) => {
    killedAt = performance.now();
    return origKill(sig);
  };
  const exited = new Promise<{ code: number | null; signal: string | null; ms: number }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal, ms: performance.now() - killedAt })),
  );
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  while (Date.now() - t0 < 20_000) {
    try {
      if ((await fetch(`${url}/health`)).ok) return { proc, url, exited, log: () => out };
    } catch {
      await sleep(100);
    }
  }
  if (proc.pid) process.kill(-proc.pid, 'SIGKILL');
  throw new Error(`service did not start:\n${out}`);
}

/** A GET over its own connection; resolves with the status and the Connection header. */
function request(url: string, key: string): Promise<{ status: number; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/resource`, { headers: { 'X-API-Key': key }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
    });
    req.on('error', reject);
  });
}

/** Whether anything still listens on the URL's port. */
async function serving(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return true;
  } catch {
    return false;
  }
}

/** Whether any process of the group is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await cond()) return true;
    await sleep(50);
  }
  return cond();
}

describe('graceful shutdown of node src/main.ts', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s: a request in flight across the signal is answered, tokens go back, exit 0 in time', async (signal) => {
    // A 1.5 s Redis deadline so a request can wait on a frozen Redis across the signal.
    const { proc, url, exited } = await startProcess(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      REDIS_TIMEOUT_MS: '1500',
      SHUTDOWN_TIMEOUT_MS: '8000',
    });
    const key = `shutdown-${signal}`;
    for (let i = 0; i < 5; i++) {
      expect((await fetch(`${url}/resource`, { headers: { 'X-API-Key': key } })).status).toBe(200);
      await sleep(150); // within the 10/s refill: leases ahead of demand
    }
    const inspect = redis.client();
    const before = (await readBucket(inspect, key)) as BucketState<{ tokens: number }>;
    expect(leasedOf(before)).toBeGreaterThan(5); // tokens leased ahead of demand

    redis.freeze();
    const inFlight = request(url, `${key}-cold`); // a new key: waits on its lease call
    await sleep(300);
    proc.kill(signal);
    await sleep(200);
    redis.thaw();
    const answer = await inFlight;
    const { code, ms } = await exited;
    expect(answer.status).toBe(200);
    expect(answer.connection).toBe('close');
    expect(code).toBe(0);
    expect(ms).toBeLessThan(8000);

    const after = (await readBucket(inspect, key)) as BucketState<{ tokens: number }>;
    expect(leasedOf(after)).toBe(0); // nothing leased any more: returned and reported
    expect(after.alg.tokens).toBeGreaterThanOrEqual(35);
    expect(await inspect.zcard('rl:{fleet}')).toBe(0); // left the live count
    inspect.disconnect();
  });
});

describe('npm start and signals', () => {
  it.each(['npm alone', 'the process group'] as const)('SIGTERM to %s: the service stops gracefully, nothing left serving', async (target) => {
    // dist/ is built by the test run's global setup; --ignore-scripts skips the prestart
    // build, which would rewrite it under other test files.
    const s = await startProcess('npm', ['start', '--silent', '--ignore-scripts']);
    const pgid = s.proc.pid as number;
    if (target === 'npm alone') process.kill(pgid, 'SIGTERM');
    else process.kill(-pgid, 'SIGTERM');
    expect(await waitFor(async () => !(await serving(s.url)), 10_000)).toBe(true);
    expect(await waitFor(() => !groupAlive(pgid), 10_000)).toBe(true);
    expect(s.log()).toMatch(/"message":"stopped"/); // the service's own clean exit, not a kill
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
  }, 40_000);
});

describe('draining', () => {
  it('keep-alive clients hitting a stopping node see no connection reset; /health answers 503 meanwhile', async () => {
    const node = await startNode({ REDIS_URL: redis.url, SHUTDOWN_DRAIN_MS: '500', RATE_LIMIT_CAPACITY: '100000', RATE_LIMIT_REFILL_PER_SEC: '100000' });
    const errors: Record<string, number> = {};
    let answered = 0;
    let closeHeaders = 0;
    let stop = false;
    const client = async (i: number) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      while (!stop) {
        const ok = await new Promise<boolean>((resolve) => {
          const req = http.get(`${node.url}/resource`, { agent, headers: { 'X-API-Key': `client-${i}` } }, (res) => {
            if (res.headers.connection === 'close') closeHeaders++;
            res.resume();
            res.on('end', () => {
              answered++;
              resolve(true);
            });
          });
          req.on('error', (err: NodeJS.ErrnoException) => {
            errors[err.code ?? err.message] = (errors[err.code ?? err.message] ?? 0) + 1;
            resolve(false);
          });
        });
        // The node stopped accepting: a real client would go elsewhere.
        if (!ok) break;
      }
      agent.destroy();
    };
    const clients = Array.from({ length: 10 }, (_, i) => client(i));
    await sleep(300);
    const closing = node.close(5000);
    await sleep(100);
    const health = await new Promise<number>((resolve) => {
      http.get(`${node.url}/health`, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', () => resolve(0));
    });
    await closing;
    stop = true;
    await Promise.all(clients);
    expect(health).toBe(503);
    expect(answered).toBeGreaterThan(50);
    expect(closeHeaders).toBeGreaterThan(0);
    expect(errors.ECONNRESET ?? 0).toBe(0);
    expect(Object.keys(errors).every((code) => code === 'ECONNREFUSED')).toBe(true);
  });
});
