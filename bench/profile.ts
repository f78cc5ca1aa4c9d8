/**
 * `npm run bench:profile`: where a request's CPU goes. Runs the bare app, our
 * service on Redis and our embedded mode, each in its own process under
 * its own process, under the same autocannon load (fresh keys: cold and warm
 * ones; with `--warmup S`, the same keys sent for S seconds first, so the profile
 * sees warm keys), profiles the measured load only (V8's profiler started and
 * stopped over the server's inspector, `BENCH_PROFILE_DIR`), and prints each
 * profile's self time by layer and by function, in µs per request
 * (bench/lib/cpu-profile.ts). The CPU figures are sampled, so they carry the
 * sampler's overhead; compare them with each other, not with the throughput tables.
 *
 * With `--survivors`, what the measured load allocates that outlives a young-generation
 * collection instead (V8's sampling heap profiler in the server, which runs with
 * --expose-gc for one last scavenge before the stop), in bytes per request by layer and
 * by allocating function: what each scavenge copies and promotes.
 *
 *   npm run bench:profile -- --seconds 10 --keys 12000 [--mix uniform] [--warmup 5] [--rate 1200] [--systems tandem] [--top 30] [--survivors]
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { heapMarkdown, profileMarkdown, summarise, summariseHeap } from './lib/cpu-profile.js';
import { makeApiKeys, uniform, zipf } from './lib/keys.js';
import { startServer } from './lib/processes.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    keys: { type: 'string', default: '12000' },
    systems: { type: 'string', default: 'none,tandem,tandem-local' },
    rate: { type: 'string' },
    mix: { type: 'string', default: 'zipf' },
    warmup: { type: 'string', default: '0' },
    top: { type: 'string', default: '15' },
    survivors: { type: 'boolean', default: false },
  },
});
const survivors = values.survivors === true;
// The server's last scavenge before the heap profile stops (bench/server.ts) needs gc().
if (survivors) process.env.BENCH_NODE_ARGS = `${process.env.BENCH_NODE_ARGS ?? ''} --expose-gc`.trim();
const seconds = Number(values.seconds);

const redis = await RedisProcess.start();
try {
  const out: string[] = [];
  for (const system of (values.systems as string).split(',')) {
    const dir = mkdtempSync(join(tmpdir(), `prof-${system}-`));
    const server = await startServer(system, { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '1000', BENCH_PROFILE_DIR: dir });
    // A fresh key population per system: most keys start cold, popular ones warm up.
    const keys = makeApiKeys(Number(values.keys));
    const pick = values.mix === 'uniform' ? uniform(keys, 7) : zipf(keys, 1, 7);
    const load = (duration: number) =>
      autocannon({
        url: `${server.url}/resource`,
        connections: 50,
        duration,
        // --rate: paced (open loop) at that many requests per second instead of as fast as possible.
        ...(values.rate ? { overallRate: Number(values.rate) } : {}),
        requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-api-key': pick() } }) }],
      });
    if (Number(values.warmup) > 0) await load(Number(values.warmup));
    const what = survivors ? 'heap' : 'profile';
    await fetch(`${server.url}/__bench/${what}/start`);
    const r = await load(seconds);
    const { file } = (await (await fetch(`${server.url}/__bench/${what}/stop`)).json()) as { file: string };
    await server.stop();
    const codes = Object.entries(r.statusCodeStats ?? {}).map(([code, v]) => `${code}: ${v.count}`).join(', ');
    const title = `${system}, ${Math.round(r.requests.average)} req/s (${codes})`;
    out.push(survivors ? heapMarkdown(title, summariseHeap(file), r.requests.total, Number(values.top)) : profileMarkdown(title, summarise(file), r.requests.total, Number(values.top)), '');
  }
  console.log(out.join('\n'));
} finally {
  await redis.stop();
}
