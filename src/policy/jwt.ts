/**
 * @module policy/jwt
 *
 * Claims a rule may match on or key by, only after the token is verified
 * (`jose`): signature (HS256 with `JWT_SECRET`, or the public keys of a local
 * JWKS file, `JWKS_FILE`), expiry and not-before. An unverified claim would let a
 * client pick its own tier. The token comes from `Authorization: Bearer`.
 * Verified tokens are cached (bounded LRU) until they expire, so a client's
 * token is verified once, not per request.
 */
import { readFileSync } from 'node:fs';
import { type JWTPayload, type JWTVerifyGetKey, createLocalJWKSet, jwtVerify } from 'jose';
import { LRUMap } from 'mnemonist';

export type JwtOptions = { secret?: string | undefined; jwksFile?: string | undefined; cacheSize?: number; clock?: () => number };

/** Why no claims could be had. */
export type JwtFailure = 'missing' | 'invalid' | 'expired';

export type JwtVerifier = {
  /** The verified claims of the request's bearer token, or why there are none. */
  claims(authorization: string | undefined): Promise<{ ok: true; claims: JWTPayload } | { ok: false; reason: JwtFailure }>;
};

/** undefined when neither a secret nor a JWKS file is configured. */
export function createJwtVerifier(o: JwtOptions): JwtVerifier | undefined {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (o.jwksFile) {
    key = createLocalJWKSet(JSON.parse(readFileSync(o.jwksFile, 'utf8')));
    algorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'];
  } else if (o.secret) {
    key = new TextEncoder().encode(o.secret);
    algorithms = ['HS256'];
  } else {
    return undefined;
  }
  const now = o.clock ?? Date.now;
  const cache = new LRUMap<string, { claims: JWTPayload; untilMs: number }>(o.cacheSize ?? 10_000);
  return {
    async claims(authorization) {
      const m = authorization ? /^Bearer\s+([A-Za-z0-9._~+/-]+=*)\s*$/i.exec(authorization) : null;
      if (!m) return { ok: false, reason: 'missing' };
      const token = m[1] as string;
      const hit = cache.get(token);
      if (hit && hit.untilMs > now()) return { ok: true, claims: hit.claims };
      try {
        const { payload } = await jwtVerify(token, key as Uint8Array, { algorithms, currentDate: new Date(now()) });
        cache.set(token, { claims: payload, untilMs: payload.exp !== undefined ? payload.exp * 1000 : Number.POSITIVE_INFINITY });
        return { ok: true, claims: payload };
      } catch (err) {
        return { ok: false, reason: (err as { code?: string }).code === 'ERR_JWT_EXPIRED' ? 'expired' : 'invalid' };
      }
    },
  };
}
