// The widget's test world: a host page server on its own origin (another 127.0.0.1 port, so
// every call the widget makes to sluice is cross-origin), and the sluice config that lets that
// origin in through CORS, with the mock provider behind "any" (as the chat page's tests use it),
// a slow mock for Stop, and the scripted upstream behind "scripted*".
import http from 'node:http';

export const HOSTILE_CSS = `
/* A host page that styles everything it can reach, as some sites do. */
html, body { font-size: 40px; color: red; line-height: 4; font-family: "Comic Sans MS", cursive;
  text-align: right; letter-spacing: 3px; word-spacing: 9px; text-transform: uppercase; }
div, p, span, section, button, textarea, h2, form, pre, svg, path {
  color: red !important; font-size: 40px !important; background: yellow !important;
  border: 5px dashed red !important; padding: 30px !important; margin: 20px !important;
  line-height: 3 !important; width: 900px !important; fill: red !important; }
* { box-sizing: content-box !important; font-weight: 100 !important; }
sluice-widget, sluice-widget * { position: static !important; opacity: .2 !important;
  transform: scale(2) !important; visibility: hidden !important; }
button { visibility: hidden; }
:root { --accent: red; --fg: red; --bg: black; }
`;

export function widgetConfig(up, pageOrigin) {
  return {
    listen: '127.0.0.1:0',
    workers: 2,
    timeouts: { connect: '2s', first_byte: '5s', idle: '5s', drain: '5s' },
    cors: { origins: [pageOrigin] },
    providers: {
      mock: { type: 'mock', ttft: '50ms', tokens_per_s: 100, tokens: 30 },
      slow: { type: 'mock', ttft: '50ms', tokens_per_s: 20, tokens: 400 },
      // No breaker: the tests fail this provider on purpose, one request after another.
      scripted: { type: 'openai', base_url: `http://127.0.0.1:${up.port}/v1`, api_key: 'sk-upstream-xyz', breaker: { failures: 0 } },
    },
    models: {
      any: [{ provider: 'mock' }],
      slow: [{ provider: 'slow' }],
      'scripted*': [{ provider: 'scripted' }],
    },
  };
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/*
 * The host pages. page(attrs, opts) registers one and returns its URL: a document whose body is
 * only the widget's <script> tag (attrs become data- attributes), plus, when asked, the hostile
 * stylesheet, some elements of its own (extra HTML), a CSP header, or no widget at all.
 */
export async function startHostPages() {
  const pages = new Map();
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/hostile.css') {
      res.writeHead(200, { 'content-type': 'text/css' });
      res.end(HOSTILE_CSS);
      return;
    }
    const page = pages.get(p);
    if (!page) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no such page');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...page.headers });
    res.end(page.html);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const origin = `http://127.0.0.1:${server.address().port}`;
  let n = 0;
  return {
    origin,
    page(sluiceURL, attrs = {}, { hostile = false, extra = '', csp = null, widget = true } = {}) {
      const data = Object.entries(attrs).map(([k, v]) => ` data-${k}="${esc(v)}"`).join('');
      const html = '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>host page</title>' +
        (hostile ? '<link rel="stylesheet" href="/hostile.css">' : '') + '</head>\n<body>' + extra +
        (widget ? `<script src="${sluiceURL}/widget.js"${data} async></script>` : '') + '</body></html>\n';
      const path = `/page-${++n}.html`;
      pages.set(path, { html, headers: csp ? { 'content-security-policy': csp } : {} });
      return origin + path;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
