// Connection reuse after an in-stream error (DESIGN §3.6): a stream that fails after it started
// ends with the dialect's error event and a properly terminated chunked body, and the
// connection stays usable, so pooled clients (the openai SDK with keep-alive, maxRetries 0)
// never send their next request onto a socket sluice closed without saying so. Where sluice
// must close (HTTP/1.0, no chunked framing) the response head says `Connection: close`.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI5 from 'openai';
import OpenAI4 from 'openai4';
import OpenAI6 from 'openai6';
import { RawClient, formatRequest } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat } from './lib/sluice.mjs';
import { contentPieces } from './lib/fake-upstream.mjs';
import { uid } from './lib/dialects.mjs';

const ctx = useSluice((up) => {
  const cfg = baseConfig({ upstreamPort: up.port, workers: 1, timeouts: { idle: '300ms', keepalive: '5s' } });
  cfg.dialects = { chat: { model: 'drop-mid:2', auth: 'none' } };
  return cfg;
});

const streamReq = (model, rid) => formatRequest({
  method: 'POST', path: '/v1/chat/completions', headers: { 'x-request-id': rid },
  body: chat(model, rid, { stream: true }),
});
const plainReq = (rid) => formatRequest({
  method: 'POST', path: '/v1/chat/completions', headers: { 'x-request-id': rid }, body: chat('ok', rid),
});

/* The SSE data payloads of a chunked response body. */
const datas = (text) => text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));

describe('one connection after an in-stream error (raw HTTP/1.1)', { timeout: 30_000 }, () => {
  for (const [label, model] of [['the upstream drops', 'drop-mid:2'], ['the upstream stalls (idle timeout)', 'stall:2']]) {
    test(`${label}: the error event ends a well-framed body; the next request on the socket is answered`, async () => {
      const rc = await RawClient.connect(ctx.sl.port);
      try {
        for (let i = 0; i < 3; i++) {
          const rid = uid('reuse');
          rc.write(streamReq(model, rid));
          const r = await rc.readResponse(5000);
          assert.equal(r.status, 200);
          assert.notEqual(r.headers.connection, 'close', 'a framed stream does not need to close');
          const d = datas(r.body.toString('utf8'));
          assert.ok(!d.includes('[DONE]'), 'no [DONE] after a failure');
          assert.ok(JSON.parse(d.at(-1)).error, `ends with an error event: ${d.at(-1)}`);
          const rid2 = uid('after');
          rc.write(plainReq(rid2));
          const r2 = await rc.readResponse(5000);
          assert.equal(r2.status, 200, 'the same connection serves the next request');
          assert.equal(JSON.parse(r2.body.toString('utf8')).choices[0].message.content, contentPieces(chat('ok', rid2)).join(''));
        }
        assert.equal(rc.closed, false, 'still open');
      } finally {
        rc.destroy();
      }
    });
  }

  test('seed dialect (chat): its error event, then the connection serves the next request', async () => {
    const rc = await RawClient.connect(ctx.sl.port);
    try {
      rc.write(formatRequest({ method: 'POST', path: '/api/chat/stream/', body: { message: uid('seed') } }));
      const r = await rc.readResponse(5000);
      assert.equal(r.status, 200);
      const events = datas(r.body.toString('utf8')).map((x) => JSON.parse(x));
      assert.equal(events.at(-1).type, 'error', JSON.stringify(events.at(-1)));
      rc.write(plainReq(uid('seed-after')));
      assert.equal((await rc.readResponse(5000)).status, 200);
    } finally {
      rc.destroy();
    }
  });

  test('HTTP/1.0 has no chunked framing: the head says Connection: close, then sluice closes', async () => {
    const rc = await RawClient.connect(ctx.sl.port);
    const body = JSON.stringify(chat('drop-mid:2', 'one-oh', { stream: true }));
    rc.write(`POST /v1/chat/completions HTTP/1.0\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await rc.waitClose(5000);
    const text = rc.buf.toString('utf8');
    assert.match(text, /^HTTP\/1\.0 200/);
    assert.match(text, /\r\nConnection: close\r\n/i, 'the close is announced in the head');
  });
});

/* Each SDK, keep-alive, no retries: a failed stream, then an ordinary request, five times. */
const sdks = [
  ['openai 4.x (node:http agent, keep-alive)', () => new OpenAI4({
    apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000,
    httpAgent: new http.Agent({ keepAlive: true, maxSockets: 1 }),
  })],
  ['openai 5.x (fetch, keep-alive)', () => new OpenAI5({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 })],
  ['openai 6.x (fetch, keep-alive)', () => new OpenAI6({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 })],
];

describe('pooled SDK clients, maxRetries 0', { timeout: 60_000 }, () => {
  for (const [label, make] of sdks) {
    test(`${label}: the request after a failed stream never meets a dead socket`, async () => {
      const client = make();
      for (let i = 0; i < 5; i++) {
        const stream = await client.chat.completions.create({ ...chat('drop-mid:2', uid('sdk')), stream: true });
        let text = '';
        await assert.rejects(async () => {
          for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
        }, (e) => e instanceof Error && !/socket hang up|ECONNRESET|terminated|other side closed/i.test(String(e.message)),
        'the stream fails with the error event');
        assert.ok(text.length > 0, 'the chunks before the drop arrived');
        const tag = uid('sdk-next');
        const r = await client.chat.completions.create(chat('ok', tag));
        assert.equal(r.choices[0].message.content, contentPieces(chat('ok', tag)).join(''), `round ${i + 1}`);
      }
    });
  }
});

ctx.testCleanExit();
