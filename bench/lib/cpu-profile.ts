/**
 * Summarises V8 `.cpuprofile` files (node --cpu-prof) as a text flame-graph
 * summary: self time by function, and by layer (our modules by folder, Hono,
 * ioredis, Node's HTTP, GC and the rest), each as µs per request. Also V8's
 * sampling heap profiles (`.heapprofile`), the same way in bytes per request.
 */
import { readFileSync } from 'node:fs';

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] };
type Profile = { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] };

export type ProfileSummary = {
  /** CPU µs the profile sampled (not idle). */
  busyUs: number;
  byLayer: [string, number][];
  byFunction: [string, number][];
};

/** The layer a frame belongs to, from its script URL. */
export function layerOf(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8/native (program)';
  const src = /\/src\/([a-z-]+)\//.exec(url);
  if (src) return `ours: src/${src[1]}`;
  if (url.includes('/bench/')) return 'bench harness';
  if (url.includes('node_modules/hono/') || url.includes('node_modules/@hono/')) return 'hono + node-server';
  if (url.includes('node_modules/ioredis/') || url.includes('node_modules/redis-parser/') || url.includes('node_modules/cluster-key-slot/')) return 'ioredis';
  if (url.includes('node_modules/mnemonist/')) return 'mnemonist';
  if (url.includes('node_modules/')) return `dep: ${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? '?'}`;
  if (url.startsWith('node:_http') || url.startsWith('node:http')) return 'node: http';
  if (url.startsWith('node:net') || url.startsWith('node:internal/stream') || url.startsWith('node:internal/streams')) return 'node: net/streams';
  if (url.startsWith('node:')) return 'node: other';
  return url === '' ? 'native' : 'other';
}

export function summarise(file: string): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  // Self time per node from the samples and their time deltas (µs).
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    const dt = p.timeDeltas[i + 1] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const layers = new Map<string, number>();
  const fns = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of self) {
    const n = byId.get(id) as Node;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') continue;
    busy += us;
    const layer = layerOf(url, functionName);
    layers.set(layer, (layers.get(layer) ?? 0) + us);
    const short = url.replace(/^.*\/(src|bench|node_modules)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${short}${url ? `:${lineNumber + 1}` : ''}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { busyUs: busy, byLayer: sorted(layers), byFunction: sorted(fns) };
}

type HeapNode = { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] };
/** A sampling heap profile as `HeapProfiler.stopSampling` returns it. */
export type HeapProfile = { head: HeapNode };

/** A `.heapprofile` file: bytes by layer and by allocating function (`busyUs` holds the total bytes). */
export function summariseHeap(file: string): ProfileSummary {
  return summariseHeapProfile(JSON.parse(readFileSync(file, 'utf8')) as HeapProfile);
}

/** A sampling heap profile: bytes by layer and by allocating function (`busyUs` holds the total bytes). */
export function summariseHeapProfile(p: HeapProfile): ProfileSummary {
  const layers = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode) => {
    if (n.selfSize > 0) {
      const { functionName, url, lineNumber } = n.callFrame;
      total += n.selfSize;
      const layer = layerOf(url, functionName);
      layers.set(layer, (layers.get(layer) ?? 0) + n.selfSize);
      const key = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(src|bench|node_modules)\//, '$1/')}${url ? `:${lineNumber + 1}` : ''}`;
      fns.set(key, (fns.get(key) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c);
  };
  walk(p.head);
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { busyUs: total, byLayer: sorted(layers), byFunction: sorted(fns) };
}

/** Markdown for `summariseHeap`: bytes per request over `requests`, by layer and top functions. */
export function heapMarkdown(title: string, s: ProfileSummary, requests: number, top = 15): string {
  const per = (b: number) => (b / requests).toFixed(1);
  const lines = [`**${title}**: ${per(s.busyUs)} B per request outlived a scavenge (sampled; ${requests} requests)`, '', '| layer | B/req | share |', '|---|---:|---:|'];
  for (const [k, v] of s.byLayer) if (v / s.busyUs >= 0.005) lines.push(`| ${k} | ${per(v)} | ${((100 * v) / s.busyUs).toFixed(1)}% |`);
  lines.push('', '| allocated in | B/req |', '|---|---:|');
  for (const [k, v] of s.byFunction.slice(0, top)) lines.push(`| \`${k.replace(/\|/g, '\\|')}\` | ${per(v)} |`);
  return lines.join('\n');
}

/** Markdown: layers and the top functions, in µs per request over `requests`. */
export function profileMarkdown(title: string, s: ProfileSummary, requests: number, top = 15): string {
  const per = (us: number) => (us / requests).toFixed(2);
  const lines = [`**${title}**: ${per(s.busyUs)} µs of CPU per request sampled (${requests} requests)`, '', '| layer | µs/req | share |', '|---|---:|---:|'];
  for (const [k, v] of s.byLayer) if (v / s.busyUs >= 0.005) lines.push(`| ${k} | ${per(v)} | ${((100 * v) / s.busyUs).toFixed(1)}% |`);
  lines.push('', '| function (self time) | µs/req |', '|---|---:|');
  for (const [k, v] of s.byFunction.slice(0, top)) lines.push(`| \`${k.replace(/\|/g, '\\|')}\` | ${per(v)} |`);
  return lines.join('\n');
}
