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
import { assertChunkStream, assertChunks } from './lib/checks.mjs';
import { pollUntil, assertNever, pollUntilSteady } from './lib/poll.mjs';

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
    assert.equal(s.text(), expectedClientStream(body));
    // The shape a strict client wants (what the byte-exact comparisons through sluice rely on);
    // the fake is not sluice: no SSE header check.
    const { text } = assertChunkStream(s, { headers: false, model: 'chunks:4', label: 'the fake\'s stream' });
    assert.deepEqual(dataPayloads(s.events)[0].choices[0].delta, { role: 'assistant', content: '', refusal: null });
    assert.equal(text, 'abc#0 abc#1 abc#2 abc#3 ');

    const withUsage = { ...body, stream_options: { include_usage: true } };
    const s2 = openStream(`${up.baseURL}/chat/completions`, withUsage);
    await s2.done;
    assert.equal(s2.text(), expectedClientStream(withUsage));
    assertChunkStream(s2, { headers: false, usage: usageFor(withUsage, 4), label: 'the fake\'s stream with usage' });
    assert.deepEqual(dataPayloads(s2.events).at(-1).usage, usageFor(withUsage, 4));
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

// The shared assertions and the poll must be able to fail: each broken stream is rejected,
// for the reason given, and a condition that never holds (or one that appears in a
// must-not window) is an error naming what was waited for.
describe('assertions and polls', { timeout: 60_000 }, () => {
  const body = chat('chunks:3', 'shape', { stream: true });
  const good = expectedClientStream(body);
  const withUsage = { ...body, stream_options: { include_usage: true } };
  const goodUsage = expectedClientStream(withUsage);
  /* The good stream's events, edited by f (which gets and returns the list of data payloads). */
  const edit = (text, f) => {
    const datas = parseSSE(text).filter((e) => e.type === 'data').map((e) => (e.data === '[DONE]' ? '[DONE]' : JSON.parse(e.data)));
    return f(datas).map((d) => `data: ${typeof d === 'string' ? d : JSON.stringify(d)}\n\n`).join('');
  };
  const chunkEdit = (i, g) => (ds) => ds.map((d, j) => (j === (i < 0 ? ds.length + i : i) ? g(structuredClone(d)) : d));

  test('assertChunkStream accepts the fake\'s streams and rejects each broken one', () => {
    assert.equal(assertChunkStream(good).text, 'shape#0 shape#1 shape#2 ');
    assert.deepEqual(assertChunkStream(goodUsage, { usage: true }).usage, usageFor(withUsage, 3));
    assert.deepEqual(assertChunkStream(`: keepalive\n\n${good}`, { model: 'chunks:3' }).toolCalls, []);
    const broken = {
      'no [DONE]': [good.replace('data: [DONE]\n\n', ''), /\[DONE\]/],
      'two [DONE]': [`${good}data: [DONE]\n\n`, /one \[DONE\]/],
      'an event name': [good.replace('data: ', 'event: x\ndata: '), /event/],
      'another comment': [`: hello\n\n${good}`, /keepalive/],
      'not JSON': [good.replace(/^data: \{/, 'data: {x'), /not a JSON chunk/],
      'an error chunk': [edit(good, (ds) => [ds[0], { error: { message: 'x' } }, ...ds.slice(1)]), /error chunk/],
      'a wrong object': [edit(good, chunkEdit(1, (c) => ({ ...c, object: 'chat.completion' }))), /object/],
      'no id': [edit(good, chunkEdit(1, (c) => ({ ...c, id: '' }))), /id/],
      'two ids': [edit(good, chunkEdit(1, (c) => ({ ...c, id: 'other' }))), /one id/],
      'created not an integer': [edit(good, chunkEdit(1, (c) => ({ ...c, created: '1' }))), /created/],
      'no model': [edit(good, chunkEdit(1, (c) => { delete c.model; return c; })), /model/],
      'choices not an array': [edit(good, chunkEdit(1, (c) => ({ ...c, choices: {} }))), /choices/],
      'a choice without index': [edit(good, chunkEdit(1, (c) => { delete c.choices[0].index; return c; })), /index/],
      'two choices': [edit(good, chunkEdit(1, (c) => { c.choices.push({ ...c.choices[0], index: 1 }); return c; })), /one choice/],
      'no finish_reason key': [edit(good, chunkEdit(1, (c) => { delete c.choices[0].finish_reason; return c; })), /finish_reason key/],
      'no role first': [edit(good, chunkEdit(0, (c) => { delete c.choices[0].delta.role; return c; })), /role/],
      'two finish_reasons': [edit(good, chunkEdit(1, (c) => { c.choices[0].finish_reason = 'stop'; return c; })), /exactly one finish_reason/],
      'no finish_reason': [edit(good, (ds) => ds.filter((d, j) => j !== ds.length - 2)), /exactly one finish_reason/],
      'the finish before the end': [edit(good, (ds) => [...ds.slice(0, 1), ds.at(-2), ...ds.slice(1, -2), ds.at(-1)]), /last choice chunk/],
      'another finish_reason': [good, /finish_reason/, { finish: 'length' }],
      'usage nobody asked for': [goodUsage, /nobody asked for/],
      'no usage when asked': [good, /one usage chunk/, { usage: true }],
      'other usage numbers': [goodUsage, /usage/, { usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }],
      'inconsistent usage': [edit(goodUsage, chunkEdit(-2, (c) => { c.usage.total_tokens += 1; return c; })), /total != prompt \+ completion/, { usage: true }],
      'usage before the end': [edit(goodUsage, (ds) => [ds[0], ds.at(-2), ...ds.slice(1, -2), ds.at(-1)]), /usage chunk comes last/, { usage: true }],
      'another model': [good, /model/, { model: 'gpt-4o' }],
    };
    for (const [name, [text, why, opts]] of Object.entries(broken)) {
      assert.throws(() => assertChunkStream(text, opts), why, name);
    }
  });

  test('assertChunks rejects tool-call deltas a client cannot reassemble', () => {
    const toolsBody = chat('tools', 'tools', { stream: true });
    const datas = parseSSE(expectedClientStream(toolsBody)).filter((e) => e.type === 'data' && e.data !== '[DONE]').map((e) => JSON.parse(e.data));
    assert.deepEqual(assertChunks(datas, { finish: 'tool_calls' }).toolCalls, TOOL_CALLS);
    const repeat = structuredClone(datas);
    repeat[2].choices[0].delta.tool_calls[0].id = 'call_again';
    assert.throws(() => assertChunks(repeat, { finish: 'tool_calls' }), /repeats id\/name/);
    const hole = structuredClone(datas);
    for (const c of hole) for (const tc of c.choices[0]?.delta?.tool_calls ?? []) if (tc.index === 1) tc.index = 2;
    assert.throws(() => assertChunks(hole, { finish: 'tool_calls' }), /without holes/);
    const noId = structuredClone(datas);
    delete noId[0].choices[0].delta.tool_calls[0].id;
    assert.throws(() => assertChunks(noId, { finish: 'tool_calls' }), /has its id/);
  });

  test('pollUntil: the value once it holds; a timeout names what and the last value; returnLast', async () => {
    let n = 0;
    assert.equal(await pollUntil(() => ++n, { until: (v) => v >= 3, intervalMs: 5 }), 3);
    const t0 = performance.now();
    await assert.rejects(pollUntil(() => 'nope', { until: (v) => v === 'yes', timeoutMs: 60, intervalMs: 10, what: 'the thing' }),
      /timed out after 60 ms waiting for the thing \(\d+ tries, the last gave "nope"\)/);
    assert.ok(performance.now() - t0 >= 55, 'it waited the whole timeout');
    assert.equal(await pollUntil(() => 7, { until: (v) => v > 7, timeoutMs: 30, intervalMs: 10, returnLast: true }), 7);
    await assert.rejects(pollUntil(() => { throw new Error('inner'); }, { timeoutMs: 1000 }), /inner/);
    // A condition that turns true just before the deadline is still seen (a last check at the end).
    const end = performance.now() + 50;
    assert.equal(await pollUntil(() => performance.now() >= end - 5, { timeoutMs: 50, intervalMs: 40 }), true);
  });

  test('assertNever: passes over a quiet window, fails when the thing appears in it', async () => {
    const t0 = performance.now();
    await assertNever(() => false, { windowMs: 60, intervalMs: 10, what: 'nothing' });
    assert.ok(performance.now() - t0 >= 55, 'the whole window was watched');
    const t1 = performance.now();
    await assert.rejects(assertNever(() => performance.now() - t1 > 30, { windowMs: 200, intervalMs: 10, what: 'a late arrival' }),
      /a late arrival happened \d+ ms into a 200 ms window/);
    assert.ok(performance.now() - t1 < 150, 'it fails as soon as it sees it');
  });

  test('pollUntilSteady: the value once it stopped changing', async () => {
    let v = 0;
    const timer = setInterval(() => { if (v < 5) v++; }, 10);
    try {
      assert.equal(await pollUntilSteady(() => v, { quietMs: 80, timeoutMs: 2000, intervalMs: 10 }), 5);
    } finally {
      clearInterval(timer);
    }
  });
});
