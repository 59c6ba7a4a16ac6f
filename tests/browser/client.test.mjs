// clients/js/src/sluice-client.js in node (node 20 has fetch and web streams): its SSE parser against
// every split of a tricky stream, its chunk decoding for each dialect, streamChat against a
// real sluice (OpenAI and seed 003 endpoints, HTTP and in-stream errors), the useAIStream hook
// (seed 003's contract) under a minimal React, and the copy sluice serves at /sluice-client.js.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createSSEParser, parseChunk, streamChat, useAIStream, SluiceError } from '../../clients/js/src/sluice-client.js';
import { useSluice } from '../integ/lib/sluice.mjs';
import { browserConfig, mockAnswer } from './lib/config.mjs';
import { renderHook } from './lib/mini-react.mjs';

const ctx = useSluice((up) => browserConfig(up));
const url = (p) => `${ctx.sl.url}${p}`;

function parseAll(pieces) {
  const out = [];
  const feed = createSSEParser((ev) => out.push(ev));
  for (const p of pieces) feed(p);
  return out;
}

/* Bounded wait for a condition (no sleeps as synchronisation). */
async function until(fn, ms, label) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('SSE parser', () => {
  const stream = '\uFEFF: keepalive\n\ndata: {"a":1}\r\n\r\nevent: x\rdata: one\rdata: two\r\rid: 7\ndata:\n\ndata:  lead\n\ndata: é世🌊\n\n';
  const expected = [
    { event: 'message', data: '{"a":1}', id: '' },
    { event: 'x', data: 'one\ntwo', id: '' },
    { event: 'message', data: '', id: '7' },
    { event: 'message', data: ' lead', id: '7' },
    { event: 'message', data: 'é世🌊', id: '7' },
  ];

  test('whole stream: \\n, \\r\\n, \\r, comments, multi-line data, id, BOM', () => {
    assert.deepEqual(parseAll([stream]), expected);
  });

  test('split at every offset, and one character at a time, gives the same events', () => {
    for (let i = 0; i <= stream.length; i++) {
      assert.deepEqual(parseAll([stream.slice(0, i), stream.slice(i)]), expected, `split at ${i}`);
    }
    assert.deepEqual(parseAll([...stream]), expected);
  });

  test('an unterminated last event is not dispatched', () => {
    assert.deepEqual(parseAll(['data: a\n\ndata: b\n']), [{ event: 'message', data: 'a', id: '' }]);
  });
});

describe('parseChunk: every dialect', () => {
  test('OpenAI chunks, [DONE], usage chunk, error event', () => {
    assert.deepEqual(parseChunk('{"choices":[{"index":0,"delta":{"content":"hi"}}]}'), { content: 'hi' });
    assert.deepEqual(parseChunk('{"choices":[{"index":0,"delta":{"role":"assistant"}}]}'), {});
    assert.deepEqual(parseChunk('{"choices":[],"usage":{"completion_tokens":3}}'), {});
    assert.deepEqual(parseChunk('[DONE]'), { done: true });
    assert.deepEqual(parseChunk('{"error":{"message":"boom","type":"server_error","code":"x"}}'),
      { error: { message: 'boom', type: 'server_error', code: 'x' }, done: true });
  });

  test('seed 003 {content, done}, seed 000 {type}, garbage', () => {
    assert.deepEqual(parseChunk('{"content":"a","done":false}'), { content: 'a' });
    assert.deepEqual(parseChunk('{"done":true}'), { done: true });
    assert.deepEqual(parseChunk('{"error":"nope","done":true}'), { error: { message: 'nope', type: null, code: null }, done: true });
    assert.deepEqual(parseChunk('{"type":"chunk","content":"b"}'), { content: 'b' });
    assert.deepEqual(parseChunk('{"type":"end","complete_response":"b"}'), { done: true });
    assert.deepEqual(parseChunk('{"type":"error","error":"bad"}').error.message, 'bad');
    assert.deepEqual(parseChunk('not json'), {});
  });
});

describe('streamChat against sluice', { timeout: 30_000 }, () => {
  test('OpenAI endpoint: deltas arrive one by one and add up to the answer', async () => {
    const full = await mockAnswer(ctx.sl);
    const deltas = [];
    const text = await streamChat({
      url: url('/v1/chat/completions'),
      body: { model: 'any', messages: [{ role: 'user', content: 'hi' }] },
      onChunk: (d, all) => deltas.push([d, all]),
    });
    assert.equal(text, full);
    assert.equal(deltas.length, 30, 'the mock sends 30 tokens');
    assert.equal(deltas.at(-1)[1], full);
  });

  test('seed 003 endpoint (/api/ai-chat/stream): the same answer', async () => {
    const text = await streamChat({ url: url('/api/ai-chat/stream'), body: { message: 'hi', history: [] } });
    assert.equal(text, await mockAnswer(ctx.sl));
  });

  test('an HTTP error rejects with its status and error.message', async () => {
    const e = await streamChat({ url: url('/v1/chat/completions'), body: { model: 'nowhere', messages: [{ role: 'user', content: 'x' }] } })
      .then(() => null, (err) => err);
    assert.ok(e instanceof SluiceError, String(e));
    assert.equal(e.status, 404);
    assert.match(e.message, /nowhere/);
    assert.equal(e.inStream, false);
  });

  test('an in-stream error event rejects, after the chunks before it', async () => {
    const seen = [];
    const e = await streamChat({
      url: url('/v1/chat/completions'),
      body: { model: 'drop-mid:3', messages: [{ role: 'user', content: 'x' }] },
      onChunk: (d) => seen.push(d),
    }).then(() => null, (err) => err);
    assert.ok(e instanceof SluiceError, String(e));
    assert.equal(e.inStream, true);
    assert.ok(e.message.length > 0);
    assert.equal(seen.length, 3);
  });
});

describe('useAIStream (seed 003 contract)', { timeout: 30_000 }, () => {
  const mount = (opts) => renderHook((React) => useAIStream({ endpoint: url('/api/ai-chat/stream'), ...opts }, React));

  test('startStream: isStreaming, text grows, then isComplete with onChunk/onComplete called', async () => {
    const chunks = [];
    let completed = null;
    const h = mount({ onChunk: (c) => chunks.push(c), onComplete: (t) => { completed = t; } });
    const r = h.result;
    assert.deepEqual([r.current.text, r.current.isStreaming, r.current.error, r.current.isComplete], ['', false, null, false]);
    const done = r.current.startStream({ message: 'hi', history: [], sessionId: 's-1' });
    assert.equal(r.current.isStreaming, true);
    const lengths = new Set();
    await until(() => { lengths.add(r.current.text.length); return r.current.isComplete; }, 10_000, 'isComplete');
    const full = await mockAnswer(ctx.sl);
    assert.equal(await done, full);
    assert.equal(r.current.text, full);
    assert.equal(r.current.isStreaming, false);
    assert.equal(r.current.error, null);
    assert.equal(completed, full);
    assert.equal(chunks.join(''), full);
    assert.ok(lengths.size >= 3, `text must grow in steps, saw lengths ${[...lengths]}`);
    h.unmount();
  });

  test('stopStream mid-stream: not streaming, not complete, no error, sluice logs it cancelled', async () => {
    const h = mount({ endpoint: url('/v1/chat/completions') });
    const r = h.result;
    const before = ctx.sl.accessLog().length;
    r.current.startStream({ model: 'slow', messages: [{ role: 'user', content: 'stop-me' }] });
    await until(() => r.current.text.length > 0, 10_000, 'the first token');
    r.current.stopStream();
    const kept = r.current.text;
    assert.equal(r.current.isStreaming, false);
    assert.equal(r.current.isComplete, false);
    assert.equal(r.current.error, null);
    const line = await ctx.sl.waitForLog((l, i) => i >= before && l.model === 'slow', 5000, 'the stopped stream\'s log line');
    assert.equal(line.cancelled, true);
    assert.equal(r.current.text, kept, 'no text after stop');
    h.unmount();
  });

  test('an error: error is the message, onError called, reset clears everything', async () => {
    let reported = null;
    const h = mount({ endpoint: url('/v1/chat/completions'), onError: (e) => { reported = e; } });
    const r = h.result;
    await r.current.startStream({ model: 'nowhere', messages: [{ role: 'user', content: 'x' }] });
    assert.match(r.current.error, /nowhere/);
    assert.equal(reported, r.current.error);
    assert.equal(r.current.isStreaming, false);
    assert.equal(r.current.isComplete, false);
    r.current.reset();
    assert.deepEqual([r.current.text, r.current.isStreaming, r.current.error, r.current.isComplete], ['', false, null, false]);
    h.unmount();
  });

  test('without React it says how to pass it', () => {
    assert.throws(() => useAIStream({}, undefined), /pass React/);
  });
});

test('GET /sluice-client.js serves the embedded copy of clients/js/src/sluice-client.js', async () => {
  const r = await fetch(url('/sluice-client.js'));
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(await r.text(), fs.readFileSync(new URL('../../clients/js/src/sluice-client.js', import.meta.url), 'utf8'));
});

ctx.testCleanExit();
