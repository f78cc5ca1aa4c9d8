// A demo upstream for the compose stack and the tests: answers every request with what it
// received (method, path, query, headers, body length), as JSON.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 3000);
createServer((req, res) => {
  let length = 0;
  req.on('data', (c) => (length += c.length));
  req.on('end', async () => {
    // ?delay=<ms> answers late (tests of the limiter's upstream timeout).
    const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ upstream: true, method: req.method, url: req.url, headers: req.headers, bodyBytes: length }));
  });
}).listen(port, () => console.log(`echo upstream on :${port}`));
