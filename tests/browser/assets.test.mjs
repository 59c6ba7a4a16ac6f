// The page's files as sluice serves them from its binary (src/admin/web.c): the bytes of
// web/dist, their Content-Type, nosniff, the CSP on the page, ETag revalidation (304) and the
// year-long cache only for a ?v= that names the current bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { useSluice } from '../integ/lib/sluice.mjs';
import { browserConfig } from './lib/config.mjs';

const ctx = useSluice(() => browserConfig(null), { upstream: false });
// The files the binary under test embedded (make's WEB_DIST when it was built elsewhere).
const DIST = process.env.SLUICE_WEB_DIST ? new URL(`file://${path.resolve(process.env.SLUICE_WEB_DIST)}/`) : new URL('../../web/dist/', import.meta.url);
const files = fs.readdirSync(DIST).filter((f) => !f.startsWith('.'));
const hash = (b) => createHash('sha256').update(b).digest('hex').slice(0, 16);
const get = (p, headers = {}) => fetch(`${ctx.sl.url}${p}`, { headers });
const TYPES = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml' };

test('every file of web/dist is served byte for byte, with its type, ETag and nosniff', async () => {
  assert.deepEqual(files.sort(), ['app.js', 'favicon.svg', 'index.html', 'marked.min.js', 'purify.min.js', 'sluice-client.js', 'style.css',
    'widget-demo.html', 'widget.css', 'widget.js']);
  for (const f of files) {
    const want = fs.readFileSync(new URL(f, DIST));
    const r = await get(`/${f}`);
    assert.equal(r.status, 200, f);
    assert.equal(r.headers.get('content-type'), TYPES[f.split('.').pop()], f);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', f);
    assert.equal(r.headers.get('etag'), `"${hash(want)}"`, f);
    assert.equal(r.headers.get('cache-control'), 'no-cache', f);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(want), `${f}: bytes differ from web/dist`);
  }
});

test('GET / is index.html, with a CSP that allows only sluice itself', async () => {
  const r = await get('/');
  assert.equal(r.status, 200);
  assert.equal(await r.text(), fs.readFileSync(new URL('index.html', DIST), 'utf8'));
  const csp = r.headers.get('content-security-policy');
  assert.match(csp, /^default-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
  assert.equal(r.headers.get('cache-control'), 'no-cache');
});

test('every HTML page (the widget demo too) carries the same CSP and is revalidated', async () => {
  const pages = files.filter((f) => f.endsWith('.html'));
  assert.ok(pages.length >= 2, `pages: ${pages}`);
  const csp = (await get('/')).headers.get('content-security-policy');
  for (const f of pages) {
    const r = await get(`/${f}?v=${hash(fs.readFileSync(new URL(f, DIST)))}`);
    assert.equal(r.status, 200, f);
    assert.equal(r.headers.get('content-security-policy'), csp, f);
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer', f);
    assert.equal(r.headers.get('cache-control'), 'no-cache', `${f}: a page is never cached as immutable`);
  }
  for (const f of files.filter((x) => !x.endsWith('.html'))) {
    assert.equal((await get(`/${f}`)).headers.get('content-security-policy'), null, `${f} is not a page`);
  }
});

test('index.html loads only local files, each as name?v=<hash of its bytes>', () => {
  const html = fs.readFileSync(new URL('index.html', DIST), 'utf8');
  const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((u) => !u.startsWith('#'));
  assert.ok(refs.length >= 5, refs.join(' '));
  for (const u of refs) {
    const m = /^([a-z0-9.-]+)\?v=([0-9a-f]{16})$/.exec(u);
    assert.ok(m, `not a local versioned reference: ${u}`);
    assert.equal(m[2], hash(fs.readFileSync(new URL(m[1], DIST))), u);
  }
});

test('?v= naming the current bytes may be cached for a year; a stale one is revalidated', async () => {
  const h = hash(fs.readFileSync(new URL('app.js', DIST)));
  const fresh = await get(`/app.js?v=${h}`);
  assert.equal(fresh.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  const stale = await get('/app.js?v=0000000000000000');
  assert.equal(stale.headers.get('cache-control'), 'no-cache');
  const page = await get(`/?v=${hash(fs.readFileSync(new URL('index.html', DIST)))}`);
  assert.equal(page.headers.get('cache-control'), 'no-cache', 'the page itself is always revalidated');
});

test('If-None-Match: a matching (strong, weak, listed or *) tag is 304 without a body', async () => {
  const etag = (await get('/style.css')).headers.get('etag');
  for (const inm of [etag, `W/${etag}`, `"nope", ${etag}`, '*']) {
    const r = await get('/style.css', { 'If-None-Match': inm });
    assert.equal(r.status, 304, inm);
    assert.equal(r.headers.get('etag'), etag);
    assert.equal(r.headers.get('content-length'), null);
    assert.equal(await r.text(), '');
  }
  const miss = await get('/style.css', { 'If-None-Match': '"0000000000000000"' });
  assert.equal(miss.status, 200);
});

test('unknown files are 404 and other methods 405, in the OpenAI error shape', async () => {
  const r = await get('/nope.js');
  assert.equal(r.status, 404);
  assert.equal(typeof (await r.json()).error.message, 'string');
  const p = await fetch(`${ctx.sl.url}/app.js`, { method: 'POST' });
  assert.equal(p.status, 405);
  assert.match(p.headers.get('allow'), /GET/);
});

ctx.testCleanExit();
