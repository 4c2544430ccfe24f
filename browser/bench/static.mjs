// A tiny static server for browser/latency.mjs: the demo's own page files, served
// without any session in them, and BOSH (POST /http-bind) forwarded to the demo's
// same-origin pass-through, so that these pages reach the CM by the same path as
// the demo's pages do.
//
//   /             examples/demo/index.html as is: no session injected, so demo.js
//                 falls back to a normal anonymous Strophe connect()
//   /floor.html   the same page with demo.js replaced by bench/floor.js: no XMPP
//   /demo.js, /demo.css, /vendor/strophe.js, /bench/floor.js
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { ROOT } from '../processes.mjs';

const STROPHE = path.join(ROOT, 'browser/node_modules/strophe.js/dist/strophe.umd.min.js');

function files() {
  const demo = (name) => readFileSync(path.join(ROOT, 'examples/demo', name), 'utf8');
  const index = demo('index.html');
  const floor = index.replace('<script src="/demo.js"></script>', '<script src="/bench/floor.js"></script>');
  if (floor === index) throw new Error('examples/demo/index.html no longer loads /demo.js: update browser/bench/static.mjs');
  const html = 'text/html; charset=utf-8';
  const js = 'text/javascript; charset=utf-8';
  return new Map([
    ['/', [html, index]],
    ['/floor.html', [html, floor]],
    ['/demo.js', [js, demo('demo.js')]],
    ['/demo.css', ['text/css; charset=utf-8', demo('demo.css')]],
    ['/vendor/strophe.js', [js, readFileSync(STROPHE)]],
    ['/bench/floor.js', [js, readFileSync(path.join(ROOT, 'browser/bench/floor.js'), 'utf8')]],
  ]);
}

/**
 * Starts the server on a free loopback port; `boshOrigin` is where POST /http-bind
 * goes (the demo's origin, not through the latency proxy). Returns `{ url, close }`.
 */
export async function startStatic(boshOrigin) {
  const routes = files();
  const upstream = new URL('/http-bind', boshOrigin);
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((request, response) => {
    const { pathname } = new URL(request.url, 'http://localhost');
    if (pathname === '/http-bind' && request.method === 'POST') {
      const forward = http.request(upstream, {
        method: 'POST',
        agent,
        headers: { 'content-type': request.headers['content-type'] ?? 'text/xml; charset=utf-8' },
      }, (answer) => {
        response.writeHead(answer.statusCode, {
          'content-type': answer.headers['content-type'] ?? 'text/xml; charset=utf-8',
          'cache-control': 'no-store',
        });
        answer.pipe(response);
      });
      forward.on('error', () => {
        if (!response.headersSent) response.writeHead(502);
        response.end();
      });
      // The browser went away (its context closed): drop the held request too.
      response.on('close', () => forward.destroy());
      request.pipe(forward);
      return;
    }
    const route = routes.get(pathname);
    if (!route || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end('not found');
      return;
    }
    const [type, body] = route;
    response.writeHead(200, { 'content-type': type });
    response.end(request.method === 'HEAD' ? undefined : body);
  });
  server.keepAliveTimeout = 65000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
      agent.destroy();
    }),
  };
}
