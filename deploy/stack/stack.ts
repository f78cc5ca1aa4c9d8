/**
 * `npm run stack`: the compose topology from local binaries, for machines without a
 * Docker engine: redis-server, N limiter nodes (compiled, `node dist/main.js`), HAProxy
 * in front of them (the same configuration as compose, from `haproxy-config.ts`, with
 * the servers listed), the demo upstream, and Prometheus scraping every node's admin
 * port with the same alert rules. Prints the URLs; Ctrl-C or SIGTERM stops everything,
 * leaving no process behind. A missing binary stops it with the `apt-get install` line.
 *
 *   npm run stack -- --nodes 3 --port 8080
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { haproxyConfig } from './haproxy-config.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);

export type StackOptions = { nodes: number; port: number; env?: Record<string, string>; quiet?: boolean; scrapeIntervalSec?: number };

export type StackNode = { port: number; adminPort: number; proc: ChildProcess; start(): Promise<void>; stop(signal?: NodeJS.Signals): Promise<number | null> };

export type Stack = {
  url: string;
  prometheusUrl: string;
  upstreamUrl: string;
  redisUrl: string;
  nodes: StackNode[];
  stop(): Promise<void>;
};

const BINARIES: Record<string, string> = { 'redis-server': 'redis-server', haproxy: 'haproxy', prometheus: 'prometheus' };

/** Names the Debian packages of the binaries missing from PATH. */
export function missingBinaries(): string[] {
  return Object.entries(BINARIES)
    .filter(([bin]) => {
      try {
        execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
        return false;
      } catch {
        return true;
      }
    })
    .map(([, pkg]) => pkg);
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

async function waitFor(url: string, ms: number): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    try {
      if ((await fetch(url)).status < 500) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${ms} ms`);
}

const exited = (p: ChildProcess) =>
  new Promise<number | null>((r) => (p.exitCode !== null || p.signalCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))));

export async function startStack(o: StackOptions): Promise<Stack> {
  const missing = missingBinaries();
  if (missing.length > 0) throw new Error(`missing: ${missing.join(', ')}. Install them with: sudo apt-get install ${missing.join(' ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'tandem-stack-'));
  const procs: ChildProcess[] = [];
  const io = o.quiet ? 'ignore' : 'inherit';
  const run = (cmd: string, args: string[], env: Record<string, string> = {}) => {
    const p = spawn(cmd, args, { stdio: ['ignore', io, io], env: { ...process.env, ...env } });
    procs.push(p);
    return p;
  };
  const stopAll = async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await Promise.race([Promise.all(procs.map(exited)), new Promise((r) => setTimeout(r, 10_000))]);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  };
  try {
    const redisPort = await freePort();
    run('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', '--dir', dir]);
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const upstreamPort = await freePort();
    run(process.execPath, [join(ROOT, 'deploy/upstream/echo.mjs')], { PORT: String(upstreamPort) });
    const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
    await waitFor(upstreamUrl, 10_000);

    const nodes: StackNode[] = [];
    for (let i = 0; i < o.nodes; i++) {
      const port = await freePort();
      const adminPort = await freePort();
      const node: StackNode = {
        port,
        adminPort,
        proc: undefined as unknown as ChildProcess,
        async start() {
          this.proc = run(process.execPath, [join(ROOT, 'dist/main.js')], {
            PORT: String(port),
            ADMIN_PORT: String(adminPort),
            HOST: '127.0.0.1',
            REDIS_URL: redisUrl,
            UPSTREAM_URL: upstreamUrl,
            TRUSTED_PROXIES: '127.0.0.1',
            SHUTDOWN_DRAIN_MS: '1500',
            SHUTDOWN_TIMEOUT_MS: '6000',
            LOG_LEVEL: 'warn',
            ...o.env,
          });
          await waitFor(`http://127.0.0.1:${port}/health`, 20_000);
        },
        async stop(signal = 'SIGTERM') {
          this.proc.kill(signal);
          return exited(this.proc);
        },
      };
      await node.start();
      nodes.push(node);
    }

    const lbPort = o.port;
    writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig({ bind: `127.0.0.1:${lbPort}`, target: { kind: 'static', servers: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })) } }));
    run('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db']);
    const url = `http://127.0.0.1:${lbPort}`;
    await waitFor(`${url}/health`, 10_000);

    const promPort = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        `global: { scrape_interval: ${o.scrapeIntervalSec ?? 5}s, evaluation_interval: 15s }`,
        `rule_files: [${JSON.stringify(join(ROOT, 'deploy/prometheus/alerts.yml'))}]`,
        'scrape_configs:',
        '  - job_name: tandem-limiter',
        '    static_configs:',
        `      - targets: [${nodes.map((n) => `"127.0.0.1:${n.adminPort}"`).join(', ')}]`,
        '',
      ].join('\n'),
    );
    run('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'prometheus')}`, `--web.listen-address=127.0.0.1:${promPort}`]);
    const prometheusUrl = `http://127.0.0.1:${promPort}`;
    await waitFor(`${prometheusUrl}/-/ready`, 20_000);
    return { url, prometheusUrl, upstreamUrl, redisUrl, nodes, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

if (process.argv[1]?.endsWith('stack.ts')) {
  const { values } = parseArgs({ options: { nodes: { type: 'string', default: '3' }, port: { type: 'string', default: '8080' } } });
  try {
    execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });
    const stack = await startStack({ nodes: Number(values.nodes), port: Number(values.port) });
    const admin = stack.nodes.map((n, i) => `  node ${i + 1}: http://127.0.0.1:${n.port} (admin http://127.0.0.1:${n.adminPort}, /metrics, /admin/docs)`).join('\n');
    process.stdout.write(
      `\ntandem-limiter stack is up:\n  load balancer: ${stack.url}/resource (X-API-Key)\n${admin}\n  upstream:   ${stack.upstreamUrl}\n  prometheus: ${stack.prometheusUrl}\n  redis:      ${stack.redisUrl}\nCtrl-C stops everything.\n`,
    );
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      await stack.stop();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop());
    process.on('SIGTERM', () => void stop());
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
}
