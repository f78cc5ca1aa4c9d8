/** Starts real service instances (real HTTP sockets) for integration tests. */
import { loadConfig } from '../../src/config/config.js';
import { silentLogger } from '../../src/log/logger.js';
import { type ListeningService, startService } from '../../src/service.js';

export type Node = ListeningService & { url: string; adminUrl: string };

export async function startNode(env: Record<string, string> = {}): Promise<Node> {
  // No drain pause unless a test asks for one: tests close nodes often.
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', ADMIN_PORT: '0', SHUTDOWN_DRAIN_MS: '0', ...env });
  const svc = await startService(config, { logger: silentLogger() });
  return Object.assign(svc, { url: `http://127.0.0.1:${svc.port}`, adminUrl: `http://127.0.0.1:${svc.adminPort}` });
}

/** GET /resource with an API key; resolves with the status and how long it took. */
export async function hit(node: Node, key: string): Promise<{ status: number; ms: number; headers: Headers; body: unknown }> {
  const t0 = performance.now();
  const res = await fetch(`${node.url}/resource`, { headers: { 'X-API-Key': key } });
  const body = await res.json();
  return { status: res.status, ms: performance.now() - t0, headers: res.headers, body };
}
