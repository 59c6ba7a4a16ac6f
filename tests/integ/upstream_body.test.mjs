// Whole (non-streaming) upstream answers that are not whole: a body shorter than its
// Content-Length (the upstream closed early, even when the prefix happens to be valid JSON) and
// a body over the 64 MiB cap are 502s in the client's dialect shape, never a 200 with whatever
// arrived; the relay treats them as a dropped upstream (fallback moves on). A stream cut before
// its end ends with one error event. Every case runs on both upstream clients: the built-in
// HTTP/1.1 one and libcurl (SLUICE_UPSTREAM_CLIENT=curl).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptedServer } from './lib/scripted-server.mjs';
import { completionFor, streamFrames } from './lib/fake-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { assertErrorBody, assertErrorEnding } from './lib/checks.mjs';
import { startSluice, stopAndCheck, baseConfig, chat } from './lib/sluice.mjs';

const MAX_JSON_BODY = 64 * 1024 * 1024; /* src/upstream/xfer.c */

/* A valid completion, space-padded to exactly `size` bytes (whitespace after JSON is JSON). */
function padded(body, size) {
  const json = Buffer.from(JSON.stringify(completionFor(body)));
  const buf = Buffer.alloc(size, 0x20);
  json.copy(buf);
  return buf;
}

const json = (len) => ({ 'content-type': 'application/json', 'content-length': len });

/* The answer for each model name. */
function plan(rec) {
  const body = rec.body ?? {};
  const whole = Buffer.from(JSON.stringify(completionFor(body)));
  switch (body.model) {
    case 'short-valid': /* all of a valid JSON body, but 64 bytes fewer than announced */
      return [{ kind: 'head', status: 200, headers: json(whole.length + 64) },
        { kind: 'write', data: whole }, { kind: 'destroy' }];
    case 'short-chunked': /* all of a valid JSON body, chunked, without the last chunk */
      return [{ kind: 'head', status: 200, headers: { 'content-type': 'application/json' } },
        { kind: 'write', data: whole }, { kind: 'destroy' }];
    case 'short-half': /* half the JSON, then the socket closes */
      return [{ kind: 'head', status: 200, headers: json(whole.length) },
        { kind: 'write', data: whole.subarray(0, whole.length >> 1) }, { kind: 'destroy' }];
    case 'too-big':
    case 'at-limit': {
      const buf = padded(body, body.model === 'at-limit' ? MAX_JSON_BODY : MAX_JSON_BODY + 1);
      return [{ kind: 'head', status: 200, headers: json(buf.length) },
        { kind: 'write', data: buf }, { kind: 'end' }];
    }
    case 'stream-cut': { /* role + two content chunks, then the socket closes mid-chunked */
      const frames = streamFrames({ ...body, model: 'chunks:2' });
      return [{ kind: 'head', status: 200, headers: { 'content-type': 'text/event-stream' } },
        ...frames.slice(0, 3).map((f) => ({ kind: 'write', data: f.text })), { kind: 'destroy' }];
    }
    default:
      return [{ kind: 'head', status: 200, headers: json(whole.length) },
        { kind: 'write', data: whole }, { kind: 'end' }];
  }
}

const post = async (sl, body) => {
  const r = await fetch(`${sl.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await r.text();
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: Object.fromEntries(r.headers), text, json: parsed };
};

for (const client of ['h1', 'curl']) {
  describe(`incomplete or oversized upstream bodies (${client})`, { timeout: 60_000 }, () => {
    let up;
    let sl;
    before(async () => {
      up = await startScriptedServer(plan);
      const cfg = baseConfig({ upstreamPort: up.port, workers: 1 });
      cfg.providers.good = { ...cfg.providers.fake };
      cfg.models = {
        'fb-short': [{ provider: 'fake', model: 'short-valid' }, { provider: 'good', model: 'ok' }],
        'fb-big': [{ provider: 'fake', model: 'too-big' }, { provider: 'good', model: 'ok' }],
        ...cfg.models,
      };
      sl = await startSluice({ config: cfg, env: client === 'curl' ? { SLUICE_UPSTREAM_CLIENT: 'curl' } : {} });
    });
    after(async () => {
      if (sl && !sl.exit) { sl.proc.kill('SIGKILL'); await sl.exited; }
      await up?.close();
    });

    test('a body shorter than its Content-Length (valid JSON so far) → 502, not 200', async () => {
      const r = await post(sl, chat('short-valid', 'sv'));
      const e = assertErrorBody(r, 502, { type: 'server_error', code: 'upstream_disconnected' });
      assert.match(e.message, /closed the connection/);
    });

    test('a chunked body cut before its last chunk (valid JSON so far) → 502', async () => {
      assertErrorBody(await post(sl, chat('short-chunked', 'sc')), 502, { type: 'server_error', code: 'upstream_disconnected' });
    });

    test('half a body, then close → 502 in the OpenAI error shape', async () => {
      assertErrorBody(await post(sl, chat('short-half', 'sh')), 502, { type: 'server_error', code: 'upstream_disconnected' });
    });

    test('a cut body counts as a failed upstream: the fallback target answers', async () => {
      const r = await post(sl, chat('fb-short', 'fs'));
      assert.equal(r.status, 200, r.text.slice(0, 300));
      assert.equal(r.json.choices[0].message.content.length > 0, true);
      const line = await sl.waitForLog((l) => l.model === 'fb-short');
      assert.equal(line.fallbacks, 1, JSON.stringify(line));
      assert.equal(line.attempts[0].status, 502, JSON.stringify(line.attempts));
    });

    test('a body just over 64 MiB → 502 "upstream response too large"', async () => {
      const r = await post(sl, chat('too-big', 'tb'));
      const e = assertErrorBody(r, 502, { type: 'server_error', code: 'upstream_too_large' });
      assert.match(e.message, /upstream response too large/);
      const fb = await post(sl, chat('fb-big', 'fb'));
      assert.equal(fb.status, 200, fb.text.slice(0, 300));
    });

    test('a body of exactly 64 MiB is still served', async () => {
      const r = await post(sl, chat('at-limit', 'al'));
      assert.equal(r.status, 200, r.text.slice(0, 300));
      assert.equal(r.json.choices[0].message.content, 'al#0 al#1 al#2 al#3 al#4 ');
    });

    test('a stream cut before its end ends with one error event', async () => {
      const s = await openStream(`${sl.url}/v1/chat/completions`, chat('stream-cut', 'sc', { stream: true })).finished();
      assert.equal(s.status, 200);
      assert.ok(s.text().includes('sc#1 '), s.text().slice(0, 500));
      const e = assertErrorEnding(s, 'stream-cut');
      assert.equal(e.code, 'upstream_disconnected');
    });

    test('SIGTERM: sluice exits 0, no sanitizer report', async () => {
      await stopAndCheck(sl);
    });
  });
}
