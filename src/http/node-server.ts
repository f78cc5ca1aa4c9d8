/**
 * @module http/node-server
 *
 * The app on a Node HTTP server, with the edges Hono does not see:
 * - requests Node's parser refuses (control bytes in a header, headers over
 *   16 KB, a malformed request line) and `Expect` values other than
 *   100-continue get a JSON error instead of Node's bare status line;
 * - requests the adapter cannot turn into a URL (`OPTIONS *`) get a JSON 400
 *   instead of an empty one; one without `Host` (HTTP/1.0, a health checker) is
 *   served as if sent to localhost;
 * - once the node stops accepting, every response carries `Connection: close`,
 *   so keep-alive clients end their connection after the answer they are
 *   reading instead of sending the next request on a socket that is about to
 *   close (a reset).
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { Socket } from 'node:net';
import { RequestError, getRequestListener } from '@hono/node-server';

type Fetch = (request: Request, env: { incoming: IncomingMessage; outgoing: ServerResponse }) => Response | Promise<Response>;

const json = (detail: string) => JSON.stringify({ detail });

/** A raw HTTP/1.1 response with a JSON body, for sockets no request object exists for. */
function rawJsonResponse(status: number, reason: string, detail: string): string {
  const body = json(detail);
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** What Node's parser refused, as a status; parse errors are the client's. */
function clientErrorStatus(code: string | undefined): [number, string, string] {
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'Request Header Fields Too Large', 'Request headers too large'];
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'Request Timeout', 'Request timed out'];
  return [400, 'Bad Request', 'Bad Request: malformed HTTP request'];
}

export type NodeServer = {
  server: Server;
  /** From now on every response says `Connection: close` (call it when the server stops accepting). */
  startDraining(): void;
};

/** Creates the server (not listening yet). */
export function createNodeServer(fetch: Fetch): NodeServer {
  let draining = false;
  const listener = getRequestListener(
    (request, env) => {
      const bindings = env as { incoming: IncomingMessage; outgoing: ServerResponse };
      if (draining) bindings.outgoing.setHeader('Connection', 'close');
      return fetch(request, bindings);
    },
    {
      // A request without Host (HTTP/1.0, a health checker) is served as if to localhost.
      hostname: 'localhost',
      // The adapter calls this when it cannot build a Request (an invalid URL or Host: a
      // RequestError), and when the app's own promise rejects (a bug: 500).
      errorHandler: (err) =>
        err instanceof RequestError
          ? new Response(json('Bad Request: invalid request target or Host'), { status: 400, headers: { 'Content-Type': 'application/json' } })
          : new Response(json('Internal Server Error'), { status: 500, headers: { 'Content-Type': 'application/json' } }),
    },
  );
  // No Host: the adapter serves it (hostname above), rather than Node refusing it with a bare 400.
  const server = createServer({ requireHostHeader: false }, listener);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Like Node's own handler: no raw answer on a socket whose current response has begun.
    const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || current?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, reason, detail] = clientErrorStatus(err.code);
    socket.end(rawJsonResponse(status, reason, detail));
  });
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(417, { 'Content-Type': 'application/json', Connection: 'close' });
    res.end(json('Expectation Failed: only 100-continue is supported'));
  });
  return {
    server,
    startDraining() {
      draining = true;
    },
  };
}
