/**
 * `npm run bench:profile`: where a request's CPU goes. Runs the bare app, our
 * service on Redis and our embedded mode, each in its own process under
 * `node --cpu-prof`, under the same autocannon load (fresh Zipf keys: cold and
 * warm ones), and prints each profile's self time by layer and by function, in
 * µs per request (bench/lib/cpu-profile.ts). The CPU figures are sampled, so they
 * carry the sampler's overhead; compare them with each other, not with the
 * throughput tables.
 *
 *   npm run bench:profile -- --seconds 10 --keys 12000 [--rate 1200] [--systems tandem]
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { RedisProcess } from '../test/helpers/redis-server.js';
import { profileMarkdown, summarise } from './lib/cpu-profile.js';
import { makeApiKeys, zipf } from './lib/keys.js';
import { startServer } from './lib/processes.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, keys: { type: 'string', default: '12000' }, systems: { type: 'string', default: 'none,tandem,tandem-local' }, rate: { type: 'string' } } });
const seconds = Number(values.seconds);

const redis = await RedisProcess.start();
try {
  const out: string[] = [];
  for (const system of (values.systems as string).split(',')) {
    const dir = mkdtempSync(join(tmpdir(), `prof-${system}-`));
    process.env.BENCH_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${dir} --cpu-prof-interval=200`;
    const server = await startServer(system, { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '1000' });
    // A fresh key population per system: most keys start cold, popular ones warm up.
    const pick = zipf(makeApiKeys(Number(values.keys)), 1, 7);
    const r = await autocannon({
      url: `${server.url}/resource`,
      connections: 50,
      duration: seconds,
      // --rate: paced (open loop) at that many requests per second instead of as fast as possible.
      ...(values.rate ? { overallRate: Number(values.rate) } : {}),
      requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-api-key': pick() } }) }],
    });
    await server.stop();
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`${system}: no profile written`);
    const codes = Object.entries(r.statusCodeStats ?? {}).map(([code, v]) => `${code}: ${v.count}`).join(', ');
    out.push(profileMarkdown(`${system}, ${Math.round(r.requests.average)} req/s (${codes})`, summarise(join(dir, file)), r.requests.total), '');
  }
  console.log(out.join('\n'));
} finally {
  await redis.stop();
}
