/**
 * No secret in any log line: a real node process (debug logging) runs with a
 * password-protected Redis, a key-hash secret, a JWT secret and admin tokens,
 * serves API keys, bearer tokens, denials, admin calls with right and wrong
 * tokens, and a start refused for a bad URL; then every line it wrote is
 * searched for each secret.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisProcess, freePort } from './helpers/redis-server.js';

const SECRETS = {
  redisPassword: 'redis-pass-Zq81xv',
  keyHash: 'key-hash-secret-Pk3m9w',
  jwt: 'jwt-secret-that-is-long-enough-Lr7t2y',
  admin: 'admin-token-secret-Hd5s0q',
  apiKey: 'sk_live_apikey_Ux4n6b',
  apiKey2: 'sk_live_other_Gt2c8e',
};

let redis: RedisProcess;
beforeAll(async () => {
  redis = await RedisProcess.start();
  const c = redis.client();
  await c.config('SET', 'requirepass', SECRETS.redisPassword);
  c.disconnect();
});
afterAll(async () => {
  await redis.stop();
});

/** Runs the service with `env` until `work` is done; resolves everything it printed. */
async function runService(env: Record<string, string>, work: (url: string, adminUrl: string) => Promise<void>): Promise<string> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, PORT: String(port), ADMIN_PORT: String(adminPort), HOST: '127.0.0.1', LOG_LEVEL: 'debug', SHUTDOWN_DRAIN_MS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  let up = false;
  while (!up && Date.now() - t0 < 20_000 && proc.exitCode === null) {
    try {
      up = (await fetch(`${url}/health`)).ok;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (up) await work(url, `http://127.0.0.1:${adminPort}`);
  proc.kill('SIGTERM');
  await exited;
  return out;
}

describe('secrets never reach the logs', () => {
  it('through a full run: keys, tokens, denials, admin calls, Redis with a password', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-secrets-'));
    const policyFile = join(dir, 'policy.json');
    writeFileSync(
      policyFile,
      JSON.stringify({
        policies: { tight: { algorithm: 'token_bucket', limit: 2, windowSec: 60 } },
        rules: [
          { name: 'users', match: { pathPrefix: '/me' }, by: 'claim:sub', limits: ['tight'] },
          { name: 'default', limits: ['tight'] },
        ],
      }),
    );
    const token = await new SignJWT({ sub: 'user-1' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(SECRETS.jwt));
    const out = await runService(
      {
        REDIS_URL: `redis://:${SECRETS.redisPassword}@127.0.0.1:${redis.port}`,
        KEY_HASH_SECRET: SECRETS.keyHash,
        JWT_SECRET: SECRETS.jwt,
        ADMIN_TOKENS: `ops:${SECRETS.admin}`,
        POLICY_FILE: policyFile,
      },
      async (url, adminUrl) => {
        for (let i = 0; i < 5; i++) {
          await fetch(`${url}/anything`, { headers: { 'X-API-Key': SECRETS.apiKey } }); // denials after 2
          await fetch(`${url}/me`, { headers: { Authorization: `Bearer ${token}` } });
          await fetch(`${url}/me`, { headers: { Authorization: `Bearer ${token}x` } }); // a forged token
        }
        await fetch(`${adminUrl}/admin/policy`, { headers: { Authorization: `Bearer ${SECRETS.admin}` } });
        await fetch(`${adminUrl}/admin/policy`, { headers: { Authorization: `Bearer ${SECRETS.admin}-wrong` } });
        await fetch(`${adminUrl}/admin/clients`, {
          method: 'PUT',
          headers: { Authorization: `Bearer ${SECRETS.admin}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ apiKey: SECRETS.apiKey2, tier: 'enterprise' }),
        });
        await fetch(`${adminUrl}/admin/clients/usage`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${SECRETS.admin}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ apiKey: SECRETS.apiKey }),
        });
      },
    );
    expect(out).toContain('rate limit exceeded'); // the denials were logged (hashed)
    expect(out).toContain('listening');
    for (const [name, secret] of Object.entries(SECRETS)) expect(out.includes(secret), `${name} in the logs`).toBe(false);
    expect(out).not.toContain(token);
  }, 60_000);

  it('in a refused start: a bad URL with a password and a short secret are not echoed', async () => {
    const out = await runService({ REDIS_URL: `http://admin:${SECRETS.redisPassword}@redis:6379`, KEY_HASH_SECRET: 'Xy9-tiny-k' }, async () => {});
    expect(out).toMatch(/REDIS_URL=.*admin:\*\*\*@redis/);
    expect(out).toMatch(/KEY_HASH_SECRET=\(secret, not shown\)/);
    expect(out.includes(SECRETS.redisPassword)).toBe(false);
    expect(out.includes('Xy9-tiny-k')).toBe(false);
  }, 30_000);
});
