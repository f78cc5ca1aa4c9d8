/** Starts and stops benchmark server processes. */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SERVER = fileURLToPath(new URL('../server.ts', import.meta.url));

export type ServerProcess = { url: string; proc: ChildProcess; stats(): Promise<Record<string, number | string>>; stop(): Promise<void> };

export async function startServer(system: string, env: Record<string, string | undefined> = {}): Promise<ServerProcess> {
  // BENCH_NODE_ARGS passes extra node flags to the servers, e.g. "--cpu-prof --cpu-prof-dir=prof".
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...extra, '--import', 'tsx', SERVER], {
    env: { ...process.env, ...env, BENCH_SYSTEM: system, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${system} server did not start`)), 15_000);
    proc.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => reject(new Error(`${system} server exited with ${code}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    proc,
    stats: async () => (await (await fetch(`${url}/__bench/stats`)).json()) as Record<string, number | string>,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
