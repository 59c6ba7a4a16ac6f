// Fallback across targets (DESIGN §5): while nothing has been sent to the client, a connect
// failure, a first-byte timeout, a 5xx or a 429 retries the target (`retries`, backoff with
// jitter, Retry-After honoured up to retry.max_retry_after), then moves to the next target; the
// client sees only the answer that succeeded, byte for byte, and the access log lists every
// attempt. Other 4xx are not retried. Once output started, a failure is an in-stream error and
// no other target is called (the circuit breakers are tested in breaker.test.mjs). `fallback_to_non_stream`
// retries a streaming call that failed before output without streaming, and the streaming
// client still gets a whole SSE stream.
//
// Upstreams: A (ctx.up) and B are fake OpenAI upstreams; `front` is an OpenAI-compatible server
// that refuses streaming (400 or 500) but answers non-streaming calls; an Azure fake for
// Retry-After values other than fake-upstream's fixed 7 s and for Azure's stream refusal.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeUpstream, expectedClientStream, expectedPrefix, completionFor, contentPieces, usageFor } from './lib/fake-upstream.mjs';
import { startFakeAzure, startScriptedServer, AZURE_KEY, azureCompletion } from './lib/fake-azure.mjs';
import { openStream } from './lib/sse.mjs';
import { request, closedPort } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat, UPSTREAM_KEY } from './lib/sluice.mjs';
import { assertErrorBody, assertStreamHeaders, assertErrorEnding, assertChunkStream } from './lib/checks.mjs';
import { uid } from './lib/dialects.mjs';
import { scrape, total } from './lib/prom.mjs';

let upB;
let front;
let az;
after(async () => { await upB?.close(); await front?.close(); await az?.close(); });

/* An OpenAI-compatible upstream that refuses to stream. The model's trailing digits are the
 * status of the refusal (400: "streaming is not supported"); a model containing "both" fails
 * non-streaming calls the same way; otherwise a non-streaming call gets completionFor(body). */
async function startStreamRefuser() {
  return startScriptedServer((rec) => {
    rec.stream = rec.body?.stream === true;
    const model = String(rec.body?.model);
    const status = Number(/(\d{3})$/.exec(model)?.[1] ?? 400);
    const json = (st, obj) => {
      const text = JSON.stringify(obj);
      return [{ kind: 'head', status: st, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
        { kind: 'write', data: text }, { kind: 'end' }];
    };
    if (rec.stream || model.includes('both')) {
      return json(status, { error: { message: rec.stream && status === 400 ? 'streaming is not supported by this model' : `refuser says ${status}`,
        type: status >= 500 ? 'server_error' : 'invalid_request_error', param: rec.stream ? 'stream' : null, code: null } });
    }
    return json(200, completionFor(rec.body));
  });
}

const NO_BREAKER = { failures: 1000, cooldown: '1s' }; // every provider has one (default 5 failures)

const ctx = useSluice(async (up) => {
  upB = await startFakeUpstream();
  front = await startStreamRefuser();
  az = await startFakeAzure();
  const dead = await closedPort();
  const oai = (port, extra = {}) => ({ type: 'openai', base_url: `http://127.0.0.1:${port}/v1`, api_key: UPSTREAM_KEY, breaker: NO_BREAKER, ...extra });
  const azure = { type: 'azure', base_url: az.baseURL, api_key: AZURE_KEY, breaker: NO_BREAKER };
  const cfg = baseConfig({
    upstreamPort: up.port, workers: 1, star: false,
    // first_byte shorter than keepalive: a timed-out first attempt sent nothing to the client.
    timeouts: { first_byte: '400ms', keepalive: '5s', idle: '2s' },
  });
  cfg.retry = { backoff: '100ms', max_backoff: '400ms', max_retry_after: '1500ms' };
  cfg.providers = {
    ...cfg.providers,
    a500: oai(up.port), a500p: oai(up.port), a429: oai(up.port), ahang: oai(up.port), a400: oai(up.port),
    adrop: oai(up.port), dead: oai(dead), b: oai(upB.port),
    az429: azure, az429solo: azure, az429cap: azure, azns: azure,
    refuser: { type: 'openai', base_url: `http://127.0.0.1:${front.port}/v1`, api_key: UPSTREAM_KEY, breaker: NO_BREAKER },
  };
  cfg.models = {
    ...cfg.models,
    'fb500-*': [{ provider: 'a500', model: 'status-500', retries: 1 }, { provider: 'b' }],
    'fb500p-*': [{ provider: 'a500p', model: 'status-500', retries: 1 }, { provider: 'b' }],
    'fb429-*': [{ provider: 'a429', model: 'status-429', retries: 0 }, { provider: 'b' }],
    'fbra-*': [{ provider: 'az429', model: 'status-429:1', retries: 1 }, { provider: 'b' }],
    'fbrasolo-*': [{ provider: 'az429solo', model: 'status-429:1', retries: 1 }],
    'fbracap-*': [{ provider: 'az429cap', model: 'status-429:30', retries: 1 }, { provider: 'b' }],
    'fbhang-*': [{ provider: 'ahang', model: 'hang', retries: 1 }, { provider: 'b' }],
    'fbdead-*': [{ provider: 'dead', retries: 1 }, { provider: 'b' }],
    'fb400-*': [{ provider: 'a400', model: 'status-400', retries: 1 }, { provider: 'b' }],
    'fbdrop-*': [{ provider: 'adrop', model: 'drop-mid:2', retries: 1 }, { provider: 'b' }],
    // stream → non-stream
    'ns-*': [{ provider: 'refuser', retries: 0, fallback_to_non_stream: true }],
    'nsoff-*': [{ provider: 'refuser', retries: 0 }],
    'azns-*': [{ provider: 'azns', model: 'nostream-400', retries: 0, fallback_to_non_stream: true }],
  };
  return cfg;
});

const url = () => `${ctx.sl.url}/v1/chat/completions`;
const post = (body, headers = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, headers });
const byRid = (srv, rid) => srv.requests.filter((r) => r.headers['x-request-id'] === rid);
const logLine = (rid) => ctx.sl.waitForLog((l) => l.request_id === rid, 3000, `the access-log line of ${rid}`);
const attempts = (line) => {
  assert.ok(Array.isArray(line.attempts), `the access-log line has no "attempts" array: ${JSON.stringify(line)}`);
  return line.attempts.map((a) => ({ provider: a.provider, status: a.status }));
};

/* Streams body with X-Request-Id rid; resolves with the finished stream and its duration. */
async function streamTimed(body, rid, timeoutMs = 8000) {
  const t0 = performance.now();
  const s = await openStream(url(), body, { headers: { 'x-request-id': rid } }).finished(timeoutMs);
  return { s, ms: performance.now() - t0 };
}

/* The stream came from B alone and is byte-exact. */
function assertFromB(s, body, rid) {
  assert.equal(s.status, 200, `status ${s.status}: ${s.text().slice(0, 300)}`);
  assertStreamHeaders(s.headers);
  assert.equal(s.body(), expectedClientStream(body), 'the client must get exactly the second target\'s stream');
  assert.equal(byRid(upB, rid).length, 1, 'B answered once');
}

describe('fallback to the next target before anything was sent', { timeout: 60_000 }, () => {
  test('500 from A: A retried once (backoff), then B; the client gets only B\'s stream; attempts logged', async () => {
    const rid = uid('fb500');
    const body = chat('fb500-x', rid, { stream: true });
    const { s } = await streamTimed(body, rid);
    assertFromB(s, body, rid);
    const a = byRid(ctx.up, rid);
    assert.deepEqual(a.map((r) => r.body?.model), ['status-500', 'status-500'], 'A: the first call and one retry');
    const gap = a[1].t - a[0].t;
    assert.ok(gap < 1000, `retry ${gap.toFixed(0)} ms after the failure (backoff 100ms, max 400ms)`);
    assert.ok(byRid(upB, rid)[0].t >= a[1].t, 'B is called after A\'s retry');
    const line = await logLine(rid);
    assert.deepEqual(attempts(line), [{ provider: 'a500', status: 500 }, { provider: 'a500', status: 500 }, { provider: 'b', status: 200 }]);
    assert.equal(line.status, 200);
    assert.equal(line.provider, 'b');
  });

  test('500 from A, non-streaming: B\'s answer', async () => {
    const rid = uid('fb500p');
    const body = chat('fb500p-x', rid);
    const r = await post(body, { 'x-request-id': rid });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.deepEqual(r.json, completionFor(body));
    assert.equal(byRid(ctx.up, rid).length, 2);
    assert.equal(byRid(upB, rid).length, 1);
    assert.deepEqual(attempts(await logLine(rid)), [{ provider: 'a500p', status: 500 }, { provider: 'a500p', status: 500 }, { provider: 'b', status: 200 }]);
  });

  test('429 from A (retries: 0): B at once, without waiting for A\'s Retry-After (7 s)', async () => {
    const rid = uid('fb429');
    const body = chat('fb429-x', rid, { stream: true });
    const { s, ms } = await streamTimed(body, rid);
    assertFromB(s, body, rid);
    assert.ok(ms < 3000, `took ${ms.toFixed(0)} ms`);
    assert.equal(byRid(ctx.up, rid).length, 1);
    assert.deepEqual(attempts(await logLine(rid)), [{ provider: 'a429', status: 429 }, { provider: 'b', status: 200 }]);
  });

  test('429 with Retry-After: 1 and another target: B at once, A not retried (it cools down instead)', async () => {
    const rid = uid('fbra');
    const body = chat('fbra-x', rid, { stream: true });
    const { s, ms } = await streamTimed(body, rid);
    assertFromB(s, body, rid);
    assert.ok(ms < 900, `took ${ms.toFixed(0)} ms: waited for A's Retry-After`);
    assert.equal(byRid(az, rid).length, 1, 'the Azure target: one call');
    assert.deepEqual(attempts(await logLine(rid)), [{ provider: 'az429', status: 429 }, { provider: 'b', status: 200 }]);
  });

  test('429 with Retry-After: 1 on the only target: the retry waits ~1 s, then the client hears the 429', async () => {
    const rid = uid('fbrasolo');
    const r = await post(chat('fbrasolo-x', rid), { 'x-request-id': rid });
    assertErrorBody(r, 429);
    const a = byRid(az, rid);
    assert.equal(a.length, 2, 'the Azure target: first call and one retry');
    const gap = a[1].t - a[0].t;
    assert.ok(gap >= 900, `the retry came ${gap.toFixed(0)} ms after a 429 with Retry-After: 1`);
    assert.ok(gap < 2500, `the retry came ${gap.toFixed(0)} ms after a 429 with Retry-After: 1`);
    assert.deepEqual(attempts(await logLine(rid)), [{ provider: 'az429solo', status: 429 }, { provider: 'az429solo', status: 429 }]);
  });

  test('429 with Retry-After: 30 > max_retry_after (1.5 s) → no 30 s wait, no retry of A; B answers', async () => {
    const rid = uid('fbracap');
    const body = chat('fbracap-x', rid, { stream: true });
    const { s, ms } = await streamTimed(body, rid);
    assertFromB(s, body, rid);
    assert.ok(ms < 4000, `took ${ms.toFixed(0)} ms`);
    // A wait longer than max_retry_after is not waited (and with another target a 429 is not
    // retried at all): one call to A, then B.
    assert.equal(byRid(az, rid).length, 1, 'the Azure target: one call, not retried');
    assert.deepEqual(attempts(await logLine(rid)), [{ provider: 'az429cap', status: 429 }, { provider: 'b', status: 200 }]);
  });

  test('A never answers: first_byte timeout (400 ms) twice, A\'s sockets closed, then B', async () => {
    const rid = uid('fbhang');
    const body = chat('fbhang-x', rid, { stream: true });
    const { s, ms } = await streamTimed(body, rid);
    assertFromB(s, body, rid);
    assert.ok(ms >= 750 && ms < 4000, `took ${ms.toFixed(0)} ms (2 × first_byte 400 ms + backoff)`);
    const a = byRid(ctx.up, rid);
    assert.equal(a.length, 2);
    for (const r of a) assert.equal(r.closedEarly, true, 'sluice closes a timed-out attempt');
    const att = attempts(await logLine(rid));
    assert.deepEqual(att.map((x) => x.provider), ['ahang', 'ahang', 'b']);
    assert.ok(att[0].status !== 200 && att[1].status !== 200, JSON.stringify(att));
    assert.equal(att[2].status, 200);
  });

  test('A refuses the connection (closed port): retried, then B', async () => {
    const rid = uid('fbdead');
    const body = chat('fbdead-x', rid, { stream: true });
    const { s } = await streamTimed(body, rid);
    assertFromB(s, body, rid);
    const att = attempts(await logLine(rid));
    assert.deepEqual(att.map((x) => x.provider), ['dead', 'dead', 'b']);
    assert.ok(att[0].status !== 200 && att[1].status !== 200, JSON.stringify(att));
  });

  test('400 from A is not retried: the client gets that 400, B is never called', async () => {
    for (const stream of [true, false]) {
      const rid = uid('fb400');
      const r = await post(chat('fb400-x', rid, { stream }), { 'x-request-id': rid });
      assertErrorBody(r, 400);
      assert.equal(byRid(ctx.up, rid).length, 1, 'A called once');
      assert.equal(byRid(upB, rid).length, 0, 'B must not be called');
      const line = await logLine(rid);
      assert.equal(line.status, 400);
      assert.deepEqual(attempts(line), [{ provider: 'a400', status: 400 }], 'one attempt, logged');
    }
  });

  test('A drops mid-stream after 2 chunks: an error event, no [DONE], B never called, A not retried', async () => {
    const rid = uid('fbdrop');
    const body = chat('fbdrop-x', rid, { stream: true });
    const { s } = await streamTimed(body, rid);
    assert.equal(s.status, 200);
    assertErrorEnding(s, 'dropped stream');
    assert.ok(s.body().startsWith(expectedPrefix({ ...body, model: 'drop-mid:2' })), `the chunks before the drop, exact:\n${s.body().slice(0, 600)}`);
    await ctx.sl.waitForLog((l) => l.request_id === rid, 3000, 'the log line');
    assert.equal(byRid(ctx.up, rid).length, 1, 'A must not be retried once output started');
    assert.equal(byRid(upB, rid).length, 0, 'B must not be called once output started');
  });
});

describe('stream → non-stream fallback (fallback_to_non_stream: true)', { timeout: 60_000 }, () => {
  /* The stream a client gets from a non-streaming answer: a whole OpenAI chunk stream
   * (assertChunkStream: role first, one finish, [DONE]) with the completion's text, its
   * finish_reason, and a usage chunk exactly when one was asked for. */
  function assertSynthesised(s, completion, { usage = false } = {}) {
    const { text } = assertChunkStream(s, { finish: completion.choices[0].finish_reason, usage, label: 'synthesised stream' });
    assert.equal(text, completion.choices[0].message.content);
  }

  for (const status of [400, 500]) {
    test(`streaming refused with ${status} → retried without streaming; the client gets a whole SSE stream`, async () => {
      const rid = uid(`ns${status}`);
      const body = chat(`ns-${status}`, rid, { stream: true, stream_options: { include_usage: true } });
      const { s } = await streamTimed(body, rid);
      const calls = byRid(front, rid);
      assert.deepEqual(calls.map((r) => r.body?.stream === true), [true, false], 'a streaming call, then a non-streaming one');
      assert.ok(!('stream_options' in calls[1].body), 'stream_options on the non-streaming call');
      const completion = completionFor(calls[1].body);
      assertSynthesised(s, completion, { usage: usageFor(calls[1].body, contentPieces(calls[1].body).length) });
    });
  }

  test('without fallback_to_non_stream the refusal goes to the client', async () => {
    const rid = uid('nsoff');
    const r = await post(chat('nsoff-400', rid, { stream: true }), { 'x-request-id': rid });
    assertErrorBody(r, 400);
    assert.equal(byRid(front, rid).length, 1);
  });

  test('when the non-streaming call fails too, the client gets that error', async () => {
    const rid = uid('nsboth');
    const r = await post(chat('ns-both-500', rid, { stream: true }), { 'x-request-id': rid });
    assertErrorBody(r, 500);
    assert.deepEqual(byRid(front, rid).map((x) => x.body?.stream === true), [true, false]);
  });

  test('Azure deployment that cannot stream → non-streaming retry, SSE to the client', async () => {
    const rid = uid('azns');
    const { s } = await streamTimed(chat('azns-x', rid, { stream: true }), rid);
    const calls = byRid(az, rid);
    assert.deepEqual(calls.map((r) => r.stream), [true, false]);
    assertSynthesised(s, azureCompletion('nostream-400', calls[1].body));
  });
});

ctx.testCleanExit();
