/**
 * The deployment, run as users run it, with real processes: `npm run stack`'s
 * topology (redis-server, three compiled nodes, HAProxy with health checks, the
 * demo upstream, Prometheus):
 * - a limit holds across the three nodes through the balancer;
 * - admitted requests reach the upstream with the right headers and body, denied ones
 *   never do; a slow upstream is a 504 within the timeout, a dead one a 502;
 * - Prometheus scrapes every node (up == 1);
 * - a rolling restart under steady traffic: no client sees a 5xx or a connection
 *   error, and no key is over-admitted;
 * - WORKERS=2: both workers serve, the fleet counts two nodes, SIGTERM stops both;
 * - compose.yaml validates (`docker-compose config`), and the HAProxy file it mounts is
 *   the one `haproxy-config.ts` generates, and valid (`haproxy -c`).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haproxyConfig } from '../deploy/stack/haproxy-config.js';
import { type Stack, startStack } from '../deploy/stack/stack.js';
import { RedisProcess, freePort } from './helpers/redis-server.js';
import { startNode } from './helpers/service.js';

const run = promisify(execFile);

/** Whether nothing listens on `port` now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
let stack: Stack;

beforeAll(async () => {
  // One catch-all rule, so every path is limited and forwarded.
  const dir = mkdtempSync(join(tmpdir(), 'tandem-stack-test-'));
  const policyFile = join(dir, 'policy.json');
  writeFileSync(policyFile, JSON.stringify({ policies: { default: { algorithm: 'token_bucket', limit: 40, windowSec: 4 } }, rules: [{ name: 'all', limits: ['default'] }] }));
  stack = await startStack({
    nodes: 3,
    port: await freePort(),
    quiet: true,
    scrapeIntervalSec: 1,
    env: { UPSTREAM_TIMEOUT_MS: '1000', POLICY_FILE: policyFile, REDIS_TIMEOUT_MS: '1000' },
  });
}, 90_000);
afterAll(async () => {
  await stack?.stop();
});

type Res = { status: number; body: Record<string, unknown> };
async function get(path: string, key: string, init: RequestInit = {}): Promise<Res> {
  const res = await fetch(`${stack.url}${path}`, { ...init, headers: { 'X-API-Key': key, ...(init.headers as Record<string, string>) } });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body };
}

describe('the stack (npm run stack)', () => {
  it('holds a limit across three nodes through the load balancer', async () => {
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: 100 }, () => get('/resource', 'through-the-lb')));
    const ms = performance.now() - t0;
    const ok = rs.filter((r) => r.status === 200).length;
    expect(rs.every((r) => r.status === 200 || r.status === 429)).toBe(true);
    expect(ok).toBeGreaterThanOrEqual(40 - 4); // the stated under-admission bound: a few stranded on other nodes
    expect(ok).toBeLessThanOrEqual(40 + Math.floor((10 * ms) / 1000));
  });

  it('forwards admitted requests to the upstream, never denied ones; 504 for a slow upstream, 502 for a dead one', async () => {
    const posted = await get('/orders?id=7', 'forwarded', { method: 'POST', body: 'x'.repeat(1234), headers: { 'Content-Type': 'text/plain' } });
    expect(posted.status).toBe(200);
    expect(posted.body).toMatchObject({ upstream: true, method: 'POST', url: '/orders?id=7', bodyBytes: 1234 });
    const headers = posted.body.headers as Record<string, string>;
    expect(headers['x-forwarded-for']).toMatch(/127\.0\.0\.1$/);
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers.connection).not.toBe('upgrade');
    // Spend the rest of a key's limit: its 429s come from the limiter, not the upstream.
    const rs = await Promise.all(Array.from({ length: 60 }, () => get('/x', 'denied-here')));
    const denied = rs.filter((r) => r.status === 429);
    expect(denied.length).toBeGreaterThan(10);
    for (const d of denied) expect(d.body.upstream).toBeUndefined();
    const t0 = performance.now();
    const slow = await get('/slow?delay=3000', 'patient');
    expect(slow.status).toBe(504);
    expect(performance.now() - t0).toBeLessThan(2900); // the 1 s timeout, not the upstream's 3 s
    const dead = await startNode({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}` });
    try {
      const r = await fetch(`${dead.url}/resource`, { headers: { 'X-API-Key': 'k' } });
      expect(r.status).toBe(502);
      expect(await r.json()).toEqual({ detail: 'Upstream unreachable' });
    } finally {
      await dead.close(1000);
    }
  });

  it('is scraped by its Prometheus: up == 1 for every node', async () => {
    const t0 = Date.now();
    let up: { value: [number, string] }[] = [];
    while (Date.now() - t0 < 20_000) {
      const r = (await (await fetch(`${stack.prometheusUrl}/api/v1/query?query=up`)).json()) as { data: { result: { value: [number, string] }[] } };
      up = r.data.result;
      if (up.length === 3 && up.every((s) => s.value[1] === '1')) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    expect(up.map((s) => s.value[1])).toEqual(['1', '1', '1']);
  });

  it('survives a rolling restart under steady traffic: no 5xx, no connection error, no over-admission', async () => {
    const errors: string[] = [];
    const admitted = new Map<string, number[]>();
    let stop = false;
    const client = async (i: number) => {
      while (!stop) {
        const key = `rolling-${i % 5}`;
        try {
          const r = await fetch(`${stack.url}/resource`, { headers: { 'X-API-Key': key } });
          await r.arrayBuffer();
          if (r.status >= 500) errors.push(`status ${r.status}`);
          if (r.status === 200) admitted.set(key, [...(admitted.get(key) ?? []), performance.now()]);
        } catch (err) {
          errors.push(String((err as { cause?: { code?: string } }).cause?.code ?? err));
        }
        await new Promise((res) => setTimeout(res, 10));
      }
    };
    const t0 = performance.now();
    const clients = Array.from({ length: 10 }, (_, i) => client(i));
    for (const node of stack.nodes) {
      expect(await node.stop('SIGTERM')).toBe(0);
      await node.start();
      await new Promise((res) => setTimeout(res, 1500)); // the balancer's checks see it up again
    }
    stop = true;
    await Promise.all(clients);
    const seconds = (performance.now() - t0) / 1000;
    expect(errors).toEqual([]);
    for (const [, times] of admitted) expect(times.length).toBeLessThanOrEqual(40 + 10 * seconds + 1);
    expect([...admitted.values()].reduce((n, t) => n + t.length, 0)).toBeGreaterThan(100);
  }, 120_000);
});

describe('a missing binary', () => {
  it('stops the stack before it starts anything, with the apt-get line to run', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/usr/bin:/bin'; // haproxy lives in /usr/sbin
    try {
      await expect(startStack({ nodes: 1, port: await freePort(), quiet: true })).rejects.toThrow('sudo apt-get install haproxy');
    } finally {
      process.env.PATH = path;
    }
  });
});

describe('WORKERS=2', () => {
  it('runs two workers sharing the port, counted as two nodes, both stopped by one SIGTERM', async () => {
    const redis = await RedisProcess.start();
    const port = await freePort();
    // Worker i serves its admin API on ADMIN_PORT + i: both ports must be free.
    let adminPort = await freePort();
    for (let i = 0; i < 20 && !(await isFree(adminPort + 1)); i++) adminPort = await freePort();
    const proc = spawn(process.execPath, ['dist/main.js'], {
      env: { ...process.env, WORKERS: '2', PORT: String(port), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', REDIS_URL: redis.url, LOG_LEVEL: 'warn', SHUTDOWN_DRAIN_MS: '100' },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const health = async (p: number) => (await (await fetch(`http://127.0.0.1:${p}/health`)).json()) as Record<string, unknown>;
      const t0 = Date.now();
      let a: Record<string, unknown> = {};
      let b: Record<string, unknown> = {};
      while (Date.now() - t0 < 20_000) {
        try {
          [a, b] = [await health(adminPort), await health(adminPort + 1)];
          if (a.liveNodes === 2 && b.liveNodes === 2) break;
        } catch {
          // not up yet
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(a.nodeId).not.toBe(b.nodeId); // two workers, each a node with its own admin port
      expect([a.liveNodes, b.liveNodes]).toEqual([2, 2]);
      expect((await fetch(`http://127.0.0.1:${port}/resource`, { headers: { 'X-API-Key': 'w' } })).status).toBe(200);
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
      await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
    } finally {
      proc.kill('SIGKILL');
      await redis.stop();
    }
  }, 60_000);
});

describe('compose', () => {
  it('validates, and mounts the HAProxy configuration the stack generator writes, which HAProxy accepts', async () => {
    const { stdout } = await run('docker-compose', ['-f', 'compose.yaml', 'config'], { env: { ...process.env, GF_ADMIN_PASSWORD: 'x' } });
    expect(stdout).toContain('limiter:');
    expect(readFileSync('deploy/haproxy/haproxy.cfg', 'utf8')).toBe(haproxyConfig({ bind: ':80', target: { kind: 'dns', service: 'limiter', port: 8080, max: 10 } }));
    await run('haproxy', ['-c', '-f', 'deploy/haproxy/haproxy.cfg']);
  });
});
