/**
 * Property-based fuzzing of the public HTTP surface over real sockets: one
 * service node with a real redis-server, and raw `node:net` connections so that
 * any bytes can be sent (arbitrary methods, targets, header names and values with
 * bytes 0x00-0xff, duplicated X-API-Key, 10-20 KB values, bodies).
 *
 * Checked for every case:
 * - the connection gets a complete response, or a clean close, within 2 s;
 * - the status is never 5xx;
 * - every error response (>= 400) is JSON (Content-Type and body);
 * - the service still answers GET /health afterwards.
 * Plus, per family: a duplicated X-API-Key is refused with a JSON 400; a method
 * other than GET/HEAD on /resource gets a JSON 405 with Allow and spends nothing.
 * After all cases an untouched key still has its full limit.
 *
 * fast-check runs with fixed seeds, so a failure replays; its counterexample is
 * shrunk and printed compactly (long runs of one pattern as `'x'.repeat(n)`).
 */
import { METHODS } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisProcess } from './helpers/redis-server.js';
import { type Node, startNode } from './helpers/service.js';

const CAPACITY = 40;
const HANG_BOUND_MS = 5000;
const INNOCENT_KEY = 'innocent-key';
const SEED = 20240611;

/** numRuns per property; the whole file stays well under ~20 s on two cores when the service passes. */
const RUNS = { raw: 3000, singleKey: 1500, duplicateKey: 800, method: 800 } as const;
/** Bounds each property, shrinking included, should a failure involve hangs. */
const PROPERTY_TIME_LIMIT_MS = 25_000;

let redis: RedisProcess;
let node: Node;
const casesRun = { raw: 0, singleKey: 0, duplicateKey: 0, method: 0 };

beforeAll(async () => {
  redis = await RedisProcess.start();
  // A very slow refill: a token spent during the fuzzing is not back by the time it is checked.
  node = await startNode({ REDIS_URL: redis.url, RATE_LIMIT_CAPACITY: String(CAPACITY), RATE_LIMIT_REFILL_PER_SEC: '0.001' });
});
afterAll(async () => {
  const total = Object.values(casesRun).reduce((a, b) => a + b, 0);
  console.log(
    `http-fuzz: cases run (shrinking included): ${casesRun.raw} raw, ${casesRun.singleKey} single-key, ` +
      `${casesRun.duplicateKey} duplicate-key, ${casesRun.method} method; ${total} in all`,
  );
  await node?.close(1000);
  await redis?.stop();
});

// ---------------------------------------------------------------------------
// A raw HTTP/1.x client: sends bytes, reads exactly one final response.

type RawResult =
  | { kind: 'response'; status: number; headers: [string, string][]; body: Buffer; ms: number }
  | { kind: 'closed'; ms: number } // FIN (or reset) before any byte of a response
  | { kind: 'timeout'; received: Buffer }
  | { kind: 'broken'; detail: string; received: Buffer }; // partial or unparseable response

function header(res: { headers: [string, string][] }, name: string): string | undefined {
  return res.headers.find(([n]) => n === name)?.[1];
}

/** Parses one response out of `buf`; undefined while incomplete. `eof`: the peer has closed. */
function parseResponse(buf: Buffer, isHead: boolean, eof: boolean): { status: number; headers: [string, string][]; body: Buffer } | 'bad' | undefined {
  let start = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', start, 'latin1');
    if (end < 0) return eof ? 'bad' : undefined;
    const lines = buf.subarray(start, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
    if (!m) return 'bad';
    const status = Number(m[1]);
    const headers: [string, string][] = [];
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i <= 0) return 'bad';
      headers.push([line.slice(0, i).toLowerCase(), line.slice(i + 1).trim()]);
    }
    const bodyStart = end + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      start = bodyStart; // 100 Continue and friends: the final response follows
      continue;
    }
    const rest = buf.subarray(bodyStart);
    if (isHead || status === 204 || status === 304 || status === 101) return { status, headers, body: Buffer.alloc(0) };
    const te = headers.find(([n]) => n === 'transfer-encoding')?.[1];
    const cl = headers.find(([n]) => n === 'content-length')?.[1];
    if (te && /chunked/i.test(te)) {
      const chunks: Buffer[] = [];
      let p = 0;
      for (;;) {
        const le = rest.indexOf('\r\n', p, 'latin1');
        if (le < 0) return eof ? 'bad' : undefined;
        const size = Number.parseInt(rest.subarray(p, le).toString('latin1'), 16);
        if (!Number.isFinite(size)) return 'bad';
        if (size === 0) {
          const trailerEnd = rest.indexOf('\r\n', le + 2, 'latin1');
          if (trailerEnd < 0) return eof ? 'bad' : undefined;
          return { status, headers, body: Buffer.concat(chunks) };
        }
        if (rest.length < le + 2 + size + 2) return eof ? 'bad' : undefined;
        chunks.push(rest.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
    }
    if (cl !== undefined) {
      const n = Number(cl);
      if (!Number.isInteger(n) || n < 0) return 'bad';
      if (rest.length < n) return eof ? 'bad' : undefined;
      return { status, headers, body: rest.subarray(0, n) };
    }
    // Neither: the body runs until the server closes.
    return eof ? { status, headers, body: rest } : undefined;
  }
}

function rawRequest(port: number, request: Buffer, isHead: boolean): Promise<RawResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    let done = false;
    const socket = connect({ port, host: '127.0.0.1' });
    const finish = (r: RawResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout', received: Buffer.concat(chunks) }), HANG_BOUND_MS);
    const attempt = (eof: boolean) => {
      const buf = Buffer.concat(chunks);
      if (eof && buf.length === 0) return finish({ kind: 'closed', ms: performance.now() - t0 });
      const parsed = parseResponse(buf, isHead, eof);
      if (parsed === 'bad') return finish({ kind: 'broken', detail: 'unparseable or truncated response', received: buf });
      if (parsed) finish({ kind: 'response', ...parsed, ms: performance.now() - t0 });
    };
    socket.on('data', (d) => {
      chunks.push(d);
      attempt(false);
    });
    socket.on('end', () => attempt(true));
    socket.on('close', () => attempt(true));
    // EPIPE/ECONNRESET while we still write a big request after the server answered: keep what was read.
    socket.on('error', () => attempt(true));
    socket.write(request, () => {});
  });
}

async function healthOk(): Promise<boolean> {
  const r = await rawRequest(node.port, Buffer.from('GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 'latin1'), false);
  return r.kind === 'response' && r.status === 200;
}

async function getResource(key: string): Promise<RawResult> {
  const req = `GET /resource HTTP/1.1\r\nHost: localhost\r\nX-API-Key: ${key}\r\nConnection: close\r\n\r\n`;
  return rawRequest(node.port, Buffer.from(req, 'latin1'), false);
}

// ---------------------------------------------------------------------------
// Cases: a request as parts, serialised as latin1 (one char = one byte).

type Case = {
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  body: string | undefined;
  chunked: boolean;
};

function serialise(c: Case): Buffer {
  let s = `${c.method} ${c.target}${c.version === '' ? '' : ` ${c.version}`}\r\n`;
  for (const [n, v] of c.headers) s += `${n}: ${v}\r\n`;
  if (c.body !== undefined) {
    if (c.chunked) {
      s += 'Transfer-Encoding: chunked\r\n\r\n';
      if (c.body.length > 0) s += `${c.body.length.toString(16)}\r\n${c.body}\r\n`;
      s += '0\r\n\r\n';
    } else {
      s += `Content-Length: ${c.body.length}\r\n\r\n${c.body}`;
    }
  } else {
    s += '\r\n';
  }
  return Buffer.from(s, 'latin1');
}

/** A JS literal for a string, long runs of one pattern folded into `'ab'.repeat(n)`. */
function show(s: string): string {
  if (s.length <= 80) return JSON.stringify(s);
  for (let p = 1; p <= 8; p++) {
    const unit = s.slice(0, p);
    const n = Math.floor(s.length / p);
    if (unit.repeat(n) === s.slice(0, n * p)) {
      const tail = s.slice(n * p);
      return `${JSON.stringify(unit)}.repeat(${n})${tail ? ` + ${JSON.stringify(tail)}` : ''}`;
    }
  }
  return `${JSON.stringify(s.slice(0, 60))}... (${s.length} chars)`;
}

function describeCase(c: Case): string {
  const hs = c.headers.map(([n, v]) => `[${show(n)}, ${show(v)}]`).join(', ');
  const body = c.body === undefined ? 'none' : `${show(c.body)}${c.chunked ? ' (chunked)' : ''}`;
  return `{ method: ${show(c.method)}, target: ${show(c.target)}, version: ${show(c.version)}, headers: [${hs}], body: ${body} }`;
}

/** Wraps a case so fast-check prints it compactly in counterexamples. */
function printable<T extends Case>(c: T): T {
  return Object.defineProperty(c, fc.toStringMethod, { value: () => describeCase(c), enumerable: false });
}

// ---------------------------------------------------------------------------
// Arbitraries.

const byte = (min: number, max: number) => fc.integer({ min, max }).map((n) => String.fromCharCode(n));
const anyByte = byte(0x00, 0xff);
/** Bytes that end a line: excluded where a value must stay one header line. */
const noCrLf = anyByte.filter((ch) => ch !== '\r' && ch !== '\n');
const controlChar = fc.constantFrom('\x00', '\x01', '\x1b', '\x7f', '\t', '\x08', '\x1f');
const tchar = fc.constantFrom(...'!#$%&\'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'.split(''));
const printableAscii = byte(0x21, 0x7e);
const token = (maxLength = 12) => fc.string({ unit: tchar, minLength: 1, maxLength });
/** A 10-20 KB string of one repeated short pattern (cheap to generate, shrinks well). */
const huge = (unit: fc.Arbitrary<string>) =>
  fc
    .tuple(fc.integer({ min: 10_000, max: 20_000 }), fc.string({ unit, minLength: 1, maxLength: 4 }))
    .map(([n, pat]) => pat.repeat(Math.ceil(n / pat.length)).slice(0, n));

const FRAMING = new Set(['content-length', 'transfer-encoding', 'upgrade']);
/** The generator must never produce the innocent key, anywhere. */
const innocentFree = (c: Case) => !serialise(c).toString('latin1').toLowerCase().includes('innocent');

const methodArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS') },
  { weight: 3, arbitrary: fc.constantFrom(...METHODS) },
  { weight: 1, arbitrary: token(10) },
  { weight: 1, arbitrary: fc.string({ unit: noCrLf, minLength: 0, maxLength: 10 }) },
);
const pathArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('/resource', '/health', '/', '/nope', '/resource/', '//resource', '/RESOURCE', '/%72esource', '*', 'http://localhost/resource') },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('/resource?', '/health?', '/'), fc.string({ unit: printableAscii, maxLength: 40 })).map(([a, b]) => a + b) },
  { weight: 1, arbitrary: fc.string({ unit: noCrLf, minLength: 0, maxLength: 40 }).map((s) => `/${s}`) },
  { weight: 1, arbitrary: huge(printableAscii).map((s) => `/${s}`) },
);
const versionArb = fc.oneof(
  { weight: 16, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 2, arbitrary: fc.constant('HTTP/1.0') },
  { weight: 1, arbitrary: fc.constantFrom('HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'HTTX/1.1', 'http/1.1', '') },
);
const headerNameArb = fc
  .oneof(
    { weight: 10, arbitrary: fc.constantFrom('X-API-Key', 'x-api-key', 'Host', 'Content-Type', 'Accept', 'Connection', 'Expect', 'Cookie', 'User-Agent') },
    { weight: 8, arbitrary: token(20) },
    { weight: 1, arbitrary: fc.string({ unit: noCrLf, minLength: 0, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.tuple(token(6), controlChar, token(6)).map(([a, c, b]) => a + c + b) },
  )
  .filter((n) => !FRAMING.has(n.toLowerCase().trim()));
const headerValueArb = fc.oneof(
  { weight: 16, arbitrary: fc.string({ unit: printableAscii, maxLength: 30 }) },
  { weight: 3, arbitrary: fc.constant('') },
  { weight: 3, arbitrary: fc.string({ unit: byte(0x20, 0xff), maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: anyByte, maxLength: 30 }) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ unit: printableAscii, maxLength: 8 }), controlChar, fc.string({ unit: printableAscii, maxLength: 8 })).map(([a, c, b]) => a + c + b) },
  { weight: 1, arbitrary: huge(printableAscii) },
  { weight: 1, arbitrary: huge(noCrLf) },
);
const bodyArb = fc.option(fc.tuple(fc.string({ unit: anyByte, maxLength: 2000 }), fc.boolean()), { nil: undefined, freq: 2 });

const rawCaseArb: fc.Arbitrary<Case> = fc
  .record({
    method: methodArb,
    target: pathArb,
    version: versionArb,
    host: fc.option(fc.constantFrom('localhost', 'example.com', ''), { freq: 12 }),
    // Often a plain key, so that requests get through to the limiter too.
    key: fc.option(fc.string({ unit: tchar, minLength: 1, maxLength: 12 }), { freq: 2 }),
    headers: fc.array(fc.tuple(headerNameArb, headerValueArb), { maxLength: 5 }),
    body: bodyArb,
  })
  .map(({ method, target, version, host, key, headers, body }) =>
    printable({
      method,
      target,
      version,
      headers: [
        ...(host === null ? [] : [['Host', host] as [string, string]]),
        ...(key === null ? [] : [['X-API-Key', key] as [string, string]]),
        ...headers,
      ],
      body: body?.[0],
      chunked: body?.[1] ?? false,
    }),
  )
  .filter(innocentFree);

// API keys: single or duplicated X-API-Key on GET/HEAD /resource.
const keyValueArb = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: printableAscii, minLength: 1, maxLength: 24 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\t') },
  { weight: 2, arbitrary: fc.tuple(fc.string({ unit: printableAscii, maxLength: 8 }), controlChar, fc.string({ unit: printableAscii, minLength: 1, maxLength: 8 })).map(([a, c, b]) => a + c + b) },
  { weight: 2, arbitrary: fc.string({ unit: noCrLf, minLength: 1, maxLength: 24 }) },
  { weight: 1, arbitrary: fc.string({ unit: byte(0x80, 0xff), minLength: 1, maxLength: 24 }) },
  { weight: 1, arbitrary: fc.integer({ min: 250, max: 300 }).map((n) => 'k'.repeat(n)) },
  { weight: 1, arbitrary: huge(printableAscii) },
);
type KeyCase = Case & { keys: string[] };
/** GET or HEAD /resource with `min`..`max` X-API-Key headers (any spelling of the name). */
const apiKeyCaseArb = (min: number, max: number): fc.Arbitrary<KeyCase> =>
  fc
    .record({
      method: fc.constantFrom('GET', 'HEAD'),
      target: fc.constantFrom('/resource', '/resource?x=1'),
      keys: fc.array(fc.tuple(fc.constantFrom('X-API-Key', 'x-api-key', 'X-API-KEY', 'x-Api-kEy'), keyValueArb), { minLength: min, maxLength: max }),
    })
    .map(({ method, target, keys }) =>
      printable({
        method,
        target,
        version: 'HTTP/1.1',
        headers: [['Host', 'localhost'] as [string, string], ...keys],
        body: undefined,
        chunked: false,
        keys: keys.map(([, v]) => v),
      }),
    )
    .filter(innocentFree);

// Methods on /resource other than GET/HEAD, each with a key no other case uses.
const NOT_ALLOWED = METHODS.filter((m) => m !== 'GET' && m !== 'HEAD' && m !== 'CONNECT');
let methodCaseCounter = 0;
const methodCaseArb: fc.Arbitrary<Case> = fc
  .record({
    // Methods Node's parser knows (unknown ones are answered by the parser: see the raw property).
    method: fc.constantFrom(...NOT_ALLOWED),
    target: fc.constantFrom('/resource', '/resource?a=b'),
    contentType: fc.option(fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'), { nil: undefined }),
    body: bodyArb,
  })
  .map(({ method, target, contentType, body }) => {
    const headers: [string, string][] = [['Host', 'localhost'], ['X-API-Key', '<fresh key>']];
    if (contentType) headers.push(['Content-Type', contentType]);
    return printable({ method, target, version: 'HTTP/1.1', headers, body: body?.[0], chunked: body?.[1] ?? false });
  });

// ---------------------------------------------------------------------------
// The checks shared by every case.

function describeResult(r: RawResult): string {
  switch (r.kind) {
    case 'response':
      return `${r.status} content-type=${JSON.stringify(header(r, 'content-type') ?? null)} body=${show(r.body.toString('latin1'))}`;
    case 'closed':
      return 'closed without a response';
    case 'timeout':
      return `no complete response within ${HANG_BOUND_MS} ms (${r.received.length} bytes received)`;
    case 'broken':
      return `${r.detail}: ${show(r.received.toString('latin1'))}`;
  }
}

/** The universal properties; returns the violations (empty when fine). */
async function universal(r: RawResult, isHead: boolean): Promise<string[]> {
  const problems: string[] = [];
  if (r.kind === 'timeout') problems.push(`hang: ${describeResult(r)}`);
  if (r.kind === 'broken') problems.push(describeResult(r));
  if (r.kind === 'response') {
    if (r.status >= 500) problems.push(`5xx: ${describeResult(r)}`);
    if (r.status >= 400) {
      const ct = header(r, 'content-type') ?? '';
      if (!/^application\/json\b/i.test(ct)) problems.push(`error without JSON content-type: ${describeResult(r)}`);
      if (!isHead) {
        try {
          JSON.parse(r.body.toString('utf8'));
        } catch {
          problems.push(`error body is not JSON: ${describeResult(r)}`);
        }
      }
    }
  }
  if (!(await healthOk())) problems.push('GET /health no longer answers 200 afterwards');
  return problems;
}

function fail(c: Case, problems: string[]): never {
  throw new Error(`${problems.join('; ')}\n  request: ${describeCase(c)}`);
}

const fcParams = (numRuns: number) => ({ seed: SEED, numRuns, interruptAfterTimeLimit: PROPERTY_TIME_LIMIT_MS });

/** The status a GET/HEAD /resource must get for these X-API-Key values (as sent, before Node trims them). */
function expectedForKeys(keys: string[]): number[] {
  const values = keys.map((k) => k.replace(/^[ \t]+|[ \t]+$/g, ''));
  // A 10-20 KB key can push the header section past Node's 16 KB limit: 431 (in JSON) is a refusal too.
  const tooLarge = values.some((v) => v.length > 256) ? [431] : [];
  if (values.length > 1) return values.every((v) => v === '') ? [400, 401] : [400, ...tooLarge];
  const v = values[0] as string;
  if (/[\x00-\x1f\x7f]/.test(v)) return [400, ...tooLarge];
  if (v === '') return [401];
  if (v.length > 256) return [400, ...tooLarge];
  return [200, 429];
}

async function checkKeyCase(c: KeyCase): Promise<void> {
  const isHead = c.method === 'HEAD';
  const r = await rawRequest(node.port, serialise(c), isHead);
  const problems = await universal(r, isHead);
  if (r.kind !== 'response') problems.push(`expected a response, got: ${describeResult(r)}`);
  else {
    const expected = expectedForKeys(c.keys);
    if (!expected.includes(r.status)) problems.push(`expected ${expected.join(' or ')}, got ${describeResult(r)}`);
    if ((r.status === 200 || r.status === 429) && header(r, 'ratelimit') === undefined) problems.push(`${r.status} without RateLimit headers`);
  }
  if (problems.length > 0) fail(c, problems);
}

// ---------------------------------------------------------------------------

describe(`HTTP fuzzing over real sockets (seed ${SEED})`, () => {
  it(`raw requests (${RUNS.raw} cases): a response within ${HANG_BOUND_MS} ms, never 5xx, errors in JSON, still healthy`, async () => {
    await fc.assert(
      fc.asyncProperty(rawCaseArb, async (c) => {
        casesRun.raw++;
        const isHead = c.method === 'HEAD';
        const r = await rawRequest(node.port, serialise(c), isHead);
        const problems = await universal(r, isHead);
        if (problems.length > 0) fail(c, problems);
      }),
      fcParams(RUNS.raw),
    );
  }, 60_000);

  it(`one X-API-Key (${RUNS.singleKey} cases): 401/400 in JSON when missing, empty, too long or with control bytes; else limited`, async () => {
    await fc.assert(
      fc.asyncProperty(apiKeyCaseArb(1, 1), async (c) => {
        casesRun.singleKey++;
        await checkKeyCase(c);
      }),
      fcParams(RUNS.singleKey),
    );
  }, 60_000);

  it(`duplicated X-API-Key (${RUNS.duplicateKey} cases): refused with a JSON 400, never joined into one key`, async () => {
    await fc.assert(
      fc.asyncProperty(apiKeyCaseArb(2, 3), async (c) => {
        casesRun.duplicateKey++;
        await checkKeyCase(c);
      }),
      fcParams(RUNS.duplicateKey),
    );
  }, 60_000);

  it(`other methods on /resource (${RUNS.method} cases): JSON 405 with Allow, nothing spent`, async () => {
    await fc.assert(
      fc.asyncProperty(methodCaseArb, async (template) => {
        casesRun.method++;
        // A key no other case (nor any replay while shrinking) has used: its bucket is full.
        const key = `method-probe-${++methodCaseCounter}`;
        const c = printable({ ...template, headers: template.headers.map(([n, v]) => [n, n === 'X-API-Key' ? key : v] as [string, string]) });
        const r = await rawRequest(node.port, serialise(c), false);
        const problems = await universal(r, false);
        if (r.kind === 'response') {
          if (r.status !== 405) problems.push(`expected 405, got ${describeResult(r)}`);
          if (r.status === 405 && !/\bGET\b/.test(header(r, 'allow') ?? '')) problems.push(`405 without an Allow header naming GET`);
        } else {
          problems.push(`expected a response, got: ${describeResult(r)}`);
        }
        // Nothing spent: the key's first GET sees a full bucket less that one request.
        const probe = await getResource(key);
        const remaining = probe.kind === 'response' ? header(probe, 'x-ratelimit-remaining') : undefined;
        if (probe.kind !== 'response' || probe.status !== 200 || remaining !== String(CAPACITY - 1)) {
          problems.push(`a token was spent: the next GET got ${describeResult(probe)}, X-RateLimit-Remaining ${remaining} (want ${CAPACITY - 1})`);
        }
        if (problems.length > 0) fail(c, problems);
      }),
      fcParams(RUNS.method),
    );
  }, 60_000);

  it(`afterwards the service is up and '${INNOCENT_KEY}' still has its full limit of ${CAPACITY}`, async () => {
    expect(await healthOk()).toBe(true);
    const statuses: number[] = [];
    for (let i = 0; i < CAPACITY; i++) {
      const r = await getResource(INNOCENT_KEY);
      statuses.push(r.kind === 'response' ? r.status : -1);
    }
    expect(statuses).toEqual(Array.from({ length: CAPACITY }, () => 200));
  });
});
