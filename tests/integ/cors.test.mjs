// CORS (DESIGN §6, §10): for an origin in cors.origins, a preflight (OPTIONS with Origin and
// Access-Control-Request-*) is answered 204 without a key and without anything going upstream,
// allowing POST and the authorization and content-type headers, with a max age and
// Vary: Origin; the real answers to that origin carry Access-Control-Allow-Origin and expose
// x-request-id and the x-ratelimit-* headers to the page. Any other origin (or none) gets no
// CORS header at all: the browser, not sluice, then refuses.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { assertErrorBody, assertChunkStream } from './lib/checks.mjs';
import { useSluice, baseConfig, chat, CLIENT_KEY } from './lib/sluice.mjs';
import { uid, assertNothingUpstream } from './lib/dialects.mjs';

const ORIGIN = 'https://app.example';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-cors-'));
const ctx = useSluice((up) => ({
  ...baseConfig({ upstreamPort: up.port, auth: true }),
  rate_limits: { per_key: { rpm: 10000, tpm: 10000000 } },
  cors: { origins: [ORIGIN] },
  store: { sqlite: path.join(dir, 'cors.db') },
}));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const PREFLIGHT = {
  'access-control-request-method': 'POST',
  'access-control-request-headers': 'authorization, content-type',
};
const EXPOSED = ['x-request-id', 'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens'];

const list = (v) => String(v ?? '').split(',').map((x) => x.trim().toLowerCase()).filter(Boolean);
const corsHeaders = (h) => Object.keys(h).filter((k) => k.startsWith('access-control-'));
const preflight = (origin, path = '/v1/chat/completions', extra = {}) => request(ctx.sl.url, {
  method: 'OPTIONS', path, headers: { ...(origin ? { origin } : {}), ...PREFLIGHT, ...extra },
});
const post = (body, headers = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, headers });
const authed = (origin) => ({ authorization: `Bearer ${CLIENT_KEY}`, ...(origin ? { origin } : {}) });

/* An answer to ORIGIN: Allow-Origin is the origin itself, Vary names Origin, and the page may
 * read x-request-id and the x-ratelimit-* headers. */
function assertAllowed(h, label) {
  assert.equal(h['access-control-allow-origin'], ORIGIN, `${label}: Access-Control-Allow-Origin (headers: ${JSON.stringify(h)})`);
  assert.ok(list(h.vary).includes('origin'), `${label}: Vary must include Origin: ${JSON.stringify(h.vary)}`);
  const exposed = list(h['access-control-expose-headers']);
  for (const x of EXPOSED) assert.ok(exposed.includes(x), `${label}: Access-Control-Expose-Headers lacks ${x}: ${JSON.stringify(h['access-control-expose-headers'])}`);
}

describe('preflight', { timeout: 60_000 }, () => {
  test('from a configured origin: 204 with allow-origin, methods, headers, max-age, Vary: Origin; no key needed', async () => {
    const n = ctx.up.count();
    const r = await preflight(ORIGIN);
    assert.equal(r.status, 204, `preflight: ${r.status} ${r.text.slice(0, 200)}`);
    const h = r.headers;
    assert.equal(h['access-control-allow-origin'], ORIGIN);
    assert.ok(list(h['access-control-allow-methods']).includes('post'), `Access-Control-Allow-Methods: ${h['access-control-allow-methods']}`);
    const allowed = list(h['access-control-allow-headers']);
    for (const x of ['authorization', 'content-type']) assert.ok(allowed.includes(x), `Access-Control-Allow-Headers lacks ${x}: ${h['access-control-allow-headers']}`);
    assert.match(h['access-control-max-age'] ?? '', /^\d+$/, `Access-Control-Max-Age: ${h['access-control-max-age']}`);
    assert.ok(Number(h['access-control-max-age']) > 0);
    assert.ok(list(h.vary).includes('origin'), `Vary: ${h.vary}`);
    assert.equal(r.text, '', 'a 204 has no body');
    assert.equal(ctx.up.count(), n, 'a preflight reached the upstream');
  });

  test('header names in the request are matched case-insensitively', async () => {
    const r = await preflight(ORIGIN, '/v1/chat/completions', { 'access-control-request-headers': 'Authorization,Content-Type' });
    assert.equal(r.status, 204, `preflight: ${r.status} ${r.text.slice(0, 200)}`);
    const allowed = list(r.headers['access-control-allow-headers']);
    for (const x of ['authorization', 'content-type']) assert.ok(allowed.includes(x), `Access-Control-Allow-Headers: ${r.headers['access-control-allow-headers']}`);
  });

  for (const other of ['https://evil.example', 'https://app.example.evil', 'http://app.example', 'https://app.example:8443', 'null']) {
    test(`from ${other}: answered without any CORS header`, async () => {
      const n = ctx.up.count();
      const r = await preflight(other);
      assert.ok(r.status < 500, `preflight from ${other}: ${r.status}`);
      assert.deepEqual(corsHeaders(r.headers), [], `CORS headers for ${other}: ${JSON.stringify(r.headers)}`);
      assert.equal(ctx.up.count(), n, 'a preflight reached the upstream');
    });
  }
});

describe('answers', { timeout: 60_000 }, () => {
  test('to the configured origin: JSON, SSE and mock answers carry allow-origin and expose the headers', async () => {
    const r = await post(chat('ok', uid('cors-json')), authed(ORIGIN));
    assert.equal(r.status, 200);
    assertAllowed(r.headers, 'JSON answer');
    const s = await openStream(`${ctx.sl.url}/v1/chat/completions`, chat('chunks:3', uid('cors-sse'), { stream: true }), { headers: authed(ORIGIN) }).finished();
    assertChunkStream(s, { label: 'SSE answer' });
    assertAllowed(s.headers, 'SSE answer');
    const m = await post(chat('mock-cors', uid('cors-mock')), authed(ORIGIN));
    assert.equal(m.status, 200);
    assertAllowed(m.headers, 'mock answer');
    for (const x of EXPOSED) assert.ok(r.headers[x], `the exposed header ${x} is not on the answer`);
  });

  test('an error answer to the configured origin carries allow-origin too (the page can read it)', async () => {
    const tag = uid('cors-401');
    const n = ctx.up.count();
    const r = await post(chat('ok', tag), { origin: ORIGIN });
    assertErrorBody(r, 401);
    assert.equal(r.headers['access-control-allow-origin'], ORIGIN, `401 to ${ORIGIN}: ${JSON.stringify(r.headers)}`);
    assertNothingUpstream(ctx.up, tag, n);
  });

  test('another origin is served (the browser decides) but gets no CORS header', async () => {
    for (const other of ['https://evil.example', 'https://app.example.evil', 'http://app.example']) {
      const r = await post(chat('ok', uid('cors-other')), authed(other));
      assert.equal(r.status, 200);
      assert.deepEqual(corsHeaders(r.headers), [], `CORS headers for ${other}: ${JSON.stringify(r.headers)}`);
      const s = await openStream(`${ctx.sl.url}/v1/chat/completions`, chat('chunks:2', uid('cors-other-sse'), { stream: true }), { headers: authed(other) }).finished();
      assert.equal(s.status, 200);
      assert.deepEqual(corsHeaders(s.headers), [], `CORS headers on SSE for ${other}`);
    }
  });

  test('no Origin header: no CORS header', async () => {
    const r = await post(chat('ok', uid('cors-none')), authed());
    assert.equal(r.status, 200);
    assert.deepEqual(corsHeaders(r.headers), []);
  });
});

ctx.testCleanExit();
