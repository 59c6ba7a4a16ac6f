// DESIGN §3 through the OpenAI passthrough: headers, byte-exact relay, usage handling, body
// passthrough, relay timing, split UTF-8, keepalive comments, honest endings, timeouts, and
// the access log.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { expectedClientStream, expectedPrefix, completionFor, usageFor, streamFrames, TOOL_CALLS } from './lib/fake-upstream.mjs';
import { openStream, dataPayloads, parseSSE } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { useSluice, chat, UPSTREAM_KEY } from './lib/sluice.mjs';
import { assertStreamHeaders, assertErrorEnding, stripKeepalives, assertChunkStream } from './lib/checks.mjs';

const ctx = useSluice();
const url = (p = '/v1/chat/completions') => `${ctx.sl.url}${p}`;

/* Streams body through sluice and waits for the end (bounded). */
async function streamed(body, opts = {}) {
  return openStream(url(opts.path), body, opts).finished(opts.timeoutMs ?? 8000);
}

/* The request the upstream received for a client body tagged with a unique user message. */
function upstreamRequest(tag, timeoutMs = 3000) {
  return ctx.up.waitForRequest((r) => r.body?.messages?.at(-1)?.content === tag, timeoutMs, 0, `upstream request "${tag}"`);
}

describe('OpenAI passthrough stream', { timeout: 60_000 }, () => {
  test('answers 200 with the SSE headers (event-stream, no-cache, x-accel-buffering no, chunked)', async () => {
    const body = chat('ok', 'headers', { stream: true });
    const s = await streamed(body);
    assert.equal(s.status, 200);
    assertStreamHeaders(s.headers);
    assert.equal(s.body(), expectedClientStream(body));
    assert.equal(s.ended, true, 'the chunked body must end cleanly');
  });

  test('relays the upstream bytes exactly and strips the usage chunk the client did not ask for', async () => {
    const body = chat('chunks:8', 'exact', { stream: true });
    const s = await streamed(body);
    assert.equal(s.status, 200);
    assert.equal(s.body(), expectedClientStream(body));
    assert.ok(!dataPayloads(s.events).some((c) => c.usage), 'a usage chunk reached a client that did not ask');
    const rec = await upstreamRequest('exact');
    assert.deepEqual(rec.body.stream_options, { include_usage: true }, 'sluice must ask the upstream for usage');
  });

  test('forwards the usage chunk (choices: []) when the client asked for include_usage', async () => {
    const body = chat('chunks:3', 'usage-asked', { stream: true, stream_options: { include_usage: true } });
    const s = await streamed(body);
    assert.equal(s.body(), expectedClientStream(body));
    const last = dataPayloads(s.events).at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, usageFor({ ...body, stream_options: { include_usage: true } }, 3));
  });

  test("merges include_usage into the client's own stream_options", async () => {
    const a = chat('chunks:2', 'merge-a', { stream: true, stream_options: { continuous_usage_stats: false } });
    const b = chat('chunks:2', 'merge-b', { stream: true, stream_options: { include_usage: false } });
    const [sa, sb] = await Promise.all([streamed(a), streamed(b)]);
    assert.deepEqual((await upstreamRequest('merge-a')).body.stream_options, { continuous_usage_stats: false, include_usage: true });
    assert.deepEqual((await upstreamRequest('merge-b')).body.stream_options, { include_usage: true });
    assert.equal(sa.body(), expectedClientStream(a), 'no usage chunk for a client that did not ask');
    assert.equal(sb.body(), expectedClientStream(b), 'no usage chunk for include_usage: false');
  });

  test('passes every body field through: tools, tool_choice, response_format, unknown fields', async () => {
    const extra = {
      temperature: 0.25, top_p: 0.9, seed: 7, user: 'u-42', max_tokens: 321, n: 1,
      tools: [{ type: 'function', function: { name: 'get_weather', description: 'w',
        parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' }, strict: true } },
      logit_bias: { 50256: -100 },
      x_vendor_field: { nested: [1, 'two', null, { deep: true }], unicode: 'ünï ✓' },
      metadata: { trace: 'abc' },
    };
    const sBody = chat('ok', 'fields-stream', { stream: true, ...extra });
    await streamed(sBody);
    const rs = await upstreamRequest('fields-stream');
    assert.deepEqual(rs.body, { ...sBody, stream_options: { include_usage: true } });

    const nBody = chat('ok', 'fields-plain', extra);
    const r = await request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body: nBody });
    assert.equal(r.status, 200);
    const rn = await upstreamRequest('fields-plain');
    assert.deepEqual(rn.body, nBody, 'a non-streaming request goes upstream unchanged (no stream_options)');
  });

  test("sends the provider's key upstream, never the client's Authorization", async () => {
    const body = chat('ok', 'keys', { stream: true });
    await streamed(body, { headers: { authorization: 'Bearer sk-client-should-not-leak' } });
    const rec = await upstreamRequest('keys');
    assert.equal(rec.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(rec.method, 'POST');
    assert.equal(rec.url, '/v1/chat/completions');
    for (const [k, v] of Object.entries(rec.headers)) {
      assert.ok(!String(v).includes('sk-client-should-not-leak'), `client key forwarded in ${k}`);
    }
  });

  test('a renaming route sends its upstream model name; "*" passes the name through', async () => {
    const body = chat('renamed', 'rename', { stream: true });
    const s = await streamed(body);
    const rec = await upstreamRequest('rename');
    assert.equal(rec.body.model, 'upstream-name');
    assert.equal(s.body(), expectedClientStream({ ...body, model: 'upstream-name' }));

    await streamed(chat('any-other-model-7', 'passthrough-name', { stream: true }));
    assert.equal((await upstreamRequest('passthrough-name')).body.model, 'any-other-model-7');
  });

  test('/api/v1/chat/completions is the same endpoint', async () => {
    const body = chat('chunks:4', 'api-prefix', { stream: true });
    const s = await streamed(body, { path: '/api/v1/chat/completions' });
    assert.equal(s.status, 200);
    assert.equal(s.body(), expectedClientStream(body));
  });

  test('streams because of "stream": true, even when the client sends Accept: application/json', async () => {
    const body = chat('chunks:2', 'accept-json', { stream: true });
    const s = await streamed(body, { headers: { accept: 'application/json' } });
    assert.match(s.headers['content-type'], /^text\/event-stream/);
    assert.equal(s.body(), expectedClientStream(body));
  });

  test('relays each chunk as it arrives (upstream 100 ms apart → client ≥ 50 ms apart)', async () => {
    const body = chat('chunks:6:100', 'timing', { stream: true });
    const s = await streamed(body);
    assert.equal(s.body(), expectedClientStream(body));
    const t = s.events.filter((e) => e.json?.choices?.[0]?.delta?.content).map((e) => e.t);
    assert.equal(t.length, 6);
    const gaps = t.slice(1).map((x, i) => Math.round(x - t[i]));
    assert.ok(gaps.every((g) => g >= 50), `chunks were collected, gaps (ms): ${gaps}`);
    const rec = await upstreamRequest('timing');
    assert.ok(t[0] < rec.finishedAt - 300, 'the first chunk must arrive long before the upstream finished');
  });

  test('UTF-8 characters split across upstream writes arrive byte-exact', async () => {
    const body = chat('split-utf8', 'utf8', { stream: true });
    const s = await streamed(body);
    assert.equal(s.rawBody().equals(Buffer.from(expectedClientStream(body))), true, `got:\n${s.text()}`);
    assert.equal(dataPayloads(s.events).map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'héllo 世界 🌊🚀 ñandú 数据流 ✓');
  });

  test('streamed tool calls are relayed byte-exact and reassemble', async () => {
    const body = chat('tools', 'tools', { stream: true });
    const s = await streamed(body);
    assert.equal(s.body(), expectedClientStream(body));
    const args = ['', ''];
    for (const c of dataPayloads(s.events)) {
      for (const tc of c.choices[0]?.delta?.tool_calls ?? []) args[tc.index] += tc.function?.arguments ?? '';
    }
    assert.deepEqual(args, TOOL_CALLS.map((t) => t.arguments));
    const { toolCalls } = assertChunkStream(s, { finish: 'tool_calls', label: 'tool-call stream' });
    assert.deepEqual(toolCalls, TOOL_CALLS);
  });

  test('CRLF-framed upstream events reach the client as the same events', async () => {
    const body = chat('crlf', 'crlf', { stream: true });
    const s = await streamed(body);
    assert.equal(s.status, 200);
    const want = parseSSE(streamFrames(body).filter((f) => f.kind !== 'usage').map((f) => f.text).join('')).map((e) => e.data);
    assert.deepEqual(s.dataEvents().map((e) => e.data), want);
  });

  test('a non-streaming answer passes through as JSON', async () => {
    const body = chat('chunks:3', 'plain');
    const r = await request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.deepEqual(r.json, completionFor(body));
  });
});

describe('slow and broken upstreams after the stream started', { concurrency: true, timeout: 60_000 }, () => {
  test('a slow first token: 200 and ": keepalive" comments while waiting, then the stream byte-exact', async () => {
    const body = chat('slow-first:1600', 'keepalive', { stream: true });
    const s = await streamed(body);
    const rec = await upstreamRequest('keepalive');
    assert.equal(s.status, 200);
    assertStreamHeaders(s.headers);
    assert.ok(s.headersAt < rec.headersSentAt, 'sluice must commit to 200 before the upstream answers');
    const comments = s.comments();
    assert.ok(comments.length >= 1, 'no keepalive comment');
    assert.ok(comments.every((c) => c.data === 'keepalive'), `comments: ${JSON.stringify(comments.map((c) => c.data))}`);
    assert.ok(comments[0].t - s.t0 >= 400, `keepalive came before the keepalive period: ${comments[0].t - s.t0} ms`);
    assert.ok(comments[0].t - s.t0 < 1400, `first keepalive only after ${comments[0].t - s.t0} ms (period 500 ms)`);
    const { count, rest } = stripKeepalives(s.text());
    assert.equal(count, comments.length, 'keepalive comments must come before the first data event');
    assert.equal(rest, expectedClientStream(body));
  });

  test('an upstream that drops mid-stream: the chunks so far, then an error event, no [DONE]', async () => {
    const body = chat('drop-mid:3', 'drop', { stream: true });
    const s = await streamed(body);
    assert.equal(s.status, 200);
    assert.ok(s.body().startsWith(expectedPrefix(body)), `prefix lost:\n${s.text()}`);
    assertErrorEnding(s, 'drop-mid');
  });

  test('idle timeout mid-stream: an error event after ~2 s of silence, no [DONE], upstream closed', async () => {
    const body = chat('stall:2', 'idle-mid', { stream: true });
    const s = await streamed(body, { timeoutMs: 8000 });
    assert.ok(s.body().startsWith(expectedPrefix(body)));
    const e = assertErrorEnding(s, 'idle timeout');
    const lastContent = s.events.filter((x) => x.json?.choices?.[0]?.delta?.content).at(-1).t;
    const errAt = s.events.find((x) => x.json?.error).t;
    assert.ok(errAt - lastContent >= 1700 && errAt - lastContent < 4500, `error after ${errAt - lastContent} ms of silence (idle 2s)`);
    assert.ok(e.message.length > 0);
    const rec = await ctx.up.waitFor((rs) => rs.find((r) => r.body?.messages?.[0]?.content === 'idle-mid' && r.closed), 2000, 'upstream closed');
    assert.equal(rec.closedEarly, true);
  });

  test('first_byte timeout after keepalives committed the stream: an error event, no [DONE]', async () => {
    const body = chat('hang', 'first-byte-stream', { stream: true });
    const s = await streamed(body, { timeoutMs: 8000 });
    assert.equal(s.status, 200);
    assert.ok(s.comments().length >= 1, 'keepalive comments expected while waiting');
    assertErrorEnding(s, 'first_byte timeout');
    const errAt = s.events.find((x) => x.json?.error).t - s.t0;
    assert.ok(errAt >= 1700 && errAt < 4500, `error after ${errAt} ms (first_byte 2s)`);
  });
});

describe('access log', { timeout: 60_000 }, () => {
  test('one JSON line per request with the agreed fields and real values', async () => {
    const body = chat('logcheck-stream', 'log-s', { stream: true });
    const s = await streamed(body);
    const up = { ...body, stream_options: { include_usage: true } };
    const line = await ctx.sl.waitForLog((l) => l.model === 'logcheck-stream', 3000, 'the stream\'s log line');
    assert.ok(['string', 'number'].includes(typeof line.ts), `ts: ${JSON.stringify(line.ts)}`);
    assert.equal(typeof line.request_id, 'string');
    assert.ok(line.request_id.length > 0);
    assert.equal(line.method, 'POST');
    assert.equal(line.path, '/v1/chat/completions');
    assert.equal(line.status, 200);
    assert.equal(line.provider, 'fake');
    assert.equal(line.stream, true);
    assert.equal(line.prompt_tokens, usageFor(up, 5).prompt_tokens);
    assert.equal(line.completion_tokens, 5);
    assert.equal(line.usage_estimated, false);
    assert.equal(typeof line.ttft_ms, 'number');
    assert.equal(typeof line.total_ms, 'number');
    assert.ok(line.ttft_ms >= 0 && line.total_ms >= line.ttft_ms, `ttft ${line.ttft_ms} total ${line.total_ms}`);
    const n = s.raw().length;
    assert.ok(line.bytes_out >= n && line.bytes_out <= n + 8192, `bytes_out ${line.bytes_out}, body ${n} bytes`);
    assert.equal(line.cancelled, false);

    const plain = chat('logcheck-plain', 'log-p');
    await request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body: plain });
    const p = await ctx.sl.waitForLog((l) => l.model === 'logcheck-plain', 3000, 'the plain request\'s log line');
    assert.equal(p.stream, false);
    assert.equal(p.status, 200);
    assert.equal(p.completion_tokens, 5);
    assert.equal(p.prompt_tokens, usageFor(plain, 5).prompt_tokens);
    assert.notEqual(p.request_id, line.request_id);
  });

  test('every line, errors included, carries every field (null where unknown) and a unique request_id', async () => {
    const bad = await request(ctx.sl.url, { method: 'GET', path: '/no/such/path' });
    assert.equal(bad.status, 404);
    await ctx.sl.waitForLog((l) => l.path === '/no/such/path' && l.status === 404, 3000, 'a log line for the 404');

    const fields = ['request_id', 'method', 'path', 'status', 'model', 'provider', 'stream', 'prompt_tokens',
      'completion_tokens', 'usage_estimated', 'ttft_ms', 'total_ms', 'bytes_out', 'cancelled'];
    const all = ctx.sl.accessLog();
    assert.deepEqual(all.filter((l) => l._invalid), [], 'access-log lines that are not JSON');
    for (const l of all) for (const f of fields) assert.ok(f in l, `field ${f} missing in ${JSON.stringify(l)}`);
    assert.equal(new Set(all.map((l) => l.request_id)).size, all.length, 'request ids must be unique');
  });
});

ctx.testCleanExit();
