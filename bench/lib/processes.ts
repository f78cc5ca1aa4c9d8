/**
 * Starts and stops benchmark server processes.
 *
 * The servers run compiled JavaScript, as `npm start` runs the service (`node
 * dist/main.js`): `bench/server.ts` and everything it imports are compiled with
 * tsc once per bench process into `.bench-build/` (tsconfig.bench.json, ~10 s),
 * with the Lua files copied beside them. Under tsx instead (`BENCH_TSX=1`), every
 * function a request creates pays esbuild's `__name` (keepNames): measured 1.2 µs
 * per cold decision, charged to the limiters and not to the bare app.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SOURCE = fileURLToPath(new URL('../server.ts', import.meta.url));
const BUILD = `${ROOT}.bench-build`;

let built = false;
/**
 * Compiles the bench entry points (tsconfig.bench.json: the server and bench/cold-decide.ts,
 * with what they import) into `.bench-build/`, once per process; answers that folder.
 */
export function compileBench(): string {
  if (!built) {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-p', `${ROOT}tsconfig.bench.json`], { cwd: ROOT, stdio: 'inherit' });
    // Read at run time relative to the compiled modules (src/store/lua-scripts.ts, bench/peers/peers.ts).
    cpSync(`${ROOT}lua`, `${BUILD}/lua`, { recursive: true });
    mkdirSync(`${BUILD}/bench/peers`, { recursive: true });
    cpSync(`${ROOT}bench/peers/seed-token-bucket.lua`, `${BUILD}/bench/peers/seed-token-bucket.lua`);
    built = true;
  }
  return BUILD;
}

/** The server's entry point: compiled on first use (see the module header), or its source under tsx. */
function serverEntry(): { args: string[] } {
  if (process.env.BENCH_TSX === '1') return { args: ['--import', 'tsx', SOURCE] };
  return { args: [`${compileBench()}/bench/server.js`] };
}

export type ServerProcess = { url: string; proc: ChildProcess; stats(): Promise<Record<string, number | string>>; stop(): Promise<void> };

/** `cmd args` under `taskset -c cpus` (taskset execs it: the pid is its own), or as it is when cpus is undefined. */
export function pinnedSpawn(cpus: string | undefined, cmd: string, args: string[], options: Parameters<typeof spawn>[2]): ChildProcess {
  return cpus === undefined ? spawn(cmd, args, options) : spawn('taskset', ['-c', cpus, cmd, ...args], options);
}

/** A `bench/server.ts` process serving `system`; with `cpus`, pinned to those cores (bench/lib/pinned.ts). */
export async function startServer(system: string, env: Record<string, string | undefined> = {}, cpus?: string): Promise<ServerProcess> {
  // BENCH_NODE_ARGS passes extra node flags to the servers, e.g. "--cpu-prof --cpu-prof-dir=prof".
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = pinnedSpawn(cpus, process.execPath, [...extra, ...serverEntry().args], {
    env: { ...process.env, ...env, BENCH_SYSTEM: system, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${system} server did not start`)), 20_000);
    proc.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${system} server exited with ${code}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    proc,
    stats: async () => (await (await fetch(`${url}/__bench/stats`)).json()) as Record<string, number | string>,
    stop: () => stopChild(proc),
  };
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
export async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}
