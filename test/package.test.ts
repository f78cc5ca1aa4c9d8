/**
 * The library as users install it: `npm pack` makes a tarball of the compiled code and
 * its type declarations, a scratch Hono app installs it (with hono and
 * @hono/node-server from the registry) and runs the README's example, which limits
 * `/api/*` to 40 requests.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { freePort } from './helpers/redis-server.js';

const run = promisify(execFile);

describe('npm pack', () => {
  it('makes a tarball a scratch Hono app installs and uses as the README shows', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-pack-'));
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, '--json'], { cwd: resolve('.'), timeout: 120_000 });
    const [{ filename, files }] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
    const paths = files.map((f) => f.path);
    expect(paths).toContain('dist/index.js');
    expect(paths).toContain('dist/index.d.ts');
    expect(paths).toContain('lua/protocol.lua');
    expect(paths.some((p) => p.startsWith('src/') || p.startsWith('test/'))).toBe(false);
    const app = join(dir, 'app');
    await run('mkdir', ['-p', app]);
    // The versions this project uses (read from node_modules: their package.json is not exported).
    const version = (pkg: string) => (JSON.parse(readFileSync(join('node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
    const hono = version('hono');
    const nodeServer = version('@hono/node-server');
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'scratch', type: 'module', private: true, dependencies: { 'tandem-limiter': `file:${join(dir, filename)}`, hono, '@hono/node-server': nodeServer } }),
    );
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, timeout: 180_000 });
    const port = await freePort();
    writeFileSync(
      join(app, 'server.js'),
      `import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { createLogger, createMiddleware, LeaseManager, MemoryStore, systemClock } from 'tandem-limiter';
const store = new MemoryStore({ clock: systemClock });
const limiter = new LeaseManager({ store, clock: systemClock, logger: createLogger('warn'), maxKeys: 100_000, leaseTtlMs: 30_000, maxLeaseTokens: 20, direct: true });
const app = new Hono();
app.use('/api/*', createMiddleware({ limiter, policy: { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 } }));
app.get('/api/items', (c) => c.json({ left: c.get('rateLimit').remaining }));
serve({ fetch: app.fetch, port: ${port} });
`,
    );
    const proc = spawn(process.execPath, ['server.js'], { cwd: app, stdio: 'ignore' });
    try {
      let first: Response | undefined;
      const t0 = Date.now();
      // When the request that found the bucket full was sent: refill counts from there.
      let firstSent = 0;
      while (!first && Date.now() - t0 < 15_000) {
        try {
          firstSent = performance.now();
          first = await fetch(`http://127.0.0.1:${port}/api/items`, { headers: { 'X-API-Key': 'lib-user' } });
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(first?.status).toBe(200);
      expect(await first?.json()).toEqual({ left: 39 });
      const rest = await Promise.all(Array.from({ length: 45 }, () => fetch(`http://127.0.0.1:${port}/api/items`, { headers: { 'X-API-Key': 'lib-user' } })));
      // 39 tokens left, plus what 10/s refills from the first request until the last answer
      // (the bound follows the guarantee for the measured time, not a guess): the rest are denied.
      const refilled = Math.floor((10 * (performance.now() - firstSent)) / 1000);
      const denied = rest.filter((r) => r.status === 429).length;
      // At least one is denied whenever the 45 are answered within 0.6 s (refilled < 6), as on
      // any machine so far; `denied > 0` on its own would fail by chance on a slower one.
      expect(denied).toBeGreaterThanOrEqual(Math.max(0, 45 - 39 - refilled));
    } finally {
      proc.kill('SIGTERM');
    }
  }, 240_000);
});
