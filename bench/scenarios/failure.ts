/**
 * Failure scenario: the seed traffic model (500 req/s, 4 s bursts to 1,200 req/s)
 * across two nodes sharing one Redis; Redis is killed (SIGKILL) in the middle
 * and restarted empty later. Prints admitted, denied and error counts and p99
 * latency per second, and how long the nodes took to degrade and to recover
 * (as seen in GET /health, polled every 25 ms).
 */
import type { RedisProcess } from '../../test/helpers/redis-server.js';
import { type KeyPicker } from '../lib/keys.js';
import { startServer } from '../lib/processes.js';
import { type Second, runTimeline, seedSchedule } from '../lib/timeline.js';

export type FailureResult = {
  seconds: Second[];
  total: number;
  admitted: number;
  denied: number;
  errors: number;
  p99Ms: number;
  maxSecondP99Ms: number;
  killAtS: number;
  restartAtS: number;
  degradeMs: number | null;
  recoverMs: number | null;
  /** The same schedule against two servers without a limiter: what the machine itself adds. */
  baseline: { p99Ms: number; maxSecondP99Ms: number; seconds: Second[] };
};

async function modes(urls: string[]): Promise<string[]> {
  return Promise.all(
    urls.map(async (u) => {
      try {
        return String(((await (await fetch(`${u}/health`)).json()) as { mode: string }).mode);
      } catch {
        return 'unreachable';
      }
    }),
  );
}

/** Polls until every node reports `mode`; resolves with the ms it took, or null. */
async function waitMode(urls: string[], mode: string, timeoutMs: number): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if ((await modes(urls)).every((m) => m === mode)) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  return null;
}

async function runBaseline(pick: KeyPicker, totalSeconds: number): Promise<FailureResult['baseline']> {
  const a = await startServer('none');
  const b = await startServer('none');
  try {
    const r = await runTimeline([a.url, b.url], seedSchedule(totalSeconds), pick);
    return { p99Ms: r.p99Ms, maxSecondP99Ms: Math.max(...r.seconds.map((s) => s.p99Ms)), seconds: r.seconds };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

export async function runFailure(redis: RedisProcess, pick: KeyPicker, totalSeconds: number): Promise<FailureResult> {
  const baseline = await runBaseline(pick, totalSeconds);
  const a = await startServer('tandem', { REDIS_URL: redis.url });
  const b = await startServer('tandem', { REDIS_URL: redis.url });
  const urls = [a.url, b.url];
  const killAtS = Math.round(totalSeconds / 3);
  const restartAtS = Math.round((2 * totalSeconds) / 3);
  let degradeMs: number | null = null;
  let recoverMs: number | null = null;
  try {
    await waitMode(urls, 'global', 5000);
    const faults = (async () => {
      await new Promise((r) => setTimeout(r, killAtS * 1000));
      await redis.kill();
      degradeMs = await waitMode(urls, 'degraded', (restartAtS - killAtS) * 1000);
      const untilRestart = restartAtS * 1000 - killAtS * 1000 - (degradeMs ?? 0);
      await new Promise((r) => setTimeout(r, Math.max(0, untilRestart)));
      await redis.restart();
      recoverMs = await waitMode(urls, 'global', 10_000);
    })();
    const result = await runTimeline(urls, seedSchedule(totalSeconds), pick);
    await faults;
    return {
      ...result,
      maxSecondP99Ms: Math.max(...result.seconds.map((s) => s.p99Ms)),
      killAtS,
      restartAtS,
      degradeMs,
      recoverMs,
      baseline,
    };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

export function failureMarkdown(r: FailureResult): string {
  const rows = r.seconds.map((s) => {
    const note = s.t === r.killAtS ? ' Redis killed' : s.t === r.restartAtS ? ' Redis restarted (empty)' : '';
    const base = r.baseline.seconds.find((b) => b.t === s.t);
    return `| ${s.t} | ${s.admitted} | ${s.denied} | ${s.errors} | ${s.p99Ms.toFixed(1)} | ${base ? base.p99Ms.toFixed(1) : '-'} |${note} |`;
  });
  return [
    `Requests ${r.total}: ${r.admitted} admitted, ${r.denied} denied, ${r.errors} errors; p99 over the run ${r.p99Ms.toFixed(1)} ms, worst per-second p99 ${r.maxSecondP99Ms.toFixed(1)} ms.`,
    `Same schedule without a limiter (two \`none\` servers): p99 over the run ${r.baseline.p99Ms.toFixed(1)} ms, worst per-second p99 ${r.baseline.maxSecondP99Ms.toFixed(1)} ms.`,
    `Time to degrade after the kill: ${r.degradeMs === null ? 'never' : `${Math.round(r.degradeMs)} ms`}; time to recover after the restart: ${r.recoverMs === null ? 'never' : `${Math.round(r.recoverMs)} ms`} (both nodes, seen in /health).`,
    '',
    '| second | admitted | denied | errors | p99 ms | p99 ms, no limiter | event |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
