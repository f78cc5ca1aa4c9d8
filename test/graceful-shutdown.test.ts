/**
 * `npm start` as a real process: SIGTERM and SIGINT stop it gracefully. Requests
 * in flight finish, unused leased tokens go back to Redis, the node leaves the
 * fleet, and the process exits 0 within the shutdown timeout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scopedClientId } from '../src/http/rate-limit-middleware.js';
import { bucketKeyName } from '../src/store/key-name.js';
import { RedisProcess, freePort } from './helpers/redis-server.js';

let redis: RedisProcess;
beforeAll(async () => {
  redis = await RedisProcess.start();
});
afterAll(async () => {
  await redis.stop();
});

async function startProcess(): Promise<{ proc: ChildProcess; url: string; exited: Promise<{ code: number | null; ms: number }> }> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', REDIS_URL: redis.url, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  let killedAt = 0;
  const origKill = proc.kill.bind(proc);
  proc.kill = (sig?: NodeJS.Signals | number) => {
    killedAt = performance.now();
    return origKill(sig);
  };
  const exited = new Promise<{ code: number | null; ms: number }>((resolve) =>
    proc.once('exit', (code) => resolve({ code, ms: performance.now() - killedAt })),
  );
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  while (Date.now() - t0 < 15_000) {
    try {
      if ((await fetch(`${url}/health`)).ok) return { proc, url, exited };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  proc.kill('SIGKILL');
  throw new Error('service did not start');
}

/** A request over its own connection that the server sees before the signal. */
function slowRequest(url: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/resource`, { headers: { 'X-API-Key': key }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

describe('graceful shutdown', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s: in-flight requests finish, tokens go back, exit 0 within 5 s', async (signal) => {
    const { proc, url, exited } = await startProcess();
    const key = `shutdown-${signal}`;
    for (let i = 0; i < 5; i++) {
      expect((await fetch(`${url}/resource`, { headers: { 'X-API-Key': key } })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 150)); // within the 10/s refill: leases ahead of demand
    }
    const inspect = redis.client();
    const before = ((await inspect.get(bucketKeyName('rl:', scopedClientId('default', key)))) as string).split(' ').map(Number);
    expect(before[2]).toBeGreaterThan(5); // tokens leased ahead of demand

    const inFlight = Array.from({ length: 10 }, () => slowRequest(url, `${key}-other`));
    await new Promise((r) => setTimeout(r, 20));
    proc.kill(signal);
    const statuses = await Promise.all(inFlight);
    const { code, ms } = await exited;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5000);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);

    const after = ((await inspect.get(bucketKeyName('rl:', scopedClientId('default', key)))) as string).split(' ').map(Number);
    expect(after[2]).toBe(0); // nothing leased any more: returned and reported
    expect(after[0]).toBeGreaterThanOrEqual(35);
    expect(await inspect.zcard('rl:{fleet}')).toBe(0); // left the live count
    inspect.disconnect();
  });
});
