/**
 * Observability, proven against the real thing: a real Prometheus (Debian's
 * `prometheus`) scrapes two running nodes under Redis-backed traffic, and every
 * panel query of the provisioned Grafana dashboard is evaluated through its HTTP
 * API (template variables and `$__rate_interval` substituted): a query that
 * errors or returns no series fails the test, naming the panel. Also: the alert
 * rules pass `promtool check rules` and their unit tests, `promtool check
 * metrics` finds nothing to say about `/metrics`, and 10,000 distinct API keys
 * add no series.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisProcess, freePort } from './helpers/redis-server.js';
import { type Node, hit, startNode } from './helpers/service.js';

const run = promisify(execFile);
const PROMETHEUS = process.env.PROMETHEUS_PATH ?? '/usr/bin/prometheus';
const PROMTOOL = process.env.PROMTOOL_PATH ?? '/usr/bin/promtool';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Panel = { title: string; targets: { expr: string }[] };
const dashboard = JSON.parse(readFileSync('deploy/grafana/dashboards/tandem-limiter.json', 'utf8')) as {
  panels: Panel[];
  templating: { list: { name: string; definition: string }[] };
};

let redis: RedisProcess;
let nodes: Node[] = [];
let prometheus: ChildProcess | undefined;
let promUrl = '';

async function query(expr: string): Promise<{ status: string; error?: string; data?: { resultType: string; result: unknown[] } }> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return (await res.json()) as never;
}

beforeAll(async () => {
  redis = await RedisProcess.start();
  // A 2 s Redis deadline: a timeout under load would add error and degraded series mid-test.
  const env = { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '2000', RATE_LIMIT_CAPACITY: '20', RATE_LIMIT_REFILL_PER_SEC: '5' };
  nodes = [await startNode(env), await startNode(env)];
  const dir = mkdtempSync(join(tmpdir(), 'tandem-prom-'));
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: [${JSON.stringify(join(process.cwd(), 'deploy/prometheus/alerts.yml'))}]`,
      'scrape_configs:',
      '  - job_name: tandem-limiter',
      '    static_configs:',
      `      - targets: [${nodes.map((n) => `"127.0.0.1:${n.adminPort}"`).join(', ')}]`,
    ].join('\n'),
  );
  prometheus = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
    stdio: 'ignore',
  });
  // Traffic for a while: steady keys, and bursts that reach the limit (denials, near-limit checks).
  const until = performance.now() + 9000;
  let i = 0;
  while (performance.now() < until) {
    const node = nodes[i % 2] as Node;
    await Promise.all([hit(node, `steady-${i % 50}`), hit(node, 'bursty'), hit(node, 'bursty'), hit(node, `steady-${(i + 7) % 50}`)]);
    i++;
    await sleep(20);
  }
  // Enough scrapes for every rate() window.
  const t0 = Date.now();
  while (Date.now() - t0 < 20_000) {
    try {
      const r = await query('min(count_over_time(up{job="tandem-limiter"}[30s]))');
      const v = Number((r.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0);
      if (v >= 8) break;
    } catch {
      // not up yet
    }
    await sleep(500);
  }
}, 90_000);

afterAll(async () => {
  prometheus?.kill('SIGTERM');
  await Promise.all(nodes.map((n) => n.close(1000)));
  await redis?.stop();
});

describe('observability against a real Prometheus', () => {
  it('scrapes every node (up == 1)', async () => {
    const r = await query('up{job="tandem-limiter"}');
    expect(r.data?.result).toHaveLength(2);
    for (const s of r.data?.result as { value: [number, string] }[]) expect(s.value[1]).toBe('1');
  });

  it('returns data for every panel of the dashboard and every template variable', async () => {
    const failures: string[] = [];
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) {
        const expr = t.expr.replaceAll('$node', '.*').replaceAll('$policy', '.*').replaceAll('$__rate_interval', '5s');
        const r = await query(expr);
        if (r.status !== 'success') failures.push(`${panel.title}: ${r.error}`);
        else if ((r.data?.result.length ?? 0) === 0) failures.push(`${panel.title}: no series for ${expr}`);
      }
    }
    for (const v of dashboard.templating.list) {
      const m = /^label_values\((\w+), (\w+)\)$/.exec(v.definition);
      expect(m, v.definition).not.toBeNull();
      const res = (await (await fetch(`${promUrl}/api/v1/label/${m?.[2]}/values?match[]=${encodeURIComponent(m?.[1] as string)}`)).json()) as { data: string[] };
      if (res.data.length === 0) failures.push(`variable ${v.name}: no values`);
    }
    expect(failures).toEqual([]);
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(18);
  });

  it('loads the alert rules, which pass promtool check and their unit tests', async () => {
    const rules = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: unknown[] }[] } };
    expect(rules.data.groups[0]?.rules).toHaveLength(5);
    await run(PROMTOOL, ['check', 'rules', 'deploy/prometheus/alerts.yml']);
    const { stdout } = await run(PROMTOOL, ['test', 'rules', 'alerts.test.yml'], { cwd: 'deploy/prometheus' });
    expect(stdout).toContain('SUCCESS');
  });

  it('serves /metrics that promtool has nothing to say about, and 10,000 distinct API keys add no series', async () => {
    const node = nodes[0] as Node;
    const text = async () => (await fetch(`${node.adminUrl}/metrics`)).text();
    // The limiter's own series, by name and labels (process metrics come and go with GC kinds and handle types).
    const series = (t: string) =>
      t
        .split('\n')
        .filter((l) => l.startsWith('ratelimit_'))
        .map((l) => l.slice(0, l.lastIndexOf(' ')))
        .sort();
    const lint = spawn(PROMTOOL, ['check', 'metrics']);
    let out = '';
    lint.stdout.on('data', (d: Buffer) => (out += d.toString()));
    lint.stderr.on('data', (d: Buffer) => (out += d.toString()));
    lint.stdin.end(await text());
    const code = await new Promise((r) => lint.on('exit', r));
    expect(out.trim()).toBe('');
    expect(code).toBe(0);
    // Every kind of outcome these requests can have has been seen already (a fresh key is
    // allowed after a lease call), so the series a new key could add are none.
    await hit(node, 'distinct-warm-up');
    const before = series(await text());
    for (let i = 0; i < 10_000; i += 200) await Promise.all(Array.from({ length: 200 }, (_, j) => hit(node, `distinct-${i + j}`)));
    const after = await text();
    expect(series(after)).toEqual(before);
    expect(after).not.toContain('distinct-');
  }, 60_000);
});
