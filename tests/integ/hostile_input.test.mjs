// Hostile input at the socket: clients that pipeline without reading, heads that try to shift
// or smuggle header fields (NUL bytes, trailers, obs-fold), heads without a Host, targets too
// long, requests pipelined after Connection: close, and heads that never finish. Each gets a
// clear status or a close, sluice's memory stays bounded, and it keeps serving.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { RawClient, formatRequest, request } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat } from './lib/sluice.mjs';
import { pollUntilSteady } from './lib/poll.mjs';

const ctx = useSluice((up) => baseConfig({ upstreamPort: up.port, timeouts: { client_header: '600ms' } }));
const MiB = 1024 * 1024;

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

async function stillServing() {
  const r = await request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body: chat('mock-x', 'alive') });
  assert.equal(r.status, 200, `sluice stopped serving: ${r.status} ${r.text}`);
}

/* Sends raw bytes on a fresh connection and reads one response (and whether the server closed). */
async function exchange(bytes, { closeWithin = 3000 } = {}) {
  const rc = await RawClient.connect(ctx.sl.port);
  try {
    await rc.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1'));
    const r = await rc.readResponse(5000);
    let closed = false;
    try { await rc.waitClose(closeWithin); closed = true; } catch { /* still open */ }
    return { r, closed, rest: rc.buf };
  } finally {
    rc.destroy();
  }
}

describe('a client that pipelines without reading', { timeout: 90_000 }, () => {
  test('sluice stops parsing at its high-water mark; memory stays bounded; every answer arrives in order', async () => {
    // Each GET / answers the ~3 KiB page: unthrottled, 20,000 of them queue 60 MiB of output.
    const n = 20000;
    const reqs = [];
    for (let i = 0; i < n; i++) reqs.push(formatRequest({ path: '/', headers: { 'x-request-id': `pipe-${i}` } }));
    const bytes = Buffer.concat(reqs);
    const logsBefore = ctx.sl.accessLog().length;
    const rssBefore = rssBytes(ctx.sl.pid);
    const rc = await RawClient.connect(ctx.sl.port);
    rc.pause();
    try {
      rc.sock.write(bytes); // no await: the kernel and node hold what sluice does not read
      const answered = await pollUntilSteady(() => ctx.sl.accessLog().length, { quietMs: 600, timeoutMs: 8000, what: 'the access log to stop growing' }) - logsBefore;
      const grown = rssBytes(ctx.sl.pid) - rssBefore;
      const allowed = (process.env.SLUICE_SANITIZED ? 48 : 12) * MiB;
      assert.ok(grown < allowed, `sluice grew by ${(grown / MiB).toFixed(1)} MiB for a client that reads nothing`);
      assert.ok(answered < n, `all ${n} pipelined requests were answered to a client that reads nothing`);
      await stillServing(); // the held connection stalls nobody else

      rc.resume();
      for (let i = 0; i < n; i++) {
        const r = await rc.readResponse(15000);
        assert.equal(r.status, 200, `response ${i}`);
        assert.equal(r.headers['x-request-id'], `pipe-${i}`, `response ${i} out of order`);
      }
      assert.equal(rc.buf.length, 0, 'bytes beyond the answers');
    } finally {
      rc.destroy();
    }
  });
});

describe('header fields that would shift or be smuggled', { concurrency: true, timeout: 60_000 }, () => {
  test('a NUL at the start of a header value is a 400, never a shifted pair', async () => {
    const head = 'GET /healthz HTTP/1.1\r\nHost: a\r\nX-Foo: \0x-request-id\r\nChosen-By-Client: v\r\n\r\n';
    const { r, closed } = await exchange(head);
    assert.equal(r.status, 400);
    assert.notEqual(r.headers['x-request-id'], 'chosen-by-client');
    assert.match(JSON.parse(r.body).error.message, /control character/);
    assert.ok(closed, 'the connection was not closed after an unusable head');
  });

  test('a control byte inside a header value is a 400', async () => {
    for (const v of ['ab\x01cd', 'ab\x7fcd', 'a\0b']) {
      const { r } = await exchange(`GET /healthz HTTP/1.1\r\nHost: a\r\nX-Foo: ${v}\r\n\r\n`);
      assert.equal(r.status, 400, JSON.stringify(v));
    }
  });

  test('trailer fields of a chunked body never become request headers', async () => {
    const body = JSON.stringify(chat('mock-x', 'trailer'));
    // Trailers once slid in one pair out of step: "a" became a value, "x-request-id" a name.
    const head = 'POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n'
      + 'Transfer-Encoding: chunked\r\n\r\n'
      + `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\nA: x-request-id\r\nInjected-From-Trailer: v\r\n`
      + 'X-Request-Id: from-trailer\r\n\r\n';
    const rc = await RawClient.connect(ctx.sl.port);
    try {
      await rc.write(Buffer.from(head));
      const r = await rc.readResponse(5000);
      assert.equal(r.status, 200, r.body);
      assert.match(r.headers['x-request-id'], /^req_/, 'the request id came from a trailer');
      // The connection is still good for the next request.
      await rc.write(formatRequest({ path: '/healthz', headers: { 'x-request-id': 'after-trailer' } }));
      const r2 = await rc.readResponse(3000);
      assert.equal(r2.status, 200);
      assert.equal(r2.headers['x-request-id'], 'after-trailer');
    } finally {
      rc.destroy();
    }
  });

  test('obs-fold is a 400 and a close: a folded Transfer-Encoding cannot smuggle a second request', async () => {
    const smuggled = 'GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-Id: smuggled\r\n\r\n';
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: ${smuggled.length}\r\n`
      + 'Transfer-Encoding:\r\n chunked\r\n\r\n' + smuggled;
    const logsBefore = ctx.sl.accessLog().length;
    const { r, closed, rest } = await exchange(head);
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error.message, /folding/);
    assert.match(r.headers.connection ?? '', /close/i);
    assert.ok(closed, 'the connection was not closed after obs-fold');
    assert.equal(rest.length, 0, `a second response followed: ${rest.toString('latin1').slice(0, 80)}`);
    await ctx.sl.waitForLog((l) => l.status === 400 && l.path === '/v1/chat/completions', 3000, 'the 400 line');
    assert.ok(!ctx.sl.accessLog().slice(logsBefore).some((l) => l.request_id === 'smuggled'), 'the smuggled request was served');
  });

  test('a folded line anywhere in the head is refused', async () => {
    const { r } = await exchange('GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n');
    assert.equal(r.status, 400);
  });

  test('HTTP/1.1 without Host, or with two, is a 400; HTTP/1.0 without one is served', async () => {
    for (const h of ['GET /healthz HTTP/1.1\r\n\r\n', 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n']) {
      const { r, closed } = await exchange(h);
      assert.equal(r.status, 400, JSON.stringify(h));
      assert.match(JSON.parse(r.body).error.message, /Host/);
      assert.ok(closed);
    }
    const { r } = await exchange('GET /healthz HTTP/1.0\r\n\r\n');
    assert.equal(r.status, 200);
  });

  test('a target longer than the header limit is a 414, not a 431', async () => {
    const { r } = await exchange(`GET /v1/models?pad=${'a'.repeat(17 * 1024)} HTTP/1.1\r\nHost: a\r\n\r\n`);
    assert.equal(r.status, 414);
    assert.equal(JSON.parse(r.body).error.type, 'invalid_request_error');
    const big = await exchange(`GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(17 * 1024)}\r\n\r\n`);
    assert.equal(big.r.status, 431);
  });
});

describe('connection endings', { concurrency: true, timeout: 60_000 }, () => {
  test('requests pipelined after Connection: close are not answered', async () => {
    const bytes = Buffer.concat([
      formatRequest({ path: '/healthz', headers: { connection: 'close', 'x-request-id': 'last-one' } }),
      formatRequest({ path: '/healthz', headers: { 'x-request-id': 'after-close' } }),
      formatRequest({ path: '/v1/models', headers: { 'x-request-id': 'after-close-2' } }),
    ]);
    const { r, closed, rest } = await exchange(bytes);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-request-id'], 'last-one');
    assert.match(r.headers.connection ?? '', /close/i);
    assert.ok(closed, 'the connection stayed open');
    assert.equal(rest.length, 0, `answered after Connection: close: ${rest.toString('latin1').slice(0, 80)}`);
    assert.ok(!ctx.sl.accessLog().some((l) => l.request_id?.startsWith('after-close')));
  });

  test('a head not complete within client_header gets a 408 with a request id', async () => {
    const rc = await RawClient.connect(ctx.sl.port);
    try {
      await rc.write('GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ');
      const r = await rc.readResponse(5000);
      assert.equal(r.status, 408);
      assert.match(r.headers['x-request-id'] ?? '', /^req_/, 'the 408 carries no request id');
      assert.equal(JSON.parse(r.body).error.code, 'request_timeout');
      assert.match(r.headers.connection ?? '', /close/i);
      await rc.waitClose(4000);
    } finally {
      rc.destroy();
    }
    await stillServing();
  });
});

ctx.testCleanExit();
