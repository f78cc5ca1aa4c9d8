/**
 * @module http/upstream
 *
 * Forwarding an admitted request to the service the limiter protects
 * (`UPSTREAM_URL`, seed 000's diagram), with Hono's proxy helper: method, path,
 * query and body streamed both ways, hop-by-hop headers dropped,
 * `X-Forwarded-For` (the peer appended) and `X-Forwarded-Proto` set. The whole
 * exchange is bounded by `UPSTREAM_TIMEOUT_MS`: an upstream that does not answer
 * in time gets a 504 JSON, one that cannot be reached a 502 JSON; never a hang.
 * A denied request never reaches it.
 */
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { proxy } from 'hono/proxy';

export type UpstreamOptions = { url: string; timeoutMs: number };
export type Forward = (c: Context, extraHeaders: Record<string, string>) => Promise<Response>;

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

const json = (status: number, detail: string) => new Response(JSON.stringify({ detail }), { status, headers: { 'Content-Type': 'application/json' } });

export function createForwarder(o: UpstreamOptions): Forward {
  const base = o.url.replace(/\/+$/, '');
  return async (c, extraHeaders) => {
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const url = new URL(c.req.url);
    const peer = incoming?.socket?.remoteAddress;
    const prior = c.req.header('x-forwarded-for');
    const headers: Record<string, string | undefined> = { ...c.req.header() };
    // Hop-by-hop headers, and any the client names in Connection, stop here (RFC 9110 §7.6.1).
    for (const name of [...HOP_BY_HOP, ...(headers.connection ?? '').split(',').map((h) => h.trim().toLowerCase())]) {
      if (name) headers[name] = undefined;
    }
    headers.host = undefined;
    headers['x-forwarded-for'] = [prior, peer].filter(Boolean).join(', ') || undefined;
    // What this hop received, not what the client claims.
    headers['x-forwarded-proto'] = url.protocol.replace(':', '');
    try {
      const res = await proxy(`${base}${url.pathname}${url.search}`, {
        raw: c.req.raw,
        headers,
        signal: AbortSignal.timeout(o.timeoutMs),
      });
      const out = new Response(res.body, res);
      for (const [k, v] of Object.entries(extraHeaders)) out.headers.set(k, v);
      return out;
    } catch (err) {
      const name = (err as Error).name;
      if (name === 'TimeoutError' || name === 'AbortError') return json(504, `Upstream did not answer within ${o.timeoutMs} ms`);
      return json(502, 'Upstream unreachable');
    }
  };
}
