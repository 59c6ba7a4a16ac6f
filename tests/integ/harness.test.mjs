// The test harness itself, against the fake upstream directly (no sluice): the scenarios
// produce what the other tests expect, the official SDK accepts them, and the upstream's log
// sees a client leave. If these fail, every sluice result is suspect.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFakeUpstream, expectedClientStream, expectedPrefix, TOOL_CALLS, usageFor, RETRY_AFTER } from './lib/fake-upstream.mjs';
import { openStream, dataPayloads, parseSSE, SSEParser } from './lib/sse.mjs';
import { RawClient, formatRequest, parseResponse, request } from './lib/raw-http.mjs';
import { toYAML, chat } from './lib/sluice.mjs';

let up;
let sdk;
before(async () => {
  up = await startFakeUpstream();
  sdk = new OpenAI({ apiKey: 'sk-direct', baseURL: up.baseURL, maxRetries: 0, timeout: 5000 });
});
after(async () => { await up?.close(); });

describe('fake upstream, directly', { timeout: 60_000 }, () => {
  test('streams exactly what expectedClientStream computes, usage only when asked', async () => {
    const body = chat('chunks:4', 'abc', { stream: true });
    const s = openStream(`${up.baseURL}/chat/completions`, body);
    await s.done;
    assert.equal(s.status, 200);
    assert.equal(s.text(), expectedClientStream(body));
    const p = dataPayloads(s.events);
    assert.deepEqual(p[0].choices[0].delta, { role: 'assistant', content: '', refusal: null });
    assert.equal(p.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'abc#0 abc#1 abc#2 abc#3 ');
    assert.equal(p.at(-1).choices[0].finish_reason, 'stop');
    assert.equal(s.events.at(-1).data, '[DONE]');

    const withUsage = { ...body, stream_options: { include_usage: true } };
    const s2 = openStream(`${up.baseURL}/chat/completions`, withUsage);
    await s2.done;
    assert.equal(s2.text(), expectedClientStream(withUsage));
    const last = dataPayloads(s2.events).at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, usageFor(withUsage, 4));
  });

  test('chunks:N:GAP spaces the content chunks', async () => {
    const s = openStream(`${up.baseURL}/chat/completions`, chat('chunks:4:60', 'x', { stream: true }));
    await s.done;
    const t = s.events.filter((e) => e.json?.choices?.[0]?.delta?.content).map((e) => e.t);
    assert.equal(t.length, 4);
    for (let i = 1; i < t.length; i++) assert.ok(t[i] - t[i - 1] >= 45, `gap ${i}: ${t[i] - t[i - 1]} ms`);
  });

  test('the official SDK accepts the stream, the tool calls and the non-streaming answer', async () => {
    let text = '';
    for await (const c of await sdk.chat.completions.create({ ...chat('ok', 'sdk'), stream: true })) {
      text += c.choices[0]?.delta?.content ?? '';
    }
    assert.equal(text, 'sdk#0 sdk#1 sdk#2 sdk#3 sdk#4 ');

    const runner = sdk.chat.completions.stream({ ...chat('tools', 'weather?'), stream_options: { include_usage: true } });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(final.choices[0].message.tool_calls.map((tc) => [tc.id, tc.function.name, tc.function.arguments]),
      TOOL_CALLS.map((tc) => [tc.id, tc.name, tc.arguments]));
    assert.equal(final.usage.completion_tokens, 23);

    const c = await sdk.chat.completions.create(chat('chunks:2', 'ns'));
    assert.equal(c.choices[0].message.content, 'ns#0 ns#1 ');
    assert.equal(c.usage.completion_tokens, 2);
  });

  test('split-utf8 arrives in pieces that cut characters, and reassembles', async () => {
    const body = chat('split-utf8', 'u', { stream: true });
    const s = openStream(`${up.baseURL}/chat/completions`, body);
    await s.done;
    assert.ok(s.chunkTimes.length > 10, `only ${s.chunkTimes.length} reads`);
    assert.equal(s.text(), expectedClientStream(body));
    assert.equal(dataPayloads(s.events).map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'héllo 世界 🌊🚀 ñandú 数据流 ✓');
  });

  test('status-429 carries Retry-After and an OpenAI error body', async () => {
    const r = await request(up.baseURL, { method: 'POST', path: '/v1/chat/completions', body: chat('status-429') });
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], RETRY_AFTER);
    assert.equal(r.json.error.type, 'rate_limit_error');
  });

  test('drop-mid sends its prefix then the socket dies; the log marks it dropped, not cancelled', async () => {
    const body = chat('drop-mid:2', 'd', { stream: true });
    const s = openStream(`${up.baseURL}/chat/completions`, body);
    await s.done;
    assert.equal(s.text(), expectedPrefix(body));
    assert.equal(s.ended, false);
    const rec = await up.waitForRequest((r) => r.body.model === 'drop-mid:2' && r.closed);
    assert.equal(rec.dropped, true);
    assert.equal(rec.closedEarly, false);
  });

  test('the log sees a client leave a hanging request at once', async () => {
    const from = up.count();
    const s = openStream(`${up.baseURL}/chat/completions`, chat('hang', 'h', { stream: true }));
    await up.waitForRequest((r) => r.body.model === 'hang', 2000, from);
    s.destroy();
    const rec = await up.waitFor((rs) => rs.slice(from).find((r) => r.closed), 1000, 'close');
    assert.equal(rec.closedEarly, true);
    assert.ok(rec.closedAt - s.destroyedAt < 200, `noticed after ${rec.closedAt - s.destroyedAt} ms`);
  });

  test('echo returns the request it received', async () => {
    const c = await sdk.chat.completions.create({ ...chat('echo', 'e'), temperature: 0.5 });
    const info = JSON.parse(c.choices[0].message.content);
    assert.equal(info.headers.authorization, 'Bearer sk-direct');
    assert.equal(info.body.temperature, 0.5);
  });

  test('raw client: pipelined requests and chunked responses parse in order', async () => {
    const rc = await RawClient.connect(up.port);
    await rc.write(Buffer.concat([
      formatRequest({ method: 'POST', path: '/v1/chat/completions', body: chat('chunks:1', 'p1', { stream: true }) }),
      formatRequest({ method: 'POST', path: '/v1/chat/completions', body: chat('chunks:1', 'p2') }),
    ]));
    const a = await rc.readResponse();
    const b = await rc.readResponse();
    rc.destroy();
    assert.equal(a.headers['transfer-encoding'], 'chunked');
    assert.equal(a.body.toString(), expectedClientStream(chat('chunks:1', 'p1', { stream: true })));
    assert.equal(JSON.parse(b.body).choices[0].message.content, 'p2#0 ');
  });
});

describe('parsers', { timeout: 60_000 }, () => {
  test('SSE parser: CRLF, CR, multi-line data, comments, split at every offset', () => {
    const text = ': hi\r\ndata: a\r\ndata: b\r\n\r\nevent: x\rdata: c\r\rdata:d\n\n';
    const want = [{ type: 'comment', data: 'hi' }, { type: 'data', data: 'a\nb', event: null, id: null },
      { type: 'data', data: 'c', event: 'x', id: null }, { type: 'data', data: 'd', event: null, id: null }];
    assert.deepEqual(parseSSE(text), want);
    for (let i = 0; i <= text.length; i++) {
      const p = new SSEParser();
      assert.deepEqual([...p.feed(text.slice(0, i)), ...p.feed(text.slice(i))], want, `split at ${i}`);
    }
  });

  test('HTTP response parser: incomplete, content-length, chunked with trailers', () => {
    assert.equal(parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab')), null);
    const buf = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1;x=y\r\nc\r\n0\r\nT: 1\r\n\r\nNEXT');
    const r = parseResponse(buf);
    assert.equal(r.body.toString(), 'abc');
    assert.equal(r.consumed, buf.indexOf('NEXT'));
    assert.equal(parseResponse(Buffer.from('HTTP/1.1 100 Continue\r\n\r\n')).status, 100);
  });

  test('YAML emitter quotes globs and keeps durations plain', () => {
    assert.equal(toYAML({ models: { 'mock-*': [{ provider: 'mock' }] }, t: { a: '2s' } }),
      'models:\n  "mock-*":\n    - provider: mock\nt:\n  a: 2s');
  });
});
