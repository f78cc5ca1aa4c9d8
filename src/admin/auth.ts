/**
 * @module admin/auth
 *
 * Admin bearer tokens: `ADMIN_TOKENS` (comma-separated `name:secret` or bare
 * secrets) or `ADMIN_TOKENS_FILE` (one per line). A presented token is compared
 * with every configured one in constant time (SHA-256 digests of equal length,
 * `timingSafeEqual`, no early exit), so neither a match nor its position leaks
 * through timing. The audit log records the token's name, never its secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

export type AdminAuth = {
  /** Whether any token is configured (none: the policy and client routes answer 503). */
  readonly configured: boolean;
  /** The matching token's name, or undefined. */
  check(presented: string | undefined): string | undefined;
};

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Parses `name:secret` entries; a bare secret is named `token-<n>`. Secrets shorter than 16 characters are refused. */
export function parseTokens(entries: readonly string[]): { name: string; secret: string }[] {
  return entries
    .map((e) => e.trim())
    .filter((e) => e !== '' && !e.startsWith('#'))
    .map((e, i) => {
      const colon = e.indexOf(':');
      const [name, secret] = colon > 0 ? [e.slice(0, colon), e.slice(colon + 1)] : [`token-${i + 1}`, e];
      if (secret.length < 16) throw new Error(`admin token ${name}: a secret of at least 16 characters`);
      return { name, secret };
    });
}

export function createAdminAuth(o: { tokens?: string | undefined; tokensFile?: string | undefined }): AdminAuth {
  const entries = [...(o.tokens ? o.tokens.split(',') : []), ...(o.tokensFile ? readFileSync(o.tokensFile, 'utf8').split('\n') : [])];
  const tokens = parseTokens(entries).map((t) => ({ name: t.name, digest: digest(t.secret) }));
  return {
    configured: tokens.length > 0,
    check(presented) {
      if (presented === undefined || tokens.length === 0) return undefined;
      const d = digest(presented);
      let found: string | undefined;
      for (const t of tokens) if (timingSafeEqual(d, t.digest) && found === undefined) found = t.name;
      return found;
    },
  };
}

/** The token of `Authorization: Bearer <token>`. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m ? m[1] : undefined;
}
