/**
 * @module policy/document
 *
 * The policy document: named limits (`policies`) and the rules that apply them
 * to requests, validated once with zod. Every error names the path of the bad
 * field as a user writes it (`rules[2].limits[0]: unknown policy "dayly"`).
 * The admin API serves and accepts exactly this format.
 */
import { isIP } from 'node:net';
import { z } from 'zod';

export const ALGORITHM_NAMES = ['token_bucket', 'gcra', 'fixed_window', 'sliding_window'] as const;
/** Windows shorter than this leave no time to lease and spend a permit within one. */
const MIN_WINDOW_SEC = 0.1;

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const name = (what: string) => z.string().regex(NAME, `${what}: 1 to 64 characters from A-Z a-z 0-9 _ . -`);

/** An IP address or a CIDR block, v4 or v6. */
const cidr = z.string().refine(
  (s) => {
    const [addr, bits, ...rest] = s.split('/');
    if (rest.length > 0 || !addr) return false;
    const v = isIP(addr);
    if (v === 0) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return /^\d{1,3}$/.test(bits) && n <= (v === 4 ? 32 : 128);
  },
  { message: 'an IP address or CIDR block, e.g. 10.0.0.0/8 or 2001:db8::/32' },
);

const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'an HTTP header name');
const claimName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a JWT claim name');
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const limitPolicy = z
  .object({
    algorithm: z.enum(ALGORITHM_NAMES, { error: `one of ${ALGORITHM_NAMES.join(', ')}` }),
    limit: z.number().int('a whole number').min(1).max(1_000_000_000),
    windowSec: z.number().gt(0, 'greater than 0').max(31_536_000),
  })
  .strict();

const headerMatch = z.object({ name: headerName, values: z.array(z.string().min(1).max(256)).min(1) }).strict();
const claimMatch = z.object({ name: claimName, values: z.array(z.string().min(1).max(256)).min(1) }).strict();

const match = z
  .object({
    pathPrefix: z.string().startsWith('/', 'a path starting with /').max(256).optional(),
    methods: z.array(z.enum(METHODS)).min(1).optional(),
    tiers: z.array(name('a tier')).min(1).optional(),
    ips: z.array(cidr).min(1).optional(),
    header: headerMatch.optional(),
    claim: claimMatch.optional(),
  })
  .strict();

const identity = z
  .string()
  .regex(/^(apiKey|ip|header:[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}|claim:[A-Za-z0-9_.:-]{1,64})$/, 'apiKey, ip, header:<name> or claim:<name>');

const list = z
  .object({
    ips: z.array(cidr).min(1).optional(),
    header: headerMatch.optional(),
  })
  .strict();

const rule = z
  .object({
    name: name('a rule name'),
    match: match.default({}),
    by: identity.default('apiKey'),
    limits: z.array(z.string()).min(1, 'at least one policy name'),
    cost: z.number().int('a whole number').min(1).max(1_000_000).default(1),
    shadow: z.boolean().default(false),
    allow: list.optional(),
    deny: list.optional(),
  })
  .strict();

export const policyDocumentSchema = z
  .object({
    policies: z.record(
      z.string().regex(/^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/, 'a policy name: 1 to 64 printable ASCII characters without " or \\'),
      limitPolicy,
    ),
    rules: z.array(rule).min(1, 'at least one rule'),
    defaultTier: name('a tier').default('free'),
    /** API keys the registry does not know: `allow` them under the default tier, `reject` them (401). */
    unknownKeys: z.enum(['allow', 'reject'], { error: 'allow or reject' }).default('allow'),
    /** A verified JWT claim naming the tier of a request whose API key the registry does not know. */
    tierClaim: claimName.optional(),
  })
  .strict()
  .superRefine((doc, ctx) => {
    for (const [policyName, p] of Object.entries(doc.policies)) {
      if ((p.algorithm === 'fixed_window' || p.algorithm === 'sliding_window') && (p.windowSec < MIN_WINDOW_SEC || !Number.isInteger(Math.round(p.windowSec * 1e6) / 1e3))) {
        ctx.addIssue({
          code: 'custom',
          path: ['policies', policyName, 'windowSec'],
          message: `a window of whole milliseconds, at least ${MIN_WINDOW_SEC} s`,
        });
      }
      // The sliding window checks limit × windowMs in doubles: exact only below 2^53.
      if (p.algorithm === 'sliding_window' && p.limit * p.windowSec * 1000 > 2 ** 52) {
        ctx.addIssue({ code: 'custom', path: ['policies', policyName, 'limit'], message: 'limit × windowSec must stay below 4.5e12 for a sliding window' });
      }
    }
    const seen = new Set<string>();
    doc.rules.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: `duplicate rule name "${r.name}"` });
      seen.add(r.name);
      r.limits.forEach((l, j) => {
        if (!(l in doc.policies)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'limits', j], message: `unknown policy "${l}"` });
      });
      if (new Set(r.limits).size !== r.limits.length) ctx.addIssue({ code: 'custom', path: ['rules', i, 'limits'], message: 'a policy listed twice' });
    });
  });

export type PolicyDocument = z.infer<typeof policyDocumentSchema>;
export type RuleSpec = PolicyDocument['rules'][number];

export type DocumentError = { path: string; message: string };

/** `['rules', 2, 'limits', 0]` → `rules[2].limits[0]`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out || '(document)';
}

/** Validates a parsed JSON value: the document, or every error with its path. */
export function parsePolicyDocument(input: unknown): { ok: true; document: PolicyDocument } | { ok: false; errors: DocumentError[] } {
  const r = policyDocumentSchema.safeParse(input);
  if (r.success) return { ok: true, document: r.data };
  return { ok: false, errors: r.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })) };
}
