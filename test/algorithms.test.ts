/**
 * The four algorithms end to end: two real nodes on one real Redis, a policy
 * file, real HTTP. For each: a burst split across both nodes is exact; windows
 * crossed in the middle of traffic keep each window's count; several limits of
 * different algorithms on one request are all or nothing; a document using all
 * four holds every limit under random traffic. Exactness is checked against
 * each algorithm's reference over the interval [sent, answered] of every
 * admission (test/helpers/reference.ts), with wall-clock times: Redis TIME on
 * this machine is the same clock.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compilePolicies } from '../src/policy/rules.js';
import { parsePolicyDocument } from '../src/policy/document.js';
import type { Policy } from '../src/core/types.js';
import { prng } from './helpers/prng.js';
import { type Observed, observedReference } from './helpers/reference.js';
import { sharedRedis } from './helpers/shared-redis.js';
import { type Node, startNode } from './helpers/service.js';

const fx = sharedRedis();
const dir = mkdtempSync(join(tmpdir(), 'algorithms-'));
let files = 0;

type Spec = { algorithm: string; limit: number; windowSec: number };
type Doc = { policies: Record<string, Spec>; rules: { name: string; match?: object; limits: string[] }[] };

/** Two nodes on the shared Redis running `doc`, and its policies as the nodes compile them. */
async function twoNodes(doc: Doc): Promise<{ nodes: [Node, Node]; policies: ReadonlyMap<string, Policy> }> {
  const file = join(dir, `doc-${files++}.json`);
  writeFileSync(file, JSON.stringify(doc));
  const parsed = parsePolicyDocument(doc);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  // A deadline no load on this machine reaches: these tests check the guarantee with Redis
  // healthy, and a timed-out call would decide in degraded mode (per-node shares).
  const env = { REDIS_URL: fx.redis.url, REDIS_TIMEOUT_MS: '2000', POLICY_FILE: file };
  const a = await startNode(env);
  const b = await startNode(env);
  fx.nodes.push(a, b);
  return { nodes: [a, b], policies: compilePolicies(parsed.document).policies };
}

async function get(node: Node, path: string, key: string) {
  const sent = Date.now();
  const res = await fetch(`${node.url}${path}`, { headers: { 'X-API-Key': key } });
  await res.arrayBuffer();
  return { status: res.status, sent, done: Date.now() };
}

const ALGORITHMS = [
  ['token_bucket', { algorithm: 'token_bucket', limit: 40, windowSec: 4 }],
  ['gcra', { algorithm: 'gcra', limit: 40, windowSec: 4 }],
  ['fixed_window', { algorithm: 'fixed_window', limit: 40, windowSec: 60 }],
  ['sliding_window', { algorithm: 'sliding_window', limit: 40, windowSec: 60 }],
] as const;

describe.each(ALGORITHMS)('%s on two nodes', (_name, spec) => {
  it('a simultaneous burst of 60 split across both admits the limit, give or take 2 under, never over', async () => {
    const { nodes, policies } = await twoNodes({ policies: { p: spec }, rules: [{ name: 'r', limits: ['p'] }] });
    const p = policies.get('p') as Policy;
    for (let k = 0; k < 5; k++) {
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => get(nodes[i % 2] as Node, '/resource', `burst-${k}`)));
      expect(results.every((r) => r.status === 200 || r.status === 429)).toBe(true);
      const admitted = results.filter((r) => r.status === 200);
      expect(observedReference[p.algorithm](admitted, p)).toBeUndefined();
      const sent = Math.min(...results.map((r) => r.sent));
      const done = Math.max(...results.map((r) => r.done));
      // What the ideal limiter admits at most over the burst: the limit, plus refill for the
      // refilling ones, plus another limit when a window boundary fell inside it.
      const windowMs = 'windowMs' in p ? p.windowMs : undefined;
      const most = windowMs
        ? p.capacity * (Math.floor(done / windowMs) - Math.floor(sent / windowMs) + 1)
        : p.capacity + Math.floor((p.refillPerSec * (done - sent)) / 1000);
      expect(admitted.length).toBeLessThanOrEqual(most);
      expect(admitted.length).toBeGreaterThanOrEqual(p.capacity - 2);
    }
  });
});

/**
 * Both nodes busy across window boundaries, in two shapes: overload (4 × the limit,
 * leases sized to what waits), and windows alternately light (half the limit: each
 * node's rate within the policy's, so leases are fetched ahead and still hold permits
 * when the window ends; those must die with it) and heavy (3 × the limit).
 */
const overload = () => 4;
const lightHeavy = (windowMs: number) => (Math.floor(Date.now() / windowMs) % 2 === 0 ? 33 : 6);
describe.each([
  ['fixed_window', 'overload', { algorithm: 'fixed_window', limit: 15, windowSec: 0.5 }, overload],
  ['sliding_window', 'overload', { algorithm: 'sliding_window', limit: 15, windowSec: 0.5 }, overload],
  ['fixed_window', 'light, heavy', { algorithm: 'fixed_window', limit: 30, windowSec: 1 }, lightHeavy],
  ['sliding_window', 'light, heavy', { algorithm: 'sliding_window', limit: 30, windowSec: 1 }, lightHeavy],
] as const)('%s: windows crossed in the middle of traffic (%s)', (_name, _shape, spec, everyMs) => {
  it('keeps every window to its definition on both nodes', async () => {
    const { nodes, policies } = await twoNodes({ policies: { w: spec }, rules: [{ name: 'r', limits: ['w'] }] });
    const p = policies.get('w') as Policy & { windowMs: number };
    const admitted: Observed[] = [];
    let denied = 0;
    const pending: Promise<void>[] = [];
    const start = Date.now();
    let n = 0;
    while (Date.now() - start < 4200) {
      pending.push(
        get(nodes[n++ % 2] as Node, '/resource', 'crossing').then((r) => {
          if (r.status === 200) admitted.push(r);
          else if (r.status === 429) denied++;
        }),
      );
      await new Promise((r) => setTimeout(r, everyMs(p.windowMs)));
    }
    await Promise.all(pending);
    expect(observedReference[p.algorithm](admitted, p)).toBeUndefined();
    // The limit binds, and every window admits: a window's permits die with it, and new
    // ones are leased in the next.
    expect(denied).toBeGreaterThan(20);
    const windows = new Map<number, number>();
    for (const a of admitted) windows.set(Math.floor(a.done / p.windowMs), (windows.get(Math.floor(a.done / p.windowMs)) ?? 0) + 1);
    const spanned = Math.floor((Date.now() - start) / p.windowMs);
    expect(windows.size).toBeGreaterThanOrEqual(spanned - 1);
    expect(admitted.length).toBeLessThanOrEqual(p.capacity * (spanned + 2));
    // The fixed window refills fully each window; the sliding one, in steady overload, about
    // half (the previous window weighs half on average): both well above a third of the limit.
    expect(admitted.length).toBeGreaterThan((p.capacity / 3) * spanned);
  }, 30_000);
});

describe('several limits of different algorithms on one request', () => {
  it('are all or nothing: a denied sliding window charges nothing from a fixed daily window', async () => {
    const { nodes } = await twoNodes({
      policies: {
        perMinute: { algorithm: 'sliding_window', limit: 5, windowSec: 60 },
        daily: { algorithm: 'fixed_window', limit: 100, windowSec: 86_400 },
      },
      rules: [
        { name: 'api', match: { pathPrefix: '/api' }, limits: ['perMinute', 'daily'] },
        { name: 'export', match: { pathPrefix: '/export' }, limits: ['daily'] },
      ],
    });
    const api = await Promise.all(Array.from({ length: 12 }, (_, i) => get(nodes[i % 2] as Node, '/api/x', 'mixed-client')));
    expect(api.filter((r) => r.status === 200)).toHaveLength(5);
    // The daily window was charged 5, not 12: 95 left, from either node.
    const exp = await Promise.all(Array.from({ length: 110 }, (_, i) => get(nodes[i % 2] as Node, '/export', 'mixed-client')));
    const ok = exp.filter((r) => r.status === 200).length;
    expect(ok).toBeGreaterThanOrEqual(95 - 2);
    expect(ok).toBeLessThanOrEqual(95);
  });
});

describe('a document using all four algorithms', () => {
  it('holds every limit on two nodes under random traffic, each by its own definition', async () => {
    const doc: Doc = {
      policies: {
        tb: { algorithm: 'token_bucket', limit: 10, windowSec: 2 },
        gcra: { algorithm: 'gcra', limit: 6, windowSec: 1 },
        fixed: { algorithm: 'fixed_window', limit: 12, windowSec: 1 },
        sliding: { algorithm: 'sliding_window', limit: 12, windowSec: 1 },
      },
      rules: [
        { name: 'all', match: { pathPrefix: '/all' }, limits: ['tb', 'gcra', 'fixed', 'sliding'] },
        { name: 'tb', match: { pathPrefix: '/tb' }, limits: ['tb'] },
        { name: 'gcra', match: { pathPrefix: '/gcra' }, limits: ['gcra'] },
        { name: 'fixed', match: { pathPrefix: '/fixed' }, limits: ['fixed'] },
        { name: 'sliding', match: { pathPrefix: '/sliding' }, limits: ['sliding'] },
      ],
    };
    const { nodes, policies } = await twoNodes(doc);
    const paths = ['/all', '/tb', '/gcra', '/fixed', '/sliding'];
    const rnd = prng(17);
    // Admissions each policy saw: /all charges all four, the others their own.
    const seen = new Map<string, Observed[]>([...policies.keys()].map((k) => [k, []]));
    let denied = 0;
    const pending: Promise<void>[] = [];
    const start = Date.now();
    while (Date.now() - start < 3000) {
      const path = paths[Math.floor(rnd() * paths.length)] as string;
      pending.push(
        get(nodes[rnd() < 0.5 ? 0 : 1] as Node, path, 'four-client').then((r) => {
          if (r.status === 429) denied++;
          if (r.status !== 200) return;
          for (const name of path === '/all' ? [...policies.keys()] : [path.slice(1)]) seen.get(name)?.push(r);
        }),
      );
      await new Promise((r) => setTimeout(r, rnd() < 0.2 ? 100 * rnd() : 4 * rnd()));
    }
    await Promise.all(pending);
    expect(denied).toBeGreaterThan(100);
    for (const [name, p] of policies) {
      const admitted = seen.get(name) as Observed[];
      // Each limit must bind, or its check proves nothing.
      expect(admitted.length, name).toBeGreaterThan(p.capacity);
      expect(observedReference[p.algorithm](admitted, p), name).toBeUndefined();
    }
  }, 30_000);
});
