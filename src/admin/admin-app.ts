/**
 * @module admin/admin-app
 *
 * The operators' listener (`ADMIN_PORT`, default 8081, on `ADMIN_HOST`, default
 * 127.0.0.1): the policy document and the client registry, read and written
 * through the policy store, so a change reaches every node (pub/sub, within a
 * second) and survives restarts. Every body is validated by the same zod
 * schemas that generate the OpenAPI 3.1 document (`/admin/openapi.json`), shown
 * by a docs page whose assets come from the installed `swagger-ui-dist` (no
 * CDN). `/health` (detailed) and the docs need no token; every route that reads
 * or writes policies or clients needs `Authorization: Bearer <token>`.
 *
 * API keys travel in bodies, never in URLs, and are stored and logged only as
 * their keyed hash.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { Registry } from 'prom-client';
import { type BucketAdmin, type ClientRecord, type PolicyStore, StoreUnavailableError } from '../core/types.js';
import type { Logger } from '../log/logger.js';
import { policyDocumentSchema, type PolicyDocument, parsePolicyDocument, formatPath } from '../policy/document.js';
import type { PolicyRuntime } from '../policy/runtime.js';
import type { ClientRegistry } from '../policy/registry.js';
import { type AdminAuth, bearerToken } from './auth.js';
import { summarizeChange } from './summary.js';

export type AdminDeps = {
  auth: AdminAuth;
  store: PolicyStore;
  /** The global buckets, for one client's usage and reset. */
  buckets: BucketAdmin;
  /** Forgets what this node holds for a client id (after a reset). */
  forgetClient: (clientId: string) => void;
  runtime: PolicyRuntime;
  registry: ClientRegistry;
  logger: Logger;
  /** The node's detailed state for the admin /health. */
  health: () => Record<string, unknown>;
  /** Served at `GET /metrics` (Prometheus text format, no token). */
  metrics?: Registry;
};

type Env = { Variables: { actor: string } };

const errorBody = z.object({ detail: z.string() }).openapi('Error');
const validationBody = z
  .object({ detail: z.string(), errors: z.array(z.object({ path: z.string(), message: z.string() })) })
  .openapi('ValidationErrors');
const versioned = z.object({ version: z.number().int() }).openapi('Version');
// The engine's own schema, inline (a zod schema made outside @hono/zod-openapi has no .openapi()).
const documentSchema = policyDocumentSchema as unknown as z.ZodTypeAny;
const apiKeyBody = z.object({ apiKey: z.string().min(1).max(256) }).strict().openapi('ApiKey');
const clientBody = z
  .object({
    apiKey: z.string().min(1).max(256),
    tier: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a tier name: 1 to 64 characters from A-Z a-z 0-9 _ . -'),
    allow: z.boolean().default(false),
    deny: z.boolean().default(false),
  })
  .strict()
  .openapi('Client');
const clientRecord = z.object({ client: z.string(), tier: z.string(), allow: z.boolean(), deny: z.boolean() }).openapi('ClientRecord');

const json = <T extends z.ZodTypeAny>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });
const secured = { security: [{ bearer: [] }] };
const authErrors = {
  401: json(errorBody, 'missing or wrong token'),
  503: json(errorBody, 'no admin token configured, or the policy store is unavailable'),
};

/** What a failed body validation answers: 422 with every error's path (the document's own format). */
function validationHook(result: { success: boolean; error?: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> } }, c: Context) {
  if (result.success) return undefined;
  const errors = (result.error?.issues ?? []).map((i) => ({ path: formatPath(i.path), message: i.message }));
  return c.json({ detail: 'Invalid request body', errors }, 422);
}

function docsPage(): { html: string; assets: Map<string, { body: string; type: string }> } {
  const dir = join(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'), '..');
  const assets = new Map([
    ['swagger-ui.css', { body: readFileSync(join(dir, 'swagger-ui.css'), 'utf8'), type: 'text/css; charset=utf-8' }],
    ['swagger-ui-bundle.js', { body: readFileSync(join(dir, 'swagger-ui-bundle.js'), 'utf8'), type: 'text/javascript; charset=utf-8' }],
    ['init.js', { body: "window.ui = SwaggerUIBundle({ url: '/admin/openapi.json', dom_id: '#docs' });", type: 'text/javascript; charset=utf-8' }],
  ]);
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>tandem-limiter admin API</title>
<link rel="stylesheet" href="/admin/docs/swagger-ui.css"></head>
<body><div id="docs"></div><script src="/admin/docs/swagger-ui-bundle.js"></script><script src="/admin/docs/init.js"></script></body></html>`;
  return { html, assets };
}

export function createAdminApp(d: AdminDeps): OpenAPIHono<Env> {
  const app = new OpenAPIHono<Env>({ defaultHook: validationHook as never });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });

  app.get('/health', (c) => c.json(d.health()));
  app.get('/metrics', async (c) => {
    if (!d.metrics) return c.json({ detail: 'Not Found' }, 404);
    return c.body(await d.metrics.metrics(), 200, { 'Content-Type': d.metrics.contentType });
  });

  // Every policy and client route: a configured, matching bearer token (constant-time compare).
  for (const path of ['/admin/policy', '/admin/policy/*', '/admin/clients', '/admin/clients/*']) {
    app.use(path, async (c, next) => {
      if (!d.auth.configured) {
        return c.json({ detail: 'Admin API disabled: set ADMIN_TOKENS (name:secret,...) or ADMIN_TOKENS_FILE to enable it' }, 503);
      }
      const actor = d.auth.check(bearerToken(c.req.header('authorization')));
      if (!actor) return c.json({ detail: 'Missing or invalid admin token' }, 401, { 'WWW-Authenticate': 'Bearer' });
      c.set('actor', actor);
      await next();
    });
  }

  const unavailable = (c: Context, err: unknown) => {
    if (err instanceof StoreUnavailableError) return c.json({ detail: 'Policy store unavailable: nothing was changed' }, 503);
    throw err;
  };

  /** Stores `doc` as a new version (compare-and-set on `ifMatch`, or on what is current). */
  const write = async (c: Context<Env>, doc: PolicyDocument, summarize: (prev: PolicyDocument | undefined) => string) => {
    if (d.runtime.file) return c.json({ detail: `POLICY_SOURCE=file: the document is ${d.runtime.file} on every node; change that file` }, 409);
    const ifMatch = c.req.header('if-match');
    const expected = ifMatch === undefined ? undefined : Number(/^(?:W\/)?"?(\d+)"?$/.exec(ifMatch.trim())?.[1] ?? Number.NaN);
    if (expected !== undefined && !Number.isInteger(expected)) return c.json({ detail: 'If-Match must be a version ETag, e.g. "3"' }, 400);
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        const current = await d.store.current();
        const base = expected ?? current?.version ?? 0;
        if (expected !== undefined && expected !== (current?.version ?? 0)) break;
        const prev = current && current.version === base ? (current.document as PolicyDocument) : undefined;
        const r = await d.store.put(doc, base, { actor: c.get('actor'), summary: summarize(prev) });
        if (r.ok) {
          d.runtime.adopt({ version: r.version, document: doc });
          d.logger.info('policy document changed', { version: r.version, actor: c.get('actor') });
          return c.json({ version: r.version }, 200, { ETag: `"${r.version}"` });
        }
        if (expected !== undefined) break;
      }
      const now = await d.store.currentVersion();
      return c.json({ detail: `Version ${now} is current, not ${expected ?? 'the one read'}: read it again and retry`, version: now }, 412, { ETag: `"${now}"` });
    } catch (err) {
      return unavailable(c, err);
    }
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/admin/policy',
      ...secured,
      responses: { 200: json(z.object({ version: z.number().int(), document: documentSchema }), 'the current document'), ...authErrors },
    }),
    async (c) => {
      try {
        if (d.runtime.file) {
          const { version } = d.runtime.state;
          return c.json({ version, document: d.runtime.document, node: d.runtime.state, file: d.runtime.file }, 200, { ETag: `"${version}"` });
        }
        const current = await d.store.current();
        const version = current?.version ?? 0;
        return c.json({ version, document: current?.document ?? d.runtime.document, node: d.runtime.state }, 200, { ETag: `"${version}"` });
      } catch (err) {
        return unavailable(c, err) as never;
      }
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/admin/policy',
      ...secured,
      request: { body: { content: { 'application/json': { schema: documentSchema } }, required: true } },
      responses: {
        200: json(versioned, 'stored as the next version'),
        409: json(errorBody, 'POLICY_SOURCE=file: the document is a file'),
        412: json(errorBody, 'If-Match names a stale version'),
        422: json(validationBody, 'invalid document, nothing changed'),
        ...authErrors,
      },
    }),
    async (c) => {
      const doc = c.req.valid('json') as PolicyDocument;
      return (await write(c, doc, (prev) => summarizeChange(prev, doc))) as never;
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/admin/policy/validate',
      ...secured,
      request: { body: { content: { 'application/json': { schema: z.unknown() } }, required: true } },
      responses: { 200: json(z.object({ valid: z.literal(true) }), 'valid'), 422: json(validationBody, 'invalid'), ...authErrors },
    }),
    async (c) => {
      const r = parsePolicyDocument(c.req.valid('json'));
      if (!r.ok) return c.json({ detail: 'Invalid policy document', errors: r.errors }, 422) as never;
      return c.json({ valid: true as const }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/admin/policy/versions',
      ...secured,
      responses: {
        200: json(
          z.object({
            current: z.number().int(),
            history: z.array(z.object({ version: z.number(), atMs: z.number(), actor: z.string(), kind: z.string(), summary: z.string() })),
          }),
          'the audit history, newest first',
        ),
        ...authErrors,
      },
    }),
    async (c) => {
      try {
        return c.json({ current: await d.store.currentVersion(), history: await d.store.history(200) }, 200);
      } catch (err) {
        return unavailable(c, err) as never;
      }
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/admin/policy/rollback',
      ...secured,
      request: { body: { content: { 'application/json': { schema: z.object({ version: z.number().int().min(1) }).strict() } }, required: true } },
      responses: { 200: json(versioned, 'version K stored again as the next version'), 404: json(errorBody, 'no such version'), 412: json(errorBody, 'stale If-Match'), ...authErrors },
    }),
    async (c) => {
      const { version } = c.req.valid('json');
      try {
        const old = await d.store.atVersion(version);
        if (!old) return c.json({ detail: `No version ${version}` }, 404) as never;
        const parsed = parsePolicyDocument(old.document);
        if (!parsed.ok) return c.json({ detail: `Version ${version} is not a valid document`, errors: parsed.errors }, 422) as never;
        return (await write(c, parsed.document, () => `rollback to version ${version}`)) as never;
      } catch (err) {
        return unavailable(c, err) as never;
      }
    },
  );

  const recordOut = (keyHash: string, r: ClientRecord) => ({ client: keyHash, tier: r.tier, allow: r.allow, deny: r.deny });

  app.openapi(
    createRoute({
      method: 'put',
      path: '/admin/clients',
      ...secured,
      request: { body: { content: { 'application/json': { schema: clientBody } }, required: true } },
      responses: { 200: json(clientRecord, 'the stored record (the key itself is never stored or returned)'), 422: json(validationBody, 'invalid'), ...authErrors },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const keyHash = d.registry.hash(body.apiKey);
      const record: ClientRecord = { tier: body.tier, allow: body.allow, deny: body.deny };
      try {
        await d.store.setClient(keyHash, record, { actor: c.get('actor'), summary: `client ${keyHash}: tier ${record.tier}${record.allow ? ', allow' : ''}${record.deny ? ', deny' : ''}` });
      } catch (err) {
        return unavailable(c, err) as never;
      }
      d.registry.setHashed(keyHash, record);
      return c.json(recordOut(keyHash, record), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/admin/clients/lookup',
      ...secured,
      request: { body: { content: { 'application/json': { schema: apiKeyBody } }, required: true } },
      responses: { 200: json(clientRecord, 'the record'), 404: json(errorBody, 'not registered'), ...authErrors },
    }),
    async (c) => {
      const keyHash = d.registry.hash(c.req.valid('json').apiKey);
      try {
        const r = await d.store.client(keyHash);
        if (!r) return c.json({ detail: 'Not registered' }, 404) as never;
        return c.json(recordOut(keyHash, r), 200);
      } catch (err) {
        return unavailable(c, err) as never;
      }
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/admin/clients',
      ...secured,
      request: { body: { content: { 'application/json': { schema: apiKeyBody } }, required: true } },
      responses: { 200: json(z.object({ client: z.string(), deleted: z.literal(true) }), 'deleted'), 404: json(errorBody, 'not registered'), ...authErrors },
    }),
    async (c) => {
      const keyHash = d.registry.hash(c.req.valid('json').apiKey);
      try {
        if (!(await d.store.client(keyHash))) return c.json({ detail: 'Not registered' }, 404) as never;
        await d.store.setClient(keyHash, undefined, { actor: c.get('actor'), summary: `client ${keyHash}: deleted` });
      } catch (err) {
        return unavailable(c, err) as never;
      }
      d.registry.setHashed(keyHash, undefined);
      return c.json({ client: keyHash, deleted: true as const }, 200);
    },
  );

  const usage = z
    .object({
      client: z.string(),
      limits: z.array(
        z.object({
          policy: z.string(),
          limit: z.number(),
          available: z.number().describe('whole tokens in the global bucket now, not counting leased ones'),
          leased: z.number().describe('tokens nodes hold and have not reported spent'),
        }),
      ),
    })
    .openapi('Usage');

  app.openapi(
    createRoute({
      method: 'post',
      path: '/admin/clients/usage',
      ...secured,
      request: { body: { content: { 'application/json': { schema: apiKeyBody } }, required: true } },
      responses: { 200: json(usage, "the client's buckets under every policy of the document (identity: its API key)"), ...authErrors },
    }),
    async (c) => {
      const { apiKey } = c.req.valid('json');
      try {
        const limits = [];
        for (const p of d.runtime.compiled.policies.values()) {
          const v = await d.buckets.peek(`k:${apiKey}`, p);
          limits.push({ policy: p.name, limit: p.capacity, available: v ? v.available : p.capacity, leased: v?.leased ?? 0 });
        }
        return c.json({ client: d.registry.hash(apiKey), limits }, 200);
      } catch (err) {
        return unavailable(c, err) as never;
      }
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/admin/clients/reset',
      ...secured,
      request: { body: { content: { 'application/json': { schema: apiKeyBody } }, required: true } },
      responses: { 200: json(z.object({ client: z.string(), reset: z.array(z.string()) }), 'every bucket of the client starts full'), ...authErrors },
    }),
    async (c) => {
      const { apiKey } = c.req.valid('json');
      const keyHash = d.registry.hash(apiKey);
      const names: string[] = [];
      try {
        for (const p of d.runtime.compiled.policies.values()) {
          await d.buckets.reset(`k:${apiKey}`, p);
          names.push(p.name);
        }
        await d.store.audit({ actor: c.get('actor'), kind: 'client', summary: `client ${keyHash}: usage reset (${names.join(', ')})` });
      } catch (err) {
        return unavailable(c, err) as never;
      }
      d.forgetClient(`k:${apiKey}`);
      return c.json({ client: keyHash, reset: names }, 200);
    },
  );

  app.doc31('/admin/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'tandem-limiter admin API', version: '1', description: 'Policies and the client registry. Bearer token required except for /health and the docs.' },
  });

  const docs = docsPage();
  app.get('/admin/docs', (c) => c.html(docs.html));
  app.get('/admin/docs/:asset', (c) => {
    const a = docs.assets.get(c.req.param('asset'));
    return a ? c.body(a.body, 200, { 'Content-Type': a.type }) : c.json({ detail: 'Not Found' }, 404);
  });

  app.notFound((c) => c.json({ detail: 'Not Found' }, 404));
  app.onError((err, c) => {
    // A body that is not JSON at all is the client's error, not ours.
    if (err instanceof SyntaxError || /JSON/i.test(err.message)) return c.json({ detail: 'Malformed JSON body' }, 400);
    d.logger.error('admin API error', { error: err.message, path: c.req.path });
    return c.json({ detail: 'Internal Server Error' }, 500);
  });
  return app;
}
