/**
 * Processes pinned to CPU cores with `taskset`, for the cold-key benchmark
 * (`bench/cold.ts`): the server under test on one core, the load generator
 * (`bench/lib/cold-loadgen.ts`) on the other, so the generator's own jitter and
 * CPU do not land on the server's core.
 *
 * The server is `startServer(system, env, cpus)` (bench/lib/processes.ts), run
 * under `taskset -c <cpus>`: taskset execs node, so the pid is the server's own
 * and SIGTERM reaches it. Every thread node starts later inherits the mask.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pinnedSpawn, stopChild } from './processes.js';

const LOADGEN = fileURLToPath(new URL('./cold-loadgen.ts', import.meta.url));

/** The machine has `taskset` and at least `cores` CPUs this process may use. */
export function canPin(cores: number): boolean {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    const mask = execFileSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' });
    const list = mask.split(':').pop()?.trim() ?? '';
    const n = list.split(',').reduce((sum, part) => {
      const [a, b] = part.split('-').map(Number);
      return sum + (b === undefined ? 1 : (b as number) - (a as number) + 1);
    }, 0);
    return n >= cores;
  } catch {
    return false;
  }
}

/** Moves a running process and all its threads to `cpus` (e.g. the redis-server). */
export function pinPid(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-pc', cpus, String(pid)], { stdio: 'ignore' });
}

export type LoadJob =
  | { kind: 'max'; urls: string[]; keys: string[]; mix: 'uniform' | 'zipf'; seed: number; seconds: number; connections: number }
  | { kind: 'paced'; urls: string[]; keys: string[]; mix: 'uniform' | 'zipf'; seed: number; seconds: number; rps: number };

export type MaxResult = {
  requests: number;
  seconds: number;
  ok: number;
  limited: number;
  errors: number;
  p50: number;
  p99: number;
  /** The generator's CPU time over the run divided by its wall time (1 = its core saturated). */
  genBusy: number;
  genCpuMs: number;
};

export type PacedResult = {
  requests: number;
  ok: number;
  limited: number;
  errors: number;
  /** Every response's latency in ms (autocannon's), for pooling across rounds. */
  latencies: number[];
  /** When each response (same order as `latencies`) arrived, epoch ms: where in the run the tail was (bench/tail.ts). */
  doneAt: number[];
  startedMs: number;
  endedMs: number;
  genBusy: number;
  genCpuMs: number;
};

/** The load generator: one long-lived process, one job at a time, JSON lines over stdio. */
export type LoadGen = {
  run(job: Extract<LoadJob, { kind: 'max' }>): Promise<MaxResult>;
  run(job: Extract<LoadJob, { kind: 'paced' }>): Promise<PacedResult>;
  stop(): Promise<void>;
};

export async function startLoadGen(cpus: string | undefined): Promise<LoadGen> {
  const proc = pinnedSpawn(cpus, process.execPath, ['--import', 'tsx', LOADGEN], { stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  let waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  let ready: () => void = () => {};
  const readyP = new Promise<void>((r) => {
    ready = r;
  });
  proc.stdout?.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      if (line === 'ready') {
        ready();
        continue;
      }
      const msg = JSON.parse(line) as { result?: unknown; error?: string };
      const w = waiting;
      waiting = undefined;
      if (msg.error !== undefined) w?.reject(new Error(`load generator: ${msg.error}`));
      else w?.resolve(msg.result);
    }
  });
  proc.once('exit', (code) => waiting?.reject(new Error(`load generator exited with ${code}`)));
  try {
    await Promise.race([
      readyP,
      new Promise((_, reject) => setTimeout(() => reject(new Error('load generator did not start')), 20_000).unref()),
    ]);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return {
    run: ((job: LoadJob) =>
      new Promise<unknown>((resolve, reject) => {
        if (waiting) throw new Error('load generator busy');
        waiting = { resolve, reject };
        proc.stdin?.write(`${JSON.stringify(job)}\n`);
      })) as LoadGen['run'],
    stop: async () => {
      proc.stdin?.end();
      await stopChild(proc);
    },
  };
}
