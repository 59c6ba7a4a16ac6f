// Cancel on disconnect (DESIGN §3.4): whenever the client goes away — before headers, before
// the first token, mid-stream, or while waiting for a non-streaming answer — sluice closes the
// upstream connection at once (the fake upstream sees its socket close within 500 ms, before it
// finished writing), logs the request as cancelled, and keeps serving.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import OpenAI from 'openai';
import { expectedClientStream } from './lib/fake-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { RawClient, formatRequest } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat } from './lib/sluice.mjs';

const ctx = useSluice((up) => baseConfig({
  upstreamPort: up.port,
  providers: { slowmock: { type: 'mock', ttft: '50ms', tokens_per_s: 20, tokens: 200 } },
  models: { 'slowmock-*': [{ provider: 'slowmock' }] },
}));

const url = () => `${ctx.sl.url}/v1/chat/completions`;
const byTag = (tag) => (r) => r.body?.messages?.[0]?.content === tag;

/* Asserts the upstream request tagged `tag` saw its socket close early, soon after goneAt. */
async function assertUpstreamCancelled(tag, goneAt) {
  const rec = await ctx.up.waitFor((rs) => rs.find((r) => byTag(tag)(r) && r.closed), 1500,
    `the upstream socket of "${tag}" to close`);
  assert.equal(rec.closedEarly, true, 'the upstream connection must close before the answer was complete');
  assert.equal(rec.finished, false);
  const ms = rec.closedAt - goneAt;
  assert.ok(ms < 500, `upstream closed ${ms.toFixed(0)} ms after the client left`);
  return rec;
}

describe('client disconnects', { timeout: 60_000 }, () => {
  test('before the response headers: the upstream is closed at once', async () => {
    const tag = 'gone-before-headers';
    const s = openStream(url(), chat('hang', tag, { stream: true }));
    await ctx.up.waitForRequest(byTag(tag), 3000);
    assert.equal(s.status, null, 'headers came before the upstream answered (keepalive is 500 ms)');
    s.destroy();
    await assertUpstreamCancelled(tag, s.destroyedAt);
    const line = await ctx.sl.waitForLog((l) => l.model === 'hang' && l.stream === true, 3000, 'the log line');
    assert.equal(line.cancelled, true);
  });

  test('before the first token: the upstream is closed at once', async () => {
    const tag = 'gone-before-token';
    const s = openStream(url(), chat('stall:0', tag, { stream: true }));
    await s.waitFor((x) => x.status === 200 && x.dataEvents().length >= 1, 3000, 'headers and the role chunk');
    assert.equal(s.dataEvents()[0].json.choices[0].delta.role, 'assistant');
    s.destroy();
    await assertUpstreamCancelled(tag, s.destroyedAt);
  });

  test('mid-stream: the upstream is closed before it finished, the log says cancelled', async () => {
    const tag = 'gone-mid-stream';
    const body = chat('chunks:200:20', tag, { stream: true });
    const s = openStream(url(), body);
    await s.waitFor((x) => x.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length >= 3, 3000, 'three content chunks');
    assert.ok(expectedClientStream(body).startsWith(s.body().slice(0, s.body().lastIndexOf('\n\n') + 2)), 'bytes so far must be exact');
    s.destroy();
    const rec = await assertUpstreamCancelled(tag, s.destroyedAt);
    assert.ok(rec.bytesWritten < expectedClientStream(body).length / 2);
    const line = await ctx.sl.waitForLog((l) => l.model === 'chunks:200:20', 3000, 'the log line');
    assert.equal(line.cancelled, true);
    assert.equal(line.status, 200);
    assert.equal(line.stream, true);
    // The upstream never sent usage: sluice estimates what the client got.
    assert.equal(line.usage_estimated, true);
    assert.ok(line.completion_tokens > 0, `completion_tokens ${line.completion_tokens}`);
  });

  test('while waiting for a non-streaming answer: the upstream is closed at once', async () => {
    const tag = 'gone-waiting-plain';
    const rc = await RawClient.connect(ctx.sl.port);
    await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', body: chat('hang', tag) }));
    await ctx.up.waitForRequest(byTag(tag), 3000);
    const goneAt = performance.now();
    rc.destroy();
    await assertUpstreamCancelled(tag, goneAt);
    const line = await ctx.sl.waitForLog((l) => l.model === 'hang' && l.stream === false, 3000, 'the log line');
    assert.equal(line.cancelled, true);
  });

  test('a client that resets the connection (RST) mid-stream cancels too', async () => {
    const tag = 'gone-reset';
    const rc = await RawClient.connect(ctx.sl.port);
    await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', body: chat('chunks:100:30', tag, { stream: true }) }));
    await ctx.up.waitForRequest(byTag(tag), 3000);
    await rc.until(() => rc.unread > 0, 3000, 'the first bytes');
    const goneAt = performance.now();
    rc.sock.resetAndDestroy();
    await assertUpstreamCancelled(tag, goneAt);
  });

  test('the official SDK aborting a stream (AbortController) cancels the upstream', async () => {
    const tag = 'gone-sdk-abort';
    const sdk = new OpenAI({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 });
    const ac = new AbortController();
    const stream = await sdk.chat.completions.create({ ...chat('chunks:200:20', tag), stream: true }, { signal: ac.signal });
    let n = 0;
    let goneAt;
    try {
      for await (const c of stream) {
        if (c.choices[0]?.delta?.content && ++n === 2) { goneAt = performance.now(); ac.abort(); break; }
      }
    } catch (e) {
      if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
    }
    assert.equal(n, 2, 'the stream ended before two content chunks');
    await assertUpstreamCancelled(tag, goneAt);
  });

  test('a mock stream cancelled mid-way is logged as cancelled with partial tokens', async () => {
    const s = openStream(url(), chat('slowmock-cancel', 'x', { stream: true }));
    await s.waitFor((x) => x.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length >= 3, 3000, 'three mock tokens');
    s.destroy();
    const line = await ctx.sl.waitForLog((l) => l.model === 'slowmock-cancel', 3000, 'the mock log line');
    assert.equal(line.cancelled, true);
    assert.equal(line.provider, 'slowmock');
    assert.ok(line.completion_tokens >= 3 && line.completion_tokens < 200, `completion_tokens ${line.completion_tokens}`);
    assert.ok(line.total_ms < 2000, `the log line came ${line.total_ms} ms in: the mock kept going after the client left`);
  });

  test('after all that, streams still work byte-exact', async () => {
    const body = chat('chunks:5', 'after-cancels', { stream: true });
    const s = await openStream(url(), body).finished();
    assert.equal(s.body(), expectedClientStream(body));
    assert.equal(ctx.up.requests.filter((r) => !r.closed && !r.finished && r.bodyComplete).length, 0,
      `upstream requests left open: ${ctx.up.requests.filter((r) => !r.closed && !r.finished).map((r) => r.body?.messages?.[0]?.content)}`);
  });
});

ctx.testCleanExit();
