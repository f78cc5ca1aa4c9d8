/**
 * Starts real `redis-server` processes on free ports for integration tests, so
 * every test owns its server and can kill, freeze or restart it. Never touches
 * the machine's shared Redis on 6379.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

function assertRedisInstalled(): void {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('redis-server is not on PATH: the integration tests need it (Debian: apt-get install redis-server)');
  }
}

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export class RedisProcess {
  proc: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'tandem-redis-'));
  private constructor(
    readonly port: number,
    readonly extraArgs: string[],
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * Starts a server on a free port. Between finding the port free and redis-server binding
   * it, another process can take it: then the server exits at once, and this tries another.
   */
  static async start(extraArgs: string[] = []): Promise<RedisProcess> {
    let last: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        return await RedisProcess.startOnPort(await freePort(), extraArgs);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  static async startOnPort(port: number, extraArgs: string[] = []): Promise<RedisProcess> {
    assertRedisInstalled();
    const r = new RedisProcess(port, extraArgs);
    await r.restart();
    return r;
  }

  /** (Re)starts the server on the same port, empty: nothing is persisted. */
  async restart(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, ...this.extraArgs];
    this.proc = spawn('redis-server', args, { stdio: 'ignore' });
    // Generous: several servers may start at once on a loaded two-core machine.
    const deadline = Date.now() + 15_000;
    const proc = this.proc;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`redis-server on port ${this.port} exited at start (port taken?)`);
      const c = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      c.on('error', () => {});
      try {
        await c.connect();
        if ((await c.ping()) === 'PONG') {
          c.disconnect();
          return;
        }
      } catch {
        // not up yet
      }
      c.disconnect();
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server on port ${this.port} did not start`);
  }

  /** A fresh client for the test's own inspection. */
  client(): Redis {
    const c = new Redis(this.url, { maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    return c;
  }

  /** SIGKILL and wait for the process to be gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  freeze(): void {
    this.proc?.kill('SIGSTOP');
  }

  thaw(): void {
    this.proc?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    this.thaw();
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
