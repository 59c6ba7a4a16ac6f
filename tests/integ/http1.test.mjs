// HTTP/1.1 at the socket level: keep-alive, pipelining, the models endpoint, chunked request
// bodies, Connection: close, and clients that send garbage, give up halfway or trickle.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { expectedClientStream } from './lib/fake-upstream.mjs';
import { RawClient, formatRequest, request } from './lib/raw-http.mjs';
import { withoutKeepalives } from './lib/sse.mjs';
import { useSluice, chat } from './lib/sluice.mjs';

const ctx = useSluice();
const MODEL_IDS = ['*', 'mock-*', 'renamed'];

/* A normal request on a fresh connection: proves sluice is still serving. */
async function stillServing() {
  const r = await request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body: chat('ok', 'still-serving') });
  assert.equal(r.status, 200, `sluice stopped serving: ${r.status} ${r.text}`);
  assert.equal(r.json.choices[0].message.content, 'still-serving#0 still-serving#1 still-serving#2 still-serving#3 still-serving#4 ');
}

function assertModelList(json) {
  assert.equal(json.object, 'list');
  assert.ok(Array.isArray(json.data));
  for (const m of json.data) {
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    assert.equal(m.owned_by, 'sluice');
  }
  assert.deepEqual(json.data.map((m) => m.id).sort(), MODEL_IDS);
}

describe('models endpoint', { timeout: 60_000 }, () => {
  test('GET /v1/models and /api/v1/models list the configured patterns, globs included', async () => {
    for (const path of ['/v1/models', '/api/v1/models']) {
      const r = await request(ctx.sl.url, { path });
      assert.equal(r.status, 200, path);
      assert.match(r.headers['content-type'], /^application\/json/);
      assertModelList(r.json);
    }
  });
});

describe('connections', { timeout: 60_000 }, () => {
  test('100 sequential requests on one keep-alive connection', async () => {
    const rc = await RawClient.connect(ctx.sl.port);
    const logsBefore = ctx.sl.accessLog().length;
    try {
      for (let i = 0; i < 100; i++) {
        const tag = `ka-${i}`;
        if (i % 3 === 0) {
          await rc.write(formatRequest({ method: 'GET', path: i % 2 ? '/api/v1/models' : '/v1/models' }));
          const r = await rc.readResponse(3000);
          assert.equal(r.status, 200, `request ${i}`);
          assertModelList(JSON.parse(r.body));
        } else if (i % 3 === 1) {
          await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', body: chat('chunks:2', tag) }));
          const r = await rc.readResponse(3000);
          assert.equal(r.status, 200, `request ${i}`);
          assert.equal(JSON.parse(r.body).choices[0].message.content, `${tag}#0 ${tag}#1 `);
        } else {
          const body = chat('chunks:3', tag, { stream: true });
          await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', body }));
          const r = await rc.readResponse(3000);
          assert.equal(r.status, 200, `request ${i}`);
          assert.equal(withoutKeepalives(r.body).toString(), expectedClientStream(body), `request ${i}`);
        }
        assert.equal(rc.closed, false, `sluice closed the connection after request ${i}`);
      }
    } finally {
      rc.destroy();
    }
    await ctx.sl.waitUntil(() => ctx.sl.accessLog().length >= logsBefore + 100, 3000, '100 access-log lines');
  });

  test('three pipelined requests in one write are answered in order', async () => {
    const rc = await RawClient.connect(ctx.sl.port);
    const streamBody = chat('chunks:3', 'pipe-2', { stream: true });
    await rc.write(Buffer.concat([
      formatRequest({ method: 'POST', path: '/v1/chat/completions', body: chat('slow-first:300', 'pipe-1') }),
      formatRequest({ method: 'POST', path: '/v1/chat/completions', body: streamBody }),
      formatRequest({ method: 'GET', path: '/v1/models' }),
    ]));
    const a = await rc.readResponse(5000);
    const b = await rc.readResponse(5000);
    const c = await rc.readResponse(5000);
    rc.destroy();
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(a.body).choices[0].message.content.startsWith('pipe-1#0'), true, `first answer: ${a.body}`);
    assert.equal(b.status, 200);
    assert.equal(withoutKeepalives(b.body).toString(), expectedClientStream(streamBody));
    assert.equal(c.status, 200);
    assertModelList(JSON.parse(c.body));
  });

  test('Connection: close is honoured: the answer, then the server closes', async () => {
    const rc = await RawClient.connect(ctx.sl.port);
    await rc.write(formatRequest({ method: 'GET', path: '/v1/models', headers: { connection: 'close' } }));
    const r = await rc.readResponse(3000);
    assert.equal(r.status, 200);
    await rc.waitClose(2000);
    rc.destroy();
  });

  test('a chunked request body is read whole and sent upstream intact', async () => {
    const body = chat('chunks:2', 'chunked-upload', { temperature: 0.5 });
    const text = Buffer.from(JSON.stringify(body));
    const third = Math.ceil(text.length / 3);
    const parts = [0, 1, 2].map((i) => text.subarray(i * third, (i + 1) * third));
    const rc = await RawClient.connect(ctx.sl.port);
    await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }));
    for (const p of parts) await rc.write(Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]));
    await rc.write('0\r\n\r\n');
    const r = await rc.readResponse(3000);
    rc.destroy();
    assert.equal(r.status, 200, r.body.toString());
    const rec = await ctx.up.waitForRequest((x) => x.body?.messages?.[0]?.content === 'chunked-upload');
    assert.deepEqual(rec.body, body);
  });
});

describe('misbehaving clients', { concurrency: true, timeout: 60_000 }, () => {
  test('random garbage bytes: a 400, then the close, and sluice keeps serving', async () => {
    let seed = 12345;
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) { seed = (seed * 1103515245 + 12345) & 0x7fffffff; garbage[i] = seed >> 16; }
    for (const bytes of [garbage, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n'),
      Buffer.from('POST /v1/chat/completions HTTP/1.1\r\nContent-Length: banana\r\n\r\n'),
      Buffer.from('\x00\x01\x02\r\n\r\n')]) {
      const rc = await RawClient.connect(ctx.sl.port);
      await rc.write(bytes);
      // Every one of these gets an answer, not just a dropped connection: its status, then
      // the close (sluice does not read on after a request it could not parse).
      const r = await rc.readResponse(6500);
      assert.equal(r.status, 400, `garbage ${JSON.stringify(bytes.subarray(0, 40).toString('latin1'))}: ${r.status}`);
      await rc.waitClose(2000);
      rc.destroy();
    }
    await stillServing();
  });

  test('half a request then close: nothing upstream, sluice keeps serving', async () => {
    const before = ctx.up.count();
    for (const half of ['POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{"model":"ok",',
      'POST /v1/chat/comp', 'GET /v1/models HTTP/1.1\r\nHost: a\r\n']) {
      const rc = await RawClient.connect(ctx.sl.port);
      await rc.write(half);
      rc.destroy();
    }
    await stillServing();
    const others = ctx.up.requests.slice(before).filter((r) => r.body?.messages?.[0]?.content !== 'still-serving');
    assert.deepEqual(others.map((r) => r.rawBody.toString()), [], 'an incomplete request reached the upstream');
  });

  test('a request head trickled one byte per 50 ms is answered; others are served meanwhile', async () => {
    const rc = await RawClient.connect(ctx.sl.port);
    const trickling = rc.trickle('GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n', 50);
    for (let i = 0; i < 5; i++) {
      const r = await request(ctx.sl.url, { path: '/v1/models' });
      assert.equal(r.status, 200);
      assert.ok(r.ms < 1000, `a normal request took ${r.ms} ms while a client trickled`);
    }
    assert.equal(await trickling, true, 'sluice closed the trickling connection');
    const r = await rc.readResponse(3000);
    rc.destroy();
    assert.equal(r.status, 200);
    assertModelList(JSON.parse(r.body));
  });

  test('a head not complete within client_header (5 s) gets a 408, then the close', async () => {
    const t0 = performance.now();
    const rc = await RawClient.connect(ctx.sl.port);
    await rc.write('GET /v1/models HTTP/1.1\r\nHost: a\r\n');
    const closedAt = await rc.waitClose(9000);
    const ms = closedAt - t0;
    assert.ok(ms >= 4000 && ms < 8000, `closed after ${ms} ms (client_header 5s)`);
    // A request that had begun is told why it is dropped (conn.c on_deadline).
    assert.match(rc.buf.toString('latin1'), /^HTTP\/1\.1 408 /, `before the close: ${JSON.stringify(rc.buf.subarray(0, 80).toString('latin1'))}`);
    rc.destroy();
  });
});

ctx.testCleanExit();
