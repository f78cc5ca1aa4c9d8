/**
 * `algorithms`: the four algorithms a policy can name, one after another, each in
 * a one-rule document (`limits: [p]`, keyed by API key) on two `tandem` nodes
 * sharing the bench's Redis, at the same average rate: token_bucket and gcra 40 /
 * 4 s (burst 40, 10/s), fixed_window and sliding_window 40 per 4-s window.
 *
 * For each:
 * 1. load: 12,000 keys Zipf(1), closed loop (autocannon, both nodes) at full speed:
 *    req/s, 2xx share, Redis commands per request (MONITOR, a script call counts
 *    once), Redis CPU (`measuredRun`, as `two-limits`);
 * 2. memory: right after it, up to 200 of the algorithm's bucket keys (SCAN
 *    MATCH `*}:<tag>:p`): mean `MEMORY USAGE` and value length (STRLEN);
 * 3. accuracy: fresh nodes, a few hot keys, each with a fixed number of closed
 *    loops of requests split across both nodes, every request's wall-clock
 *    [sent, answered] recorded. Over-admission: the admitted intervals checked
 *    against the algorithm's definition with `observedReference`
 *    (test/helpers/reference.ts), key by key, which flags only what no placement
 *    of the spends within their intervals explains. Under-admission: the ideal
 *    limiter of the algorithm (`idealAdmissions`, bench/lib/accuracy.ts) fed the
 *    same send times admits `ideal`; (ideal - admitted) / ideal. Redis's deadline
 *    is 2 s there (REDIS_TIMEOUT_MS, unless set): a call that times out decides
 *    in degraded mode, which is allowed to over-admit, and this run measures
 *    exactness with Redis healthy. Degraded decisions are reported in both runs.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { algorithmOf } from '../../src/algorithms/registry.js';
import type { AlgorithmName, Policy } from '../../src/core/types.js';
import { toRuntimePolicy } from '../../src/policy/rules.js';
import { type Observed, observedReference, reference } from '../../test/helpers/reference.js';
import type { RedisProcess } from '../../test/helpers/redis-server.js';
import { idealAdmissions } from '../lib/accuracy.js';
import { zipf } from '../lib/keys.js';
import type { ServerProcess } from '../lib/processes.js';
import { type KeyMemory, keyMemory } from '../lib/redis-info.js';
import { closeIdleSockets, counters, fixtures, get, measuredRun, startNodes } from './policy.js';

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');

type Spec = { algorithm: AlgorithmName; limit: number; windowSec: number };

/** Same burst / window count and average rate for all four: 40 per 4 s. */
export const ALGORITHM_SPECS: Spec[] = [
  { algorithm: 'token_bucket', limit: 40, windowSec: 4 },
  { algorithm: 'gcra', limit: 40, windowSec: 4 },
  { algorithm: 'fixed_window', limit: 40, windowSec: 4 },
  { algorithm: 'sliding_window', limit: 40, windowSec: 4 },
];

export type AlgorithmsOptions = {
  /** Seconds of the load run. */
  seconds: number;
  connections: number;
  /** Seconds of the accuracy run, its hot keys and closed loops per key (split over the two nodes). */
  accuracySeconds: number;
  hotKeys: number;
  loopsPerKey: number;
  onRun?: (what: string) => void;
};

export type AlgorithmAccuracy = {
  seconds: number;
  keys: number;
  loopsPerKey: number;
  requests: number;
  admitted: number;
  denied: number;
  errors: number;
  /** What the ideal limiter admits over the same send times, summed over keys. */
  ideal: number;
  /** (ideal - admitted) / ideal, %. */
  underPct: number;
  /** Per key: admitted, ideal. */
  perKey: Array<{ requests: number; admitted: number; ideal: number }>;
  /** Keys whose admissions break the definition (observedReference), with its first message. */
  violations: string[];
  /** The ideal simulator checked against its own reference: a message here is a bench bug. */
  idealViolations: string[];
  degradedDecisions: number;
  leaseCalls: number;
  redisTimeoutMs: string;
};

export type AlgorithmRun = {
  algorithm: AlgorithmName;
  spec: Spec;
  backgroundBusyPct: number;
  rps: number;
  requests: number;
  ok: number;
  limited: number;
  errors: number;
  okPct: number;
  p50: number;
  p99: number;
  cpuUsPerReq: number;
  redisCmdsPerReq: number;
  redisCpuMsPer1k: number;
  counters: Record<string, number>;
  memory: KeyMemory;
  accuracy: AlgorithmAccuracy;
};

export type AlgorithmsResult = Omit<AlgorithmsOptions, 'onRun'> & { runs: AlgorithmRun[] };

const document = (spec: Spec) => ({ policies: { p: spec }, rules: [{ name: 'resource', match: { pathPrefix: '/resource' }, limits: ['p'] }] });

/** Hot keys hammered in closed loops over both nodes; every admission's [sent, answered] checked. */
async function accuracyRun(redis: RedisProcess, file: string, p: Policy, o: AlgorithmsOptions): Promise<AlgorithmAccuracy> {
  const redisTimeoutMs = process.env.REDIS_TIMEOUT_MS ?? '2000';
  const nodes = await startNodes('tandem', 2, { REDIS_URL: redis.url, POLICY_FILE: file, REDIS_TIMEOUT_MS: redisTimeoutMs });
  try {
    const keys = Array.from({ length: o.hotKeys }, (_, i) => `algorithms-${p.algorithm}-${i}-${randomBytes(6).toString('hex')}`);
    const end = Date.now() + o.accuracySeconds * 1000;
    const perKey = await Promise.all(
      keys.map(async (key) => {
        const sent: number[] = [];
        const admitted: Observed[] = [];
        let denied = 0;
        let errors = 0;
        await Promise.all(
          Array.from({ length: o.loopsPerKey }, async (_, loop) => {
            const url = (nodes[loop % nodes.length] as ServerProcess).url;
            while (Date.now() < end) {
              const r = await get(url, key, '/resource');
              sent.push(r.sent);
              if (r.status === 200) admitted.push({ sent: r.sent, done: r.done });
              else if (r.status === 429) denied++;
              else errors++;
            }
          }),
        );
        sent.sort((a, b) => a - b);
        const ideal = idealAdmissions(sent, p);
        return {
          requests: sent.length,
          admitted: admitted.length,
          denied,
          errors,
          ideal: ideal.length,
          violation: observedReference[p.algorithm](admitted, p),
          idealViolation: reference[p.algorithm](ideal, p),
        };
      }),
    );
    closeIdleSockets();
    const c = await counters(nodes);
    const sum = (pick: (x: (typeof perKey)[number]) => number) => perKey.reduce((n, x) => n + pick(x), 0);
    const ideal = sum((x) => x.ideal);
    const admitted = sum((x) => x.admitted);
    return {
      seconds: o.accuracySeconds,
      keys: o.hotKeys,
      loopsPerKey: o.loopsPerKey,
      requests: sum((x) => x.requests),
      admitted,
      denied: sum((x) => x.denied),
      errors: sum((x) => x.errors),
      ideal,
      underPct: ideal ? (100 * (ideal - admitted)) / ideal : Number.NaN,
      perKey: perKey.map((x) => ({ requests: x.requests, admitted: x.admitted, ideal: x.ideal })),
      violations: perKey.flatMap((x, i) => (x.violation ? [`key ${i}: ${x.violation}`] : [])),
      idealViolations: perKey.flatMap((x, i) => (x.idealViolation ? [`key ${i}: ${x.idealViolation}`] : [])),
      degradedDecisions: c.degradedDecisions ?? 0,
      leaseCalls: c.leaseCalls ?? 0,
      redisTimeoutMs,
    };
  } finally {
    await Promise.all(nodes.map((x) => x.stop()));
  }
}

export async function runAlgorithms(redis: RedisProcess, admin: Redis, apiKeys: string[], o: AlgorithmsOptions): Promise<AlgorithmsResult> {
  const fx = fixtures();
  const runs: AlgorithmRun[] = [];
  try {
    for (const spec of ALGORITHM_SPECS) {
      const file = fx.write(`algorithms-${spec.algorithm}.json`, document(spec));
      const p = toRuntimePolicy('p', spec);
      o.onRun?.(`algorithms ${spec.algorithm}: load`);
      const r = await measuredRun(redis, admin, {
        system: 'tandem',
        nodes: 2,
        env: { POLICY_FILE: file },
        pick: zipf(apiKeys, 1, 5),
        seconds: o.seconds,
        connections: o.connections,
      });
      // At once: a bucket key lives only until its state is fresh again (a few seconds here).
      const memory = await keyMemory(admin, { limit: 200, match: `*}:${algorithmOf(p).tag}:p` });
      o.onRun?.(`algorithms ${spec.algorithm}: accuracy`);
      const accuracy = await accuracyRun(redis, file, p, o);
      runs.push({
        algorithm: spec.algorithm,
        spec,
        backgroundBusyPct: r.backgroundBusyPct,
        rps: r.load.requests / r.load.seconds,
        requests: r.load.requests,
        ok: r.load.ok,
        limited: r.load.limited,
        errors: r.load.errors,
        okPct: (100 * r.load.ok) / Math.max(1, r.load.requests),
        p50: r.load.p50,
        p99: r.load.p99,
        cpuUsPerReq: r.cpuUsPerReq,
        redisCmdsPerReq: r.redisCmdsPerReq,
        redisCpuMsPer1k: r.redisCpuMsPer1k,
        counters: r.counters,
        memory,
        accuracy,
      });
    }
  } finally {
    fx.cleanup();
  }
  const { onRun: _, ...options } = o;
  return { ...options, runs };
}

export function algorithmsMarkdown(r: AlgorithmsResult): string {
  const a0 = r.runs[0]?.accuracy;
  const out = [
    `Each algorithm at 40 / 4 s (token_bucket, gcra: burst 40 at 10/s; fixed_window, sliding_window: 40 per 4-s window), one rule, two \`tandem\` nodes. **Load**: 12,000 keys Zipf(1), closed loop, ${r.connections} connections over both nodes, ${r.seconds} s; then up to 200 of the algorithm's bucket keys measured. **Accuracy**: fresh nodes, ${r.hotKeys} hot keys × ${r.loopsPerKey} closed loops each (alternate nodes), ${r.accuracySeconds} s, REDIS_TIMEOUT_MS=${a0?.redisTimeoutMs ?? '-'}; over-admission = hot keys whose admissions, as [sent, answered] wall-clock intervals, break the algorithm's definition for every placement of the spends (\`observedReference\`); under-admission = (ideal − admitted) / ideal, the ideal being the algorithm's exact limiter fed the same send times.`,
    '',
    '| algorithm | req/s | 2xx % | errors | Redis cmds/req | Redis CPU ms/1k req | bytes/key: MEMORY USAGE | bytes/key: value (STRLEN) | over-admission: keys breaking the definition | admitted / ideal (hot keys) | under-admission |',
    `|${'---|'.repeat(11)}`,
  ];
  for (const x of r.runs) {
    const a = x.accuracy;
    out.push(
      `| ${x.algorithm} | ${f(x.rps, 0)} | ${f(x.okPct, 1)} | ${x.errors} | ${f(x.redisCmdsPerReq, 4)} | ${f(x.redisCpuMsPer1k, 2)} | ${f(x.memory.memoryUsage, 0)} | ${f(x.memory.valueBytes, 0)} | ${a.violations.length} of ${a.keys} | ${a.admitted} / ${a.ideal} | ${f(a.underPct, 2)}% |`,
    );
  }
  out.push(
    '',
    '| algorithm | machine busy before load, % | load: p50 / p99 ms | server CPU µs/req | lease / return calls per 1k req | degraded decisions | keys measured | accuracy: requests (req/s) | admitted per hot key (ideal) | denied | errors | degraded decisions |',
    `|${'---|'.repeat(12)}`,
  );
  for (const x of r.runs) {
    const a = x.accuracy;
    const perKey = a.perKey.map((k) => `${k.admitted} (${k.ideal})`).join(', ');
    const per1k = (n: number | undefined) => f((1000 * (n ?? 0)) / Math.max(1, x.requests), 1);
    out.push(
      `| ${x.algorithm} | ${f(x.backgroundBusyPct, 0)} | ${f(x.p50, 0)} / ${f(x.p99, 0)} | ${f(x.cpuUsPerReq)} | ${per1k(x.counters.leaseCalls)} / ${per1k(x.counters.returnCalls)} | ${x.counters.degradedDecisions ?? 0} | ${x.memory.sampled} | ${a.requests} (${f(a.requests / Math.max(1e-9, a.seconds), 0)}) | ${perKey} | ${a.denied} | ${a.errors} | ${a.degradedDecisions} |`,
    );
  }
  const broken = r.runs.flatMap((x) => x.accuracy.violations.map((v) => `- ${x.algorithm}, ${v}`));
  if (broken.length) out.push('', 'Admissions that break the definition:', '', ...broken);
  return out.join('\n');
}

export function algorithmsProblems(r: AlgorithmsResult): string[] {
  const p: string[] = [];
  for (const spec of ALGORITHM_SPECS) {
    const x = r.runs.find((y) => y.algorithm === spec.algorithm);
    if (!x || x.ok + x.limited === 0) p.push(`algorithms/${spec.algorithm}: no load figures`);
    else if (x.accuracy.admitted + x.accuracy.denied === 0) p.push(`algorithms/${spec.algorithm}: no accuracy figures`);
    for (const v of x?.accuracy.idealViolations ?? []) p.push(`algorithms/${spec.algorithm}: the ideal limiter breaks its own reference (${v})`);
  }
  return p;
}

/** Runs with figures that need a look: errors, or admissions that break the definition. */
export function algorithmsWarnings(r: AlgorithmsResult): string[] {
  const w: string[] = [];
  for (const x of r.runs) {
    if (x.errors + x.accuracy.errors > 0) w.push(`algorithms/${x.algorithm}: ${x.errors + x.accuracy.errors} errors`);
    if (x.accuracy.violations.length) w.push(`algorithms/${x.algorithm}: over-admission on ${x.accuracy.violations.length} hot keys (${x.accuracy.degradedDecisions} degraded decisions)`);
  }
  return w;
}
