import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createJwtVerifier } from './jwt.js';

const secret = 'a-test-secret-of-enough-length-123';
const sign = (claims: Record<string, unknown>, exp: number | string, key = secret) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp).sign(new TextEncoder().encode(key));

describe('JWT claims', () => {
  const v = createJwtVerifier({ secret });

  it('is not configured without a secret or JWKS file', () => {
    expect(createJwtVerifier({})).toBeUndefined();
  });

  it('gives the claims of a valid token', async () => {
    const token = await sign({ sub: 'user-1', tier: 'enterprise' }, '1h');
    expect(await v?.claims(`Bearer ${token}`)).toMatchObject({ ok: true, claims: { sub: 'user-1', tier: 'enterprise' } });
  });

  it.each([
    ['no header', undefined, 'missing'],
    ['not a bearer token', 'Basic dXNlcjpwdw==', 'missing'],
    ['garbage', 'Bearer abc.def.ghi', 'invalid'],
  ])('refuses %s', async (_what, header, reason) => {
    expect(await v?.claims(header)).toEqual({ ok: false, reason });
  });

  it('refuses a bad signature and an expired token', async () => {
    expect(await v?.claims(`Bearer ${await sign({ tier: 'enterprise' }, '1h', 'another-secret-entirely-xxxxxx')}`)).toEqual({ ok: false, reason: 'invalid' });
    expect(await v?.claims(`Bearer ${await sign({ tier: 'enterprise' }, Math.floor(Date.now() / 1000) - 60)}`)).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuses an unsigned token (alg none) however valid its claims look', async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ tier: 'enterprise', exp: 9_999_999_999 })}.`;
    expect(await v?.claims(`Bearer ${none}`)).toEqual({ ok: false, reason: 'invalid' });
  });

  it('stops trusting a cached token when it expires', async () => {
    let now = Date.now();
    const clocked = createJwtVerifier({ secret, clock: () => now });
    const token = await sign({ tier: 'x' }, Math.floor(now / 1000) + 2);
    expect((await clocked?.claims(`Bearer ${token}`))?.ok).toBe(true);
    now += 5000;
    expect(await clocked?.claims(`Bearer ${token}`)).toEqual({ ok: false, reason: 'expired' });
  });
});
