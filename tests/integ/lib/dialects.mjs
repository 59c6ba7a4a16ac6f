// Helpers for the seed-dialect tests (chat, monoai, aichat, sessions): several sluices per test
// file against one fake upstream (a dialect answers with one configured model, so each upstream
// scenario needs its own sluice), a SQLite store per sluice in the file's temp dir, a tiny JWT
// signer (node:crypto), an SSE client that can GET (EventSource-like, no body), a WebSocket
// client wrapper over `ws`, and small shared assertions.
import assert from 'node:assert/strict';
import { createHmac, sign as cryptoSign, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { before, after, test } from 'node:test';
import WebSocket from 'ws';
import { startFakeUpstream } from './fake-upstream.mjs';
import { openStream } from './sse.mjs';
import { request } from './raw-http.mjs';
import { baseConfig, startSluice, stopAndCheck, chat } from './sluice.mjs';

/* ---------------- config ---------------- */

/*
 * baseConfig against the fake upstream plus the store (sqlite at db), the seed dialects and
 * auth. dialects: the `dialects:` section as is. auth: the `auth:` section (keys, jwt) as is.
 * One worker unless told: these files start several sluices.
 */
export function dialectConfig(up, db, { dialects = {}, auth, timeouts = {}, models = {}, providers = {},
  limits = {}, workers = 1 } = {}) {
  const cfg = baseConfig({ upstreamPort: up.port, timeouts, models, providers, limits, workers });
  if (auth) cfg.auth = auth;
  cfg.store = { sqlite: db };
  cfg.dialects = dialects;
  return cfg;
}

/*
 * Like useSluice, for several sluices: one fake upstream (ctx.up), then every sluice of
 * `configs` ({name: (up, dbPath) => config}) started together in the one root before() hook;
 * ctx.sl[name] is each Sluice, ctx.dir the file's temp dir (removed at the end). Call
 * ctx.testCleanExit() last: it SIGTERMs them all and asserts each exits 0 (stopAndCheck).
 */
export function useSluices(configs, { secrets } = {}) {
  const ctx = { up: null, sl: {}, dir: null };
  before(async () => {
    ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-dialects-'));
    ctx.up = await startFakeUpstream();
    const started = await Promise.allSettled(Object.entries(configs).map(async ([name, fn]) => {
      const config = await fn(ctx.up, path.join(ctx.dir, `${name}.db`));
      ctx.sl[name] = await startSluice({ config });
    }));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  });
  after(async () => {
    for (const sl of Object.values(ctx.sl)) {
      if (!sl.exit) {
        sl.proc.kill('SIGKILL');
        await sl.exited;
      }
    }
    await ctx.up?.close();
    if (ctx.dir) fs.rmSync(ctx.dir, { recursive: true, force: true });
  });
  ctx.testCleanExit = () => test('SIGTERM: every sluice exits 0, no sanitizer report, no key in stderr', async () => {
    const names = Object.keys(configs);
    assert.deepEqual(Object.keys(ctx.sl).sort(), names.sort(), 'not every sluice started');
    const results = await Promise.allSettled(names.map((n) => stopAndCheck(ctx.sl[n], { secrets })));
    const bad = results.map((r, i) => (r.status === 'rejected' ? `[${names[i]}] ${r.reason?.message ?? r.reason}` : null)).filter(Boolean);
    assert.equal(bad.length, 0, bad.join('\n\n'));
  });
  return ctx;
}

/* ---------------- small things ---------------- */

let seq = 0;
/* A unique, log-safe id/tag for one request (X-Request-Id, prompts, session ids). */
export function uid(label = 't') {
  return `${label}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}`;
}

/* The last user message of an upstream request body. */
export function lastUser(body) {
  const msgs = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i]?.role === 'user') return msgs[i].content;
  return undefined;
}

/* The request the upstream received, from the text an `echo` model answered. */
export function echoed(text) {
  assert.equal(typeof text, 'string', `echo answer is not a string: ${JSON.stringify(text)}`);
  let info;
  try { info = JSON.parse(text); } catch { assert.fail(`echo answer is not the JSON of a request: ${text.slice(0, 300)}`); }
  assert.ok(info && typeof info === 'object' && info.body, `echo answer has no body: ${text.slice(0, 300)}`);
  return info;
}

/* The exact text the mock provider (tokens: 20) answers, read through the openai dialect. */
export async function mockAnswer(sl, headers = {}) {
  const r = await request(sl.url, { method: 'POST', path: '/v1/chat/completions', body: chat('mock-reference', 'reference'), headers });
  assert.equal(r.status, 200, `reference mock answer: ${r.status} ${r.text.slice(0, 200)}`);
  const text = r.json.choices[0].message.content;
  assert.ok(text.length > 0);
  return text;
}

/* POST JSON (body may be a string: sent as is), one fresh connection. */
export function postJSON(sl, pathname, body, headers = {}, timeoutMs = 10000) {
  return request(sl.url, { method: 'POST', path: pathname, body, headers, timeoutMs });
}

/* Upstream requests whose raw body mentions tag. */
export function upstreamWith(up, tag) {
  return up.requests.filter((r) => r.rawBody.toString('utf8').includes(tag));
}

/* Asserts no upstream request mentions tag, and the count did not move since `before`. */
export function assertNothingUpstream(up, tag, before) {
  assert.equal(upstreamWith(up, tag).length, 0, `a refused request reached the upstream (tag ${tag})`);
  if (before !== undefined) assert.equal(up.count(), before, 'a refused request reached the upstream');
}

/* Waits for the upstream request whose last user message is tag to close before it finished,
 * within 500 ms of goneAt (the client left then). */
export async function assertUpstreamCancelled(up, tag, goneAt, label = tag) {
  const rec = await up.waitFor((rs) => rs.find((r) => lastUser(r.body) === tag && r.closed), 1500,
    `the upstream socket of "${label}" to close`);
  assert.equal(rec.closedEarly, true, 'the upstream connection must close before the answer was complete');
  assert.equal(rec.finished, false);
  const ms = rec.closedAt - goneAt;
  assert.ok(ms < 500, `upstream closed ${ms.toFixed(0)} ms after the client left`);
  return rec;
}

/* The access-log line of the request sent with X-Request-Id rid (bounded wait). */
export function logLine(sl, rid, timeoutMs = 3000) {
  return sl.waitForLog((l) => l.request_id === rid, timeoutMs, `the access-log line of ${rid}`);
}

/* The bounded poll (lib/poll.mjs), re-exported for the files that take everything from here. */
export { pollUntil } from './poll.mjs';

/* Asserts x is a usage object {prompt_tokens, completion_tokens, total_tokens}, consistent. */
export function assertUsage(u, label = 'usage') {
  assert.ok(u && typeof u === 'object', `${label}: ${JSON.stringify(u)}`);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    assert.ok(Number.isInteger(u[k]) && u[k] >= 0, `${label}.${k}: ${JSON.stringify(u)}`);
  }
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${label}: total != prompt + completion`);
  return u;
}

/* Asserts a JSON answer: status, JSON content type; returns the body. */
export function assertJSON(r, status, label = '') {
  const what = `${label} ${r.status} ${JSON.stringify(r.headers?.['content-type'])} ${String(r.text ?? '').slice(0, 300)}`;
  assert.equal(r.status, status, `expected HTTP ${status}, got ${what}`);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/i, `content-type: ${what}`);
  assert.ok(r.json !== undefined && r.json !== null && typeof r.json === 'object', `not a JSON object: ${what}`);
  return r.json;
}

/* ---------------- JWT ---------------- */

export function b64url(b) {
  return Buffer.from(b).toString('base64url');
}

/*
 * Signs a JWT: alg HS256 (key: secret string/Buffer, or any string used as HMAC secret),
 * RS256 / ES256 (key: private KeyObject or PEM), or 'none' (empty signature). header: extra
 * or overriding header fields (e.g. {alg: 'HS512'} to lie about the algorithm).
 */
export function signJwt(payload, { alg = 'HS256', key, header = {} } = {}) {
  const input = `${b64url(JSON.stringify({ alg, typ: 'JWT', ...header }))}.${b64url(JSON.stringify(payload))}`;
  let sig;
  if (alg === 'HS256') sig = createHmac('sha256', key).update(input).digest();
  else if (alg === 'RS256') sig = cryptoSign('sha256', Buffer.from(input), key);
  else if (alg === 'ES256') sig = cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else if (alg === 'none') sig = Buffer.alloc(0);
  else throw new Error(`signJwt: unsupported alg ${alg}`);
  return `${input}.${b64url(sig)}`;
}

export const nowS = () => Math.floor(Date.now() / 1000);

/* ---------------- SSE without a body (GET, as EventSource does) ---------------- */

/* A streaming request with the body optional (GET sends none, like a browser EventSource):
 * sse.mjs openStream with an EventSource's headers. */
export function openSSE(url, { method = 'GET', headers = {}, body } = {}) {
  return openStream(url, body, { method, headers: { 'cache-control': 'no-cache', ...headers } });
}

/* The JSON payloads of a stream's data events; fails on a data line that is not JSON. */
export function payloads(s, label = 'stream') {
  return s.dataEvents().map((e) => {
    assert.ok(e.json !== undefined, `${label}: a data event that is not JSON: ${JSON.stringify(e.data)}`);
    return e.json;
  });
}

/* ---------------- WebSocket ---------------- */

/*
 * Opens a WebSocket (ws npm client, no compression) and resolves once it is open. The client
 * records every message ({text, json, t}), pongs, and the close ({code, reason, at}).
 * waitFor(pred) re-checks on each of those; exchange(msg) sends one prompt and resolves when a
 * `complete` or an `{"error"}` message arrived.
 */
export function openWS(url, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 3000, ...options });
    const em = new EventEmitter();
    em.setMaxListeners(0);
    const c = { ws, messages: [], pongs: [], closed: null, error: null };
    const changed = () => em.emit('change');
    ws.on('message', (data, isBinary) => {
      const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat([].concat(data)).toString('utf8');
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      c.messages.push({ text, json, isBinary, t: performance.now() });
      changed();
    });
    ws.on('pong', (d) => { c.pongs.push(Buffer.from(d)); changed(); });
    ws.on('close', (code, reason) => { c.closed = { code, reason: reason.toString(), at: performance.now() }; changed(); });
    ws.on('error', (e) => { c.error ??= e; changed(); });
    ws.once('open', () => resolve(c));
    ws.once('error', (e) => { if (ws.readyState !== WebSocket.OPEN) reject(e); });
    ws.once('close', (code) => { if (!c.opened) reject(new Error(`websocket closed before open (${code})`)); });
    ws.once('open', () => { c.opened = true; });

    c.json = () => c.messages.map((m) => m.json);
    c.send = (msg, opts) => new Promise((res, rej) => {
      ws.send(typeof msg === 'string' || Buffer.isBuffer(msg) ? msg : JSON.stringify(msg), opts ?? {}, (err) => (err ? rej(err) : res()));
    });
    c.waitFor = (pred, timeoutMs = 3000, label = 'a websocket condition') => new Promise((res, rej) => {
      const check = () => {
        let v;
        try { v = pred(c); } catch (e) { done(); rej(e); return true; }
        if (v) { done(); res(v); return true; }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        rej(new Error(`timed out after ${timeoutMs} ms waiting for ${label}; messages: ${JSON.stringify(c.messages.slice(-5).map((m) => m.text.slice(0, 200)))}; closed: ${JSON.stringify(c.closed)}`));
      }, timeoutMs);
      const done = () => { clearTimeout(timer); em.off('change', check); };
      if (!check()) em.on('change', check);
    });
    /* Messages from index `from` up to and including the first complete/error one. */
    c.until = async (from, timeoutMs = 5000, label = 'a complete or error message') => {
      const final = (j) => j && typeof j === 'object' && (j.type === 'complete' || 'error' in j);
      const idx = await c.waitFor(() => {
        const i = c.messages.findIndex((m, k) => k >= from && final(m.json));
        if (i >= 0) return i + 1;
        if (c.closed) {
          throw new Error(`websocket closed (${JSON.stringify(c.closed)}) before ${label}; messages: ${JSON.stringify(c.messages.slice(from).map((m) => m.text.slice(0, 200)))}`);
        }
        return 0;
      }, timeoutMs, label);
      const msgs = c.messages.slice(from, idx).map((m) => m.json);
      const last = msgs.at(-1);
      return {
        msgs,
        chunks: msgs.filter((m) => m?.type === 'chunk'),
        text: msgs.filter((m) => m?.type === 'chunk').map((m) => m.content).join(''),
        complete: last?.type === 'complete' ? last : null,
        error: last && 'error' in last ? last : null,
      };
    };
    c.exchange = async (msg, timeoutMs = 5000) => {
      const from = c.messages.length;
      await c.send(msg);
      return c.until(from, timeoutMs);
    };
    c.close = async (code = 1000, timeoutMs = 3000) => {
      if (!c.closed) {
        if (ws.readyState === WebSocket.OPEN) ws.close(code);
        await c.waitFor(() => c.closed, timeoutMs, 'the close').catch(() => ws.terminate());
      }
      return c.closed;
    };
  });
}
