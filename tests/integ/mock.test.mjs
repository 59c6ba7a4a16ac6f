// The mock provider (ttft 50ms, 200 tokens/s, 20 tokens) on the wire: the chunk shapes real
// clients require (DESIGN "What real clients require"), usage only when asked, the
// non-streaming answer, and tokens that really arrive over time.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openStream, dataPayloads } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat } from './lib/sluice.mjs';
import { assertChunkStream } from './lib/checks.mjs';

const ctx = useSluice(() => baseConfig(), { upstream: false });
const stream = (body, path = '/v1/chat/completions') => openStream(`${ctx.sl.url}${path}`, body).finished(5000);
const contentOf = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

/* Every rule of an OpenAI stream (assertChunkStream), plus what the mock promises: its model
 * name, 20 content deltas, the finish on the last of them, comments only before the first
 * event, usage numbers from its token count; returns the chunks. */
function assertWellFormed(s, model, { usage }) {
  const { chunks, usage: u } = assertChunkStream(s, { model, usage, finish: 'stop', label: model });
  // A loaded machine may delay the first token past the keepalive period: comments are allowed
  // (assertChunkStream: only ": keepalive"), but only before the first event.
  assert.equal(s.text().length - s.body().length, s.comments().length * 13, 'comments only before the first event');
  const withChoice = chunks.filter((c) => c.choices.length);
  const contentIdx = withChoice.map((c, i) => (c.choices[0].delta.content ? i : -1)).filter((i) => i >= 0);
  assert.equal(contentIdx.length, 20, 'tokens: 20 → 20 content deltas');
  assert.equal(contentIdx.at(-1), withChoice.length - 1, 'the last content chunk carries finish_reason stop');
  if (usage) {
    assert.equal(u.completion_tokens, 20);
    assert.ok(u.prompt_tokens > 0, `prompt_tokens ${u.prompt_tokens}`);
  } else {
    assert.equal(u, null);
    assert.ok(chunks.every((c) => !('usage' in c) || c.usage === null), 'no usage unless the client asked');
  }
  return chunks;
}

describe('mock provider', { timeout: 60_000 }, () => {
  test('stream: role first, 20 content deltas, finish_reason stop on the last, [DONE], no usage', async () => {
    const s = await stream(chat('mock-shape', 'hi', { stream: true }));
    const chunks = assertWellFormed(s, 'mock-shape', { usage: false });
    assert.ok(contentOf(chunks).length > 0);
  });

  test('stream with include_usage: a usage chunk with choices: [] before [DONE]', async () => {
    const s = await stream(chat('mock-usage', 'hi', { stream: true, stream_options: { include_usage: true } }));
    assertWellFormed(s, 'mock-usage', { usage: true });
  });

  test('non-streaming: a chat.completion with usage, the same text as the stream', async () => {
    const r = await request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body: chat('mock-plain', 'same') });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    const c = r.json;
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.model, 'mock-plain');
    assert.equal(typeof c.id, 'string');
    assert.equal(typeof c.created, 'number');
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].index, 0);
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.equal(c.usage.completion_tokens, 20);
    assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + 20);
    const s = await stream(chat('mock-plain', 'same', { stream: true }));
    assert.equal(contentOf(dataPayloads(s.events)), c.choices[0].message.content, 'deterministic text');
  });

  test('tokens arrive spread over time (50 ms ttft, 200 tokens/s)', async () => {
    const s = await stream(chat('mock-timing', 'hi', { stream: true }));
    const times = s.events.filter((e) => e.json?.choices?.[0]?.delta?.content).map((e) => e.t);
    assert.equal(times.length, 20);
    const spread = times.at(-1) - times[0];
    assert.ok(spread > 50, `20 tokens arrived within ${spread.toFixed(1)} ms: collected, not streamed`);
    assert.ok(times[0] - s.t0 >= 40, `first token after ${(times[0] - s.t0).toFixed(1)} ms (ttft 50 ms)`);
    assert.ok(new Set(s.chunkTimes.map((t) => Math.round(t / 5))).size > 5, 'the body came in one or two reads');
  });

  test('/api/v1/chat/completions serves the mock too', async () => {
    const s = await stream(chat('mock-api', 'hi', { stream: true }), '/api/v1/chat/completions');
    assertWellFormed(s, 'mock-api', { usage: false });
  });

  test('the access log records the mock stream with its exact usage', async () => {
    await stream(chat('mock-logged', 'hi', { stream: true }));
    const l = await ctx.sl.waitForLog((x) => x.model === 'mock-logged', 3000, 'the log line');
    assert.equal(l.provider, 'mock');
    assert.equal(l.stream, true);
    assert.equal(l.status, 200);
    assert.equal(l.completion_tokens, 20);
    assert.ok(l.prompt_tokens > 0);
    assert.equal(l.cancelled, false);
    assert.ok(l.ttft_ms >= 40 && l.ttft_ms <= l.total_ms, `ttft ${l.ttft_ms} total ${l.total_ms}`);
    assert.ok(l.total_ms >= 90, `total ${l.total_ms} ms for 50 ms + 20 tokens at 200/s`);
  });
});

ctx.testCleanExit();
