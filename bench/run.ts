/**
 * `npm run bench`: the same Hono app with and without the limiter, under the same
 * autocannon load, in one run. Each system runs in its own server process against
 * a redis-server this script starts on a free port (flushed between runs).
 *
 *   npm run bench                          all scenarios
 *   npm run bench -- --scenario max-zipf   one scenario
 *   npm run bench -- --duration 3          seconds per measurement (default 10)
 *
 * Prints a table and writes bench/results/latest.json and latest.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { type KeyPicker, makeApiKeys, uniform, zipf } from './lib/keys.js';
import { startServer } from './lib/processes.js';
import { countCommands } from './lib/redis-commands.js';
import { failureMarkdown, runFailure } from './scenarios/failure.js';

type Row = {
  scenario: string;
  system: string;
  requests: number;
  rps: number;
  ratio: number;
  p50: number;
  p99: number;
  p999: number;
  ok: number;
  limited: number;
  errors: number;
  redisCommandsPerReq: number;
  redisCpuMsPer1k: number;
  serverCpuUsPerReq: number;
  peakRssMB: number;
  localKeys: number;
};

type Scenario = { name: string; describe: string; systems: string[]; keys: (k: string[]) => KeyPicker };

const SCENARIOS: Scenario[] = [
  {
    name: 'max-uniform',
    describe: 'maximum throughput, 12,000 keys picked uniformly',
    systems: ['none', 'tandem', 'tandem-local'],
    keys: (k) => uniform(k, 1),
  },
  {
    name: 'max-zipf',
    describe: 'maximum throughput, 12,000 keys with Zipf(1) popularity',
    systems: ['none', 'tandem', 'tandem-local'],
    keys: (k) => zipf(k, 1, 2),
  },
];

/** Scenarios with a timeline of their own rather than a side-by-side comparison. */
const TIMELINES = ['failure'];

const { values } = parseArgs({
  options: {
    scenario: { type: 'string' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    'failure-seconds': { type: 'string', default: '30' },
  },
});
const duration = Number(values.duration);
const connections = Number(values.connections);

async function redisCpuMs(r: Redis): Promise<number> {
  const info = await r.info('cpu');
  const get = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return (get('used_cpu_sys') + get('used_cpu_user')) * 1000;
}

async function measure(scenario: Scenario, system: string, redis: RedisProcess, apiKeys: string[]): Promise<Row> {
  const admin = redis.client();
  await admin.flushall();
  const server = await startServer(system, { REDIS_URL: redis.url });
  try {
    const pick = scenario.keys(apiKeys);
    const counter = await countCommands(redis.url);
    const cpu0 = await redisCpuMs(admin);
    const serverCpu0 = Number((await server.stats()).cpuMicros);
    const result = await autocannon({
      url: `${server.url}/resource`,
      connections,
      duration,
      requests: [
        {
          method: 'GET',
          setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-api-key': pick() } }),
        },
      ],
    });
    const cpu1 = await redisCpuMs(admin);
    const commands = counter.count() - 1; // the INFO call
    await counter.stop();
    const stats = await server.stats();
    const codes = result.statusCodeStats ?? {};
    const other = Object.entries(codes).filter(([code]) => code !== '200' && code !== '429');
    if (other.length > 0 || result.errors > 0) {
      console.log(`\n  unexpected: ${JSON.stringify(Object.fromEntries(other))}, ${result.errors} socket errors, ${result.timeouts} timeouts`);
    }
    const total = result.requests.total;
    return {
      scenario: scenario.name,
      system,
      requests: total,
      rps: Math.round(total / result.duration),
      ratio: 1,
      p50: result.latency.p50,
      p99: result.latency.p99,
      p999: result.latency.p99_9,
      ok: codes['200']?.count ?? 0,
      limited: codes['429']?.count ?? 0,
      errors: result.errors + result.timeouts + total - (codes['200']?.count ?? 0) - (codes['429']?.count ?? 0),
      redisCommandsPerReq: system === 'none' || system === 'tandem-local' ? 0 : Math.max(0, commands) / total,
      redisCpuMsPer1k: ((cpu1 - cpu0) / total) * 1000,
      serverCpuUsPerReq: (Number(stats.cpuMicros) - serverCpu0) / total,
      peakRssMB: Number(stats.maxRssBytes ?? 0) / 2 ** 20,
      localKeys: Number(stats.localKeys ?? 0),
    };
  } finally {
    await server.stop();
    admin.disconnect();
  }
}

function table(rows: Row[]): string {
  const head =
    '| scenario | system | req/s | × ceiling | server CPU µs/req | p50 ms | p99 ms | p99.9 ms | 200 | 429 | errors | Redis cmds/req | Redis CPU ms/1k req | peak RSS MB | local keys |';
  const sep = `|${'---|'.repeat(15)}`;
  const body = rows.map(
    (r) =>
      `| ${r.scenario} | ${r.system} | ${r.rps} | ${r.ratio.toFixed(3)} | ${r.serverCpuUsPerReq.toFixed(1)} | ${r.p50} | ${r.p99} | ${r.p999} | ${r.ok} | ${r.limited} | ${r.errors} | ${r.redisCommandsPerReq.toFixed(4)} | ${r.redisCpuMsPer1k.toFixed(2)} | ${r.peakRssMB.toFixed(0)} | ${r.localKeys} |`,
  );
  return [head, sep, ...body].join('\n');
}

async function main(): Promise<void> {
  const chosen = values.scenario ? SCENARIOS.filter((s) => s.name === values.scenario) : SCENARIOS;
  const timelines = values.scenario ? TIMELINES.filter((t) => t === values.scenario) : TIMELINES;
  if (chosen.length === 0 && timelines.length === 0) {
    console.error(`unknown scenario ${values.scenario}; known: ${[...SCENARIOS.map((s) => s.name), ...TIMELINES].join(', ')}`);
    process.exit(2);
  }
  const redis = await RedisProcess.start();
  const apiKeys = makeApiKeys(12_000);
  const rows: Row[] = [];
  let failure: Awaited<ReturnType<typeof runFailure>> | undefined;
  try {
    for (const scenario of chosen) {
      console.log(`\n# ${scenario.name}: ${scenario.describe} (${duration} s each, ${connections} connections)`);
      const mine: Row[] = [];
      for (const system of scenario.systems) {
        process.stdout.write(`  ${system} ... `);
        const row = await measure(scenario, system, redis, apiKeys);
        mine.push(row);
        console.log(
          `${row.rps} req/s, ${row.serverCpuUsPerReq.toFixed(1)} µs server CPU/req, p99 ${row.p99} ms, ${row.redisCommandsPerReq.toFixed(4)} Redis cmds/req`,
        );
      }
      const ceiling = mine.find((r) => r.system === 'none')?.rps ?? 0;
      for (const r of mine) r.ratio = ceiling > 0 ? r.rps / ceiling : 0;
      rows.push(...mine);
    }
    if (timelines.includes('failure')) {
      const seconds = Number(values['failure-seconds']);
      console.log(`\n# failure: seed traffic over two nodes, Redis killed at ${Math.round(seconds / 3)} s, restarted empty at ${Math.round((2 * seconds) / 3)} s`);
      await (async () => {
        const admin = redis.client();
        await admin.flushall();
        admin.disconnect();
      })();
      failure = await runFailure(redis, zipf(apiKeys, 1, 3), seconds);
      console.log(failureMarkdown(failure));
    }
  } finally {
    await redis.stop();
  }
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
  let md = `Machine: ${machine}\nDate: ${new Date().toISOString()}\nCommand: npm run bench -- --duration ${duration} --connections ${connections}\n\n${rows.length ? table(rows) : ''}\n`;
  if (failure) md += `\n## failure\n\n${failureMarkdown(failure)}\n`;
  console.log(`\n${md}`);
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL('latest.json', dir), `${JSON.stringify({ machine, duration, connections, rows, failure }, null, 2)}\n`);
  writeFileSync(new URL('latest.md', dir), md);
  const failed = rows.filter((r) => r.requests === 0 || r.errors > 0).map((r) => `${r.scenario}/${r.system}`);
  if (failure && (failure.total === 0 || failure.errors > 0)) failed.push('failure');
  if (failed.length > 0) {
    console.error(`runs with errors or no requests: ${failed.join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
