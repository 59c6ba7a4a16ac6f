// Errors before the stream starts: bad requests (400), unknown models (404), oversized bodies
// (413, refused while reading, never sent upstream) and headers (431), unknown paths and
// methods, upstream statuses passed through, connect failure (502), timeouts (504).
// This file's config has no "*" route, and first_byte/idle (1 s) shorter than keepalive (5 s),
// so a timeout happens before any byte went to the client.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { RETRY_AFTER } from './lib/fake-upstream.mjs';
import { RawClient, formatRequest, request, closedPort } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { useSluice, baseConfig, chat } from './lib/sluice.mjs';
import { assertErrorBody } from './lib/checks.mjs';

const fakeRoute = [{ provider: 'fake' }];
const ctx = useSluice(async (up) => baseConfig({
  upstreamPort: up.port,
  star: false,
  timeouts: { first_byte: '1s', idle: '1s', keepalive: '5s' },
  providers: { dead: { type: 'openai', base_url: `http://127.0.0.1:${await closedPort()}/v1`, api_key: 'sk-dead' } },
  models: {
    'dead-*': [{ provider: 'dead' }],
    'status-*': fakeRoute, 'hang*': fakeRoute, 'stall*': fakeRoute, 'reset*': fakeRoute,
    'ok*': fakeRoute, 'chunks*': fakeRoute,
  },
}));

const post = (body, extra = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, ...extra });

/* Runs fn and asserts that the upstream received no request meanwhile. */
async function nothingUpstream(fn) {
  const before = ctx.up.count();
  const out = await fn();
  // A request that did reach the upstream would be logged by the time the answer came back;
  // a normal request afterwards proves sluice is still serving and flushes any stragglers.
  const ok = await post(chat('ok', 'after-rejection'));
  assert.equal(ok.status, 200, `sluice stopped serving: ${ok.status} ${ok.text}`);
  assert.equal(ctx.up.count(), before + 1, `the rejected request reached the upstream: ${ctx.up.requests.slice(before).map((r) => r.body?.model ?? r.rawBody.length + ' bytes').join(', ')}`);
  return out;
}

/* Writes `size` bytes of body in pieces until an answer shows up; returns what was sent. */
async function uploadUntilAnswered(rc, size, { chunked = false } = {}) {
  const piece = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  while (sent < size && rc.unread === 0 && !rc.closed && !rc.sock.destroyed) {
    const n = Math.min(piece.length, size - sent);
    const data = chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), piece.subarray(0, n), Buffer.from('\r\n')]) : piece.subarray(0, n);
    if (!(await rc.write(data))) break;
    sent += n;
    // A write the kernel takes at once completes without a turn of the event loop's poll
    // phase; yield to it, or an answer that already arrived would go unseen.
    await new Promise((r) => setImmediate(r));
  }
  return sent;
}

describe('bad requests → 400 invalid_request_error, nothing sent upstream', { timeout: 60_000 }, () => {
  test('invalid JSON', async () => {
    await nothingUpstream(async () => {
      for (const text of ['{"model":"ok","messages":[', 'not json at all', '{"model": "ok",}', '']) {
        const r = await post(text);
        assertErrorBody(r, 400, { type: 'invalid_request_error' });
      }
    });
  });

  test('a JSON body that is not an object', async () => {
    await nothingUpstream(async () => {
      for (const text of ['[1,2]', '"just a string"', '42', 'null', 'true']) {
        assertErrorBody(await post(text), 400, { type: 'invalid_request_error' });
      }
    });
  });

  test('missing, empty or non-array messages', async () => {
    await nothingUpstream(async () => {
      for (const body of [{ model: 'ok' }, { model: 'ok', messages: [] }, { model: 'ok', messages: 'hi' },
        { model: 'ok', messages: [], stream: true }]) {
        assertErrorBody(await post(body), 400, { type: 'invalid_request_error' });
      }
    });
  });

  test('missing model', async () => {
    await nothingUpstream(async () => {
      const messages = [{ role: 'user', content: 'hi' }];
      assertErrorBody(await post({ messages }), 400, { type: 'invalid_request_error' });
      assertErrorBody(await post({ messages, stream: true }), 400, { type: 'invalid_request_error' });
    });
  });
});

describe('routing', { timeout: 60_000 }, () => {
  test('an unknown model (no "*" route) → 404 model_not_found, streaming or not', async () => {
    await nothingUpstream(async () => {
      assertErrorBody(await post(chat('gpt-does-not-exist')), 404, { code: 'model_not_found' });
      assertErrorBody(await post(chat('gpt-does-not-exist', 'x', { stream: true })), 404, { code: 'model_not_found' });
    });
  });

  test('an unknown path → 404 with an error body', async () => {
    assertErrorBody(await request(ctx.sl.url, { path: '/v1/nope' }), 404);
    assertErrorBody(await request(ctx.sl.url, { method: 'POST', path: '/v2/chat/completions', body: chat('ok') }), 404);
    assertErrorBody(await request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions/', body: chat('ok') }), 404);
  });

  test('a wrong method → 405 with an error body', async () => {
    assertErrorBody(await request(ctx.sl.url, { method: 'GET', path: '/v1/chat/completions' }), 405);
    assertErrorBody(await request(ctx.sl.url, { method: 'DELETE', path: '/v1/chat/completions' }), 405);
    assertErrorBody(await request(ctx.sl.url, { method: 'POST', path: '/v1/models', body: {} }), 405);
  });
});

describe('size limits', { timeout: 60_000 }, () => {
  test('a body over max_body (Content-Length) → 413 and never reaches the upstream', async () => {
    await nothingUpstream(async () => {
      const big = JSON.stringify(chat('ok', 'x'.repeat(1536 * 1024)));
      const r = await post(big).catch((e) => ({ error: e }));
      if (r.error) {
        // The client could not finish sending; read the answer off a raw socket instead.
        const rc = await RawClient.connect(ctx.sl.port);
        await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-length': Buffer.byteLength(big) } }));
        await uploadUntilAnswered(rc, Buffer.byteLength(big));
        const res = await rc.readResponse(5000);
        rc.destroy();
        assert.equal(res.status, 413);
      } else {
        assertErrorBody(r, 413);
      }
    });
  });

  test('a 50 MB upload is refused while reading (413) and the next request is served', async () => {
    await nothingUpstream(async () => {
      const size = 50 * 1024 * 1024;
      const rc = await RawClient.connect(ctx.sl.port);
      await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'content-length': size } }));
      const sent = await uploadUntilAnswered(rc, size);
      const res = await rc.readResponse(5000);
      rc.destroy();
      assert.equal(res.status, 413);
      assert.ok(sent < size, 'sluice read all 50 MB before answering');
    });
  });

  test('a chunked body over max_body → 413 while reading', async () => {
    await nothingUpstream(async () => {
      const rc = await RawClient.connect(ctx.sl.port);
      await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }));
      // 50 MiB: far more than the socket buffers between us can hold, so if sluice stops
      // reading at max_body, the answer comes before we could send it all.
      const size = 50 * 1024 * 1024;
      const sent = await uploadUntilAnswered(rc, size, { chunked: true });
      const res = await rc.readResponse(5000);
      rc.destroy();
      assert.equal(res.status, 413);
      assert.ok(sent < size, 'sluice read the whole chunked body before answering');
    });
  });

  test('Expect: 100-continue with an oversized Content-Length → 413 before any body is sent', async () => {
    await nothingUpstream(async () => {
      const rc = await RawClient.connect(ctx.sl.port);
      await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'content-length': 2 * 1024 * 1024, expect: '100-continue' } }));
      const res = await rc.readResponse(2000);
      rc.destroy();
      assert.equal(res.status, 413);
    });
  });

  test('Expect: 100-continue with a small body → 100 Continue, then the answer', async () => {
    const body = JSON.stringify(chat('ok', 'expect-continue'));
    const rc = await RawClient.connect(ctx.sl.port);
    await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' } }));
    const t0 = performance.now();
    const cont = await rc.readResponse(900);
    assert.equal(cont.status, 100, 'curl waits a second for 100 Continue');
    assert.ok(performance.now() - t0 < 900);
    await rc.write(body);
    const res = await rc.readResponse(3000);
    rc.destroy();
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).choices[0].message.content.startsWith('expect-continue#0'), true);
  });

  test('headers over max_header → 431, and sluice keeps serving', async () => {
    await nothingUpstream(async () => {
      const rc = await RawClient.connect(ctx.sl.port);
      await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions',
        headers: { 'x-filler': 'a'.repeat(20 * 1024) }, body: chat('ok', 'big-header') }));
      const res = await rc.readResponse(3000);
      rc.destroy();
      assert.equal(res.status, 431);
      // many small headers adding up past the limit count too
      const many = {};
      for (let i = 0; i < 400; i++) many[`x-h-${i}`] = 'v'.repeat(60);
      const rc2 = await RawClient.connect(ctx.sl.port);
      await rc2.write(formatRequest({ method: 'GET', path: '/v1/models', headers: many }));
      const res2 = await rc2.readResponse(3000);
      rc2.destroy();
      assert.equal(res2.status, 431);
    });
  });
});

describe('upstream failures before the stream started', { concurrency: true, timeout: 60_000 }, () => {
  for (const status of [400, 401, 404, 429, 500, 503]) {
    for (const stream of [false, true]) {
      test(`upstream ${status} → ${status} with an OpenAI error body (stream: ${stream})`, async () => {
        const r = await post(chat(`status-${status}`, `st-${status}-${stream}`, { stream }));
        assertErrorBody(r, status);
        if (status === 429 || status === 503) assert.equal(r.headers['retry-after'], RETRY_AFTER, 'Retry-After must pass through');
      });
    }
  }

  test('upstream connect failure → 502', async () => {
    assertErrorBody(await post(chat('dead-1', 'dead')), 502);
    assertErrorBody(await post(chat('dead-1', 'dead', { stream: true })), 502);
  });

  test('upstream closes the connection without an answer → 502', async () => {
    assertErrorBody(await post(chat('reset', 'reset-plain')), 502);
    assertErrorBody(await post(chat('reset', 'reset-stream', { stream: true })), 502);
  });

  test('first_byte timeout, non-streaming → 504 after ~1 s, upstream closed', async () => {
    const r = await post(chat('hang', 'fb-plain'));
    assertErrorBody(r, 504);
    assert.ok(r.ms >= 900 && r.ms < 3500, `answered after ${r.ms} ms (first_byte 1s)`);
    const rec = await ctx.up.waitFor((rs) => rs.find((x) => x.body?.messages?.[0]?.content === 'fb-plain' && x.closed), 1000, 'upstream closed');
    assert.equal(rec.closedEarly, true);
  });

  test('first_byte timeout, streaming, before any keepalive → 504 (not a stream)', async () => {
    const s = await openStream(`${ctx.sl.url}/v1/chat/completions`, chat('hang', 'fb-stream', { stream: true })).finished(5000);
    assert.equal(s.status, 504, `got ${s.status} ${s.text().slice(0, 200)}`);
    assert.match(s.headers['content-type'], /^application\/json/);
    assert.equal(typeof JSON.parse(s.text()).error.message, 'string');
  });

  test('idle timeout after the upstream began a non-streaming answer → 504, or a cut connection', async () => {
    const t0 = performance.now();
    const rc = await RawClient.connect(ctx.sl.port);
    await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', body: chat('stall', 'idle-plain') }));
    let res;
    try {
      res = await rc.readResponse(5000);
    } catch (e) {
      // Acceptable only if sluice had already relayed the head: then it must cut the connection.
      assert.ok(rc.closed, `neither a 504 nor a close: ${e.message}`);
      assert.match(rc.buf.toString('latin1'), /^HTTP\/1\.1 200/);
      return;
    } finally {
      rc.destroy();
    }
    assert.equal(res.status, 504, `got ${res.status}: ${res.body}`);
    const ms = performance.now() - t0;
    assert.ok(ms >= 900 && ms < 3500, `504 after ${ms} ms (idle 1s)`);
  });
});

ctx.testCleanExit();
