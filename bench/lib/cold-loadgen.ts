/**
 * The cold-key benchmark's load generator (`bench/cold.ts`), in a process of its
 * own pinned to its own core (bench/lib/pinned.ts). Reads one job per line on
 * stdin (JSON, `LoadJob`), runs it with autocannon, writes one result per line on
 * stdout; prints `ready` once loaded.
 *
 * - `max`: a closed loop, `connections` connections for `seconds` s.
 * - `paced`: an open loop at `rps`, paced as bench/lib/timeline.ts paces it (ten
 *   2-connection autocannon instances started 100 ms apart, each carrying a tenth
 *   of the rate, since one instance sends its whole second's quota at once), but
 *   keeping every response's latency so that rounds can be pooled.
 *
 * Each job also reports how busy the generator's core was (its CPU time over wall
 * time): near 1, the generator, not the server, set the pace.
 */
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import { closedLoop } from './closed-loop.js';
import { type KeyPicker, uniform, zipf } from './keys.js';
import type { LoadJob, MaxResult, PacedResult } from './pinned.js';

const STAGGER = 10;

function picker(job: LoadJob): KeyPicker {
  return job.mix === 'zipf' ? zipf(job.keys, 1, job.seed) : uniform(job.keys, job.seed);
}

/** The result, the generator's CPU over wall time, and its CPU ms. */
function busy<T>(f: () => Promise<T>): Promise<[T, number, number]> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  return f().then((r) => {
    const c = process.cpuUsage(c0);
    const ms = (c.user + c.system) / 1000;
    return [r, ms / Math.max(1, performance.now() - t0), ms];
  });
}

async function max(job: Extract<LoadJob, { kind: 'max' }>): Promise<MaxResult> {
  const pick = picker(job);
  const [r, genBusy, genCpuMs] = await busy(() =>
    closedLoop({
      urls: job.urls,
      pick,
      seconds: job.seconds,
      connections: job.connections,
      // autocannon checks for the end at each sample tick: 100 ms ticks end a run within 100 ms of its length.
      tuning: { sampleInt: 100, timeout: 5 },
    }),
  );
  return { requests: r.requests, seconds: r.seconds, ok: r.ok, limited: r.limited, errors: r.errors, p50: r.p50, p99: r.p99, genBusy, genCpuMs };
}

async function paced(job: Extract<LoadJob, { kind: 'paced' }>): Promise<PacedResult> {
  const pick = picker(job);
  const latencies: number[] = [];
  const doneAt: number[] = [];
  let ok = 0;
  let limited = 0;
  let errors = 0;
  const startedMs = Date.now();
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const instance = autocannon(
        {
          url: job.urls.map((u) => `${u}/resource`) as unknown as string,
          connections: 2,
          overallRate: Math.round(job.rps / STAGGER),
          duration: job.seconds,
          sampleInt: 100,
          timeout: 5,
          requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-api-key': pick() } }) }],
        },
        (err) => (err ? reject(err) : resolve()),
      );
      instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
        if (status === 200) ok++;
        else if (status === 429) limited++;
        else errors++;
        latencies.push(Math.round(ms * 1000) / 1000);
        doneAt.push(Date.now());
      });
      instance.on('reqError', () => {
        errors++;
      });
    });
  const [, genBusy, genCpuMs] = await busy(() =>
    Promise.all(
      Array.from({ length: STAGGER }, async (_, i) => {
        // 100 ms apart, as timeline.ts; runs shorter than a second (--smoke) spread over their length.
        await new Promise((r) => setTimeout(r, (i * Math.min(1000, job.seconds * 1000)) / STAGGER));
        await one();
      }),
    ),
  );
  return { requests: latencies.length, ok, limited, errors, latencies, doneAt, startedMs, endedMs: Date.now(), genBusy, genCpuMs };
}

const lines = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
// One job at a time: the orchestrator waits for each result before sending the next.
for await (const line of lines) {
  if (!line.trim()) continue;
  try {
    const job = JSON.parse(line) as LoadJob;
    const result = job.kind === 'max' ? await max(job) : await paced(job);
    process.stdout.write(`${JSON.stringify({ result })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ error: String((err as Error)?.stack ?? err) })}\n`);
  }
}
process.exit(0);
