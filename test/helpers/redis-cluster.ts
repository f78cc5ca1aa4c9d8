/**
 * Builds a real Redis Cluster for a test: `redis-server --cluster-enabled yes`
 * processes on free ports joined by `redis-cli --cluster create`, three masters
 * with one replica each, and a short node timeout so failover takes ~2 s
 * (replica validity factor 0: a replica always may take over, however long
 * the test machine kept it from pinging its master).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { RedisProcess } from './redis-server.js';

const run = promisify(execFile);

export class RedisCluster {
  private constructor(readonly nodes: RedisProcess[]) {}

  get seeds(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  }

  static async start(masters = 3, replicas = 1): Promise<RedisCluster> {
    const nodes: RedisProcess[] = [];
    for (let i = 0; i < masters * (1 + replicas); i++) {
      nodes.push(
        await RedisProcess.start(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000', '--cluster-replica-validity-factor', '0']),
      );
    }
    const c = new RedisCluster(nodes);
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], {
      timeout: 30_000,
    });
    await c.waitHealthy();
    return c;
  }

  /** Waits until every live node reports cluster_state:ok. */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      const states = await Promise.all(
        this.nodes
          .filter((n) => n.proc && n.proc.exitCode === null && n.proc.signalCode === null)
          .map(async (n) => {
            const r = new Redis(n.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
            r.on('error', () => {});
            try {
              await r.connect();
              return /cluster_state:ok/.test(await r.cluster('INFO'));
            } catch {
              return false;
            } finally {
              r.disconnect();
            }
          }),
      );
      if (states.every(Boolean)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('cluster did not become healthy');
  }

  /**
   * After a master was killed: waits until the cluster noticed (it reports the state
   * `ok` until the node timeout passes) and a replica took over, i.e. three live
   * masters and every live node at cluster_state:ok.
   */
  async waitFailover(timeoutMs = 20_000): Promise<void> {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      if ((await this.masters()).length === 3) return this.waitHealthy(timeoutMs - (Date.now() - t0));
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('no replica took over');
  }

  /** The processes currently serving as masters. */
  async masters(): Promise<RedisProcess[]> {
    const out: RedisProcess[] = [];
    for (const n of this.nodes) {
      if (!n.proc || n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
      const r = n.client();
      const role = (await r.role()) as unknown[];
      r.disconnect();
      if (role[0] === 'master') out.push(n);
    }
    return out;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
