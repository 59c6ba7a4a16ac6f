// The chat dialect (seed 000, Django): POST /api/chat/ answers JSON {response, session_id,
// usage}; POST /api/chat/stream/ streams SSE start → chunk per token → end, or an error event and
// no end when the upstream fails. Bad input is 400 {"error"}. Paths match exactly (trailing slash
// included), the dialect can be moved under a prefix or unmounted, a client that leaves cancels
// the upstream, and every request is logged with "dialect":"chat". Sessions in depth:
// sessions.test.mjs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { usageFor } from './lib/fake-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { request, RawClient, formatRequest } from './lib/raw-http.mjs';
import { assertStreamHeaders, assertChunkStream } from './lib/checks.mjs';
import { chat, CLIENT_KEY, UPSTREAM_KEY } from './lib/sluice.mjs';
import {
  useSluices, dialectConfig, uid, echoed, mockAnswer, postJSON, payloads, assertUpstreamCancelled,
  logLine, assertUsage, assertJSON, lastUser,
} from './lib/dialects.mjs';

const SYS = 'SYS-000: answer in Italian, be brief.';
const ctx = useSluices({
  echo: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'echo', system_prompt: SYS, auth: 'none' } } }),
  mock: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'mock-chat' } } }),
  slow: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'chunks:200:20' } } }),
  hang: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'hang' } } }),
  drop: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'drop-mid:3' } } }),
  stall: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'stall:2' } }, timeouts: { idle: '400ms' } }),
  fail: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'status-500' } } }),
  off: (up, db) => dialectConfig(up, db, { dialects: { chat: { enabled: false } } }),
  prefixed: (up, db) => dialectConfig(up, db, { dialects: { chat: { prefix: '/seed000', model: 'mock-prefixed' } } }),
  keyed: (up, db) => dialectConfig(up, db, {
    auth: { keys: [{ name: 'dev', key: CLIENT_KEY }] },
    dialects: { chat: { model: 'mock-keyed' }, monoai: { model: 'mock-keyed', auth: 'none' } },
  }),
});

const JSON_PATH = '/api/chat/';
const STREAM_PATH = '/api/chat/stream/';
let reference;
const answer = async () => (reference ??= await mockAnswer(ctx.sl.mock));
/* The contents of chunk events, empty ones (an upstream's role-only delta) left out. */
const nonEmpty = (chunks) => chunks.map((c) => c.content).filter((c) => c !== '');
const stream = (sl, body, headers = {}, path = STREAM_PATH) => openStream(`${sl.url}${path}`, body, { headers });

/* The chat events of a stream, each checked to be one of the four seed 000 types. */
function chatEvents(s, label) {
  const evs = payloads(s, label);
  for (const e of evs) {
    assert.ok(e && ['start', 'chunk', 'end', 'error'].includes(e.type), `${label}: unknown event ${JSON.stringify(e)}`);
  }
  const chunks = evs.filter((e) => e.type === 'chunk');
  for (const c of chunks) assert.equal(typeof c.content, 'string', `${label}: chunk content ${JSON.stringify(c)}`);
  return { evs, chunks, text: chunks.map((c) => c.content).join('') };
}

/* A complete, successful seed 000 stream: start(session_id) first, chunks, end last. */
function assertChatStream(s, label = 'chat stream') {
  assert.equal(s.status, 200, `${label}: status ${s.status} ${s.text().slice(0, 300)}`);
  assertStreamHeaders(s.headers);
  const { evs, chunks, text } = chatEvents(s, label);
  assert.ok(evs.length >= 2, `${label}: ${s.text().slice(0, 500)}`);
  assert.equal(evs[0].type, 'start', `${label}: the first event must be start: ${JSON.stringify(evs[0])}`);
  assert.equal(typeof evs[0].session_id, 'string');
  assert.ok(evs[0].session_id.length > 0, 'empty session_id');
  const end = evs.at(-1);
  assert.equal(end.type, 'end', `${label}: the last event must be end: ${JSON.stringify(end)}`);
  assert.equal(evs.filter((e) => e.type === 'start').length, 1, 'one start event');
  assert.equal(evs.filter((e) => e.type === 'end').length, 1, 'one end event');
  assert.equal(evs.filter((e) => e.type === 'error').length, 0, `${label}: error event in a good stream`);
  assert.equal(end.complete_response, text, 'complete_response must be all chunks joined');
  assert.equal(s.ended, true, `${label}: the response must end cleanly`);
  return { sessionId: evs[0].session_id, chunks, text };
}

/* A failed seed 000 stream: start(session_id) first (it goes out before the upstream is
 * asked, so even a 500 before any token comes after it), then one error event with a
 * message, last, and no end event. */
function assertChatStreamError(s, label = 'failed chat stream') {
  assert.equal(s.status, 200, `${label}: status ${s.status} ${s.text().slice(0, 300)}`);
  assertStreamHeaders(s.headers);
  const { evs, chunks, text } = chatEvents(s, label);
  assert.ok(evs.length >= 1, `${label}: no events at all`);
  assert.equal(evs.filter((e) => e.type === 'end').length, 0, `${label}: an end event after a failure:\n${s.text().slice(-500)}`);
  const errs = evs.filter((e) => e.type === 'error');
  assert.equal(errs.length, 1, `${label}: expected one error event:\n${s.text().slice(-500)}`);
  assert.equal(evs.at(-1).type, 'error', `${label}: the error event must be the last`);
  assert.equal(typeof errs[0].error, 'string');
  assert.ok(errs[0].error.length > 0, 'empty error message');
  assert.equal(evs[0].type, 'start', `${label}: the first event: ${JSON.stringify(evs[0])}`);
  assert.equal(typeof evs[0].session_id, 'string', `${label}: start without a session_id`);
  assert.equal(evs.filter((e) => e.type === 'start').length, 1, `${label}: one start event`);
  return { chunks, text, error: errs[0].error };
}

describe('chat dialect: POST /api/chat/ (JSON)', { timeout: 60_000 }, () => {
  test('answers {response, session_id, usage} with the full answer', async () => {
    const r = await postJSON(ctx.sl.mock, JSON_PATH, { message: 'Ciao!' });
    const j = assertJSON(r, 200, 'POST /api/chat/');
    assert.equal(j.response, await answer());
    assert.equal(typeof j.session_id, 'string');
    assert.ok(j.session_id.length > 0);
    assertUsage(j.usage);
    assert.equal(j.usage.completion_tokens, 20);
    assert.ok(j.usage.prompt_tokens > 0);
  });

  test('the upstream gets [system_prompt, user message], max_tokens 1000, the provider key and the request id', async () => {
    const msg = uid('chat-echo');
    const rid = uid('rid');
    const r = await postJSON(ctx.sl.echo, JSON_PATH, { message: msg }, { 'x-request-id': rid });
    const j = assertJSON(r, 200);
    const seen = echoed(j.response);
    assert.equal(seen.body.model, 'echo');
    assert.deepEqual(seen.body.messages, [{ role: 'system', content: SYS }, { role: 'user', content: msg }]);
    assert.equal(seen.body.max_tokens, 1000, 'seed 000 sends max_tokens 1000');
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(seen.headers['x-request-id'], rid, 'the client X-Request-Id goes upstream');
    assert.deepEqual(j.usage, usageFor(seen.body, 1), 'usage is what the upstream reported');
  });

  test('two requests without session_id get two different sessions', async () => {
    const a = assertJSON(await postJSON(ctx.sl.mock, JSON_PATH, { message: 'one' }), 200);
    const b = assertJSON(await postJSON(ctx.sl.mock, JSON_PATH, { message: 'two' }), 200);
    assert.notEqual(a.session_id, b.session_id);
  });

  test('a known session_id is kept: the answer carries the same id', async () => {
    const rid = uid('rid');
    const first = assertJSON(await postJSON(ctx.sl.mock, JSON_PATH, { message: 'first' }, { 'x-request-id': rid }), 200);
    await logLine(ctx.sl.mock, rid); // the turn is done (its history write is queued before any later read)
    const second = assertJSON(await postJSON(ctx.sl.mock, JSON_PATH, { message: 'second', session_id: first.session_id }), 200);
    assert.equal(second.session_id, first.session_id);
  });

  test('the access log line says dialect chat, with the tokens of the answer', async () => {
    const rid = uid('rid');
    const j = assertJSON(await postJSON(ctx.sl.mock, JSON_PATH, { message: 'logged' }, { 'x-request-id': rid }), 200);
    const l = await logLine(ctx.sl.mock, rid);
    assert.equal(l.dialect, 'chat');
    assert.equal(l.path, JSON_PATH);
    assert.equal(l.status, 200);
    assert.equal(l.model, 'mock-chat');
    assert.equal(l.prompt_tokens, j.usage.prompt_tokens);
    assert.equal(l.completion_tokens, j.usage.completion_tokens);
    assert.equal(l.cancelled, false);
  });
});

describe('chat dialect: POST /api/chat/stream/ (SSE)', { timeout: 60_000 }, () => {
  test('start with the session id, one chunk per token, end with the joined answer', async () => {
    const s = await stream(ctx.sl.mock, { message: 'Ciao stream' }).finished();
    const { chunks, text } = assertChatStream(s);
    assert.equal(chunks.length, 20, 'the mock sends 20 tokens: 20 chunk events');
    assert.equal(text, await answer());
  });

  test('the chunks are relayed as they come, not collected', async () => {
    const s = await stream(ctx.sl.mock, { message: 'timing' }).finished();
    assertChatStream(s);
    const times = s.events.filter((e) => e.json?.type === 'chunk').map((e) => e.t);
    const spread = times.at(-1) - times[0];
    assert.ok(spread > 50, `20 tokens at 200/s arrived within ${spread.toFixed(1)} ms: buffered`);
  });

  test('streaming sends the same upstream request (system prompt, max_tokens, user message)', async () => {
    const msg = uid('chat-stream-echo');
    const s = await stream(ctx.sl.echo, { message: msg }).finished();
    const { text } = assertChatStream(s);
    const seen = echoed(text);
    assert.deepEqual(seen.body.messages, [{ role: 'system', content: SYS }, { role: 'user', content: msg }]);
    assert.equal(seen.body.max_tokens, 1000);
  });

  test('the stream is logged with dialect chat and the mock usage', async () => {
    const rid = uid('rid');
    const s = await stream(ctx.sl.mock, { message: 'logged stream' }, { 'x-request-id': rid }).finished();
    assertChatStream(s);
    const l = await logLine(ctx.sl.mock, rid);
    assert.equal(l.dialect, 'chat');
    assert.equal(l.status, 200);
    assert.equal(l.completion_tokens, 20);
    assert.ok(l.prompt_tokens > 0);
    assert.equal(l.cancelled, false);
  });
});

describe('chat dialect: bad input is 400 {"error"} and nothing goes upstream', { timeout: 60_000 }, () => {
  const cases = {
    'invalid JSON': '{"message": "x",',
    'a JSON array': '["hello"]',
    'a JSON string': '"hello"',
    'no message': '{"session_id": "abc"}',
    'an empty message': '{"message": ""}',
    'a numeric message': '{"message": 5}',
    'a null message': '{"message": null}',
    'an object message': '{"message": {"text": "hi"}}',
  };
  for (const [name, body] of Object.entries(cases)) {
    test(`${name} → 400 on both endpoints`, async () => {
      const before = ctx.up.count();
      for (const p of [JSON_PATH, STREAM_PATH]) {
        const r = await postJSON(ctx.sl.echo, p, body);
        const j = assertJSON(r, 400, `${p} with ${name}`);
        assert.equal(typeof j.error, 'string', `${p}: {"error": "..."} expected, got ${r.text}`);
        assert.ok(j.error.length > 0);
      }
      assert.equal(ctx.up.count(), before, 'a bad request reached the upstream');
    });
  }
});

describe('chat dialect: paths match exactly', { timeout: 60_000 }, () => {
  // Without the slash these are the rag dialect's paths (dialect_rag.test.mjs): it answers
  // them, in its own shapes, and the chat dialect does not.
  test('/api/chat/stream (no trailing slash) is not the chat stream: the rag dialect\'s', async () => {
    const s = await stream(ctx.sl.mock, { message: 'no-slash' }, {}, '/api/chat/stream').finished();
    assert.equal(s.status, 200, `/api/chat/stream: ${s.status} ${s.text().slice(0, 200)}`);
    const types = payloads(s, '/api/chat/stream').map((e) => e.type);
    assert.equal(types[0], 'phase', `the rag dialect's phase events first: ${types}`);
    assert.ok(types.includes('sources'), `the rag dialect's sources event: ${types}`);
    assert.ok(!types.includes('start'), `the chat dialect's start event at /api/chat/stream: ${types}`);
  });

  test('/api/chat (no trailing slash) is not the chat JSON endpoint: the rag dialect\'s', async () => {
    const r = await postJSON(ctx.sl.mock, '/api/chat', { message: 'no-slash' });
    const j = assertJSON(r, 200, '/api/chat');
    assert.equal(typeof j.answer, 'string', `the rag dialect's {answer}: ${r.text.slice(0, 200)}`);
    assert.ok(Array.isArray(j.sources), `the rag dialect's {sources}: ${r.text.slice(0, 200)}`);
    assert.ok(!('session_id' in j) && !('response' in j), `/api/chat answered like /api/chat/: ${r.text.slice(0, 200)}`);
  });

  test('GET /api/chat/ is not answered as a chat (405 or 404)', async () => {
    const before = ctx.up.count();
    const r = await request(ctx.sl.echo.url, { method: 'GET', path: JSON_PATH });
    assert.ok(r.status === 405 || r.status === 404, `GET ${JSON_PATH}: ${r.status}`);
    assert.equal(ctx.up.count(), before);
  });
});

describe('chat dialect: an upstream failure is an error event and no end', { timeout: 60_000 }, () => {
  test('upstream drops mid-stream: start, the chunks it sent, error, no end', async () => {
    const msg = uid('chat-drop');
    const s = await stream(ctx.sl.drop, { message: msg }).finished();
    const { chunks } = assertChatStreamError(s, 'dropped upstream');
    assert.deepEqual(nonEmpty(chunks), [`${msg}#0 `, `${msg}#1 `, `${msg}#2 `], 'the chunks before the drop are relayed');
  });

  test('upstream goes silent mid-stream (idle timeout 400 ms): error event, no end', async () => {
    const msg = uid('chat-stall');
    const s = await stream(ctx.sl.stall, { message: msg }).finished(5000);
    const { chunks } = assertChatStreamError(s, 'stalled upstream');
    assert.deepEqual(nonEmpty(chunks), [`${msg}#0 `, `${msg}#1 `]);
  });

  test('upstream answers 500: error event, no end', async () => {
    const s = await stream(ctx.sl.fail, { message: uid('chat-500') }).finished();
    const { chunks } = assertChatStreamError(s, 'upstream 500');
    assert.equal(chunks.length, 0);
  });

  test('upstream answers 500 to /api/chat/: a 5xx with {"error"}', async () => {
    const r = await postJSON(ctx.sl.fail, JSON_PATH, { message: uid('chat-500-json') });
    assert.ok(r.status >= 500 && r.status <= 599, `status ${r.status} ${r.text.slice(0, 200)}`);
    assert.match(r.headers['content-type'] ?? '', /^application\/json/);
    assert.equal(typeof r.json?.error, 'string', `{"error": "..."} expected, got ${r.text}`);
  });

  test('upstream drops during /api/chat/: a 5xx with {"error"}, no partial answer', async () => {
    const r = await postJSON(ctx.sl.drop, JSON_PATH, { message: uid('chat-drop-json') });
    assert.ok(r.status >= 500 && r.status <= 599, `status ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(typeof r.json?.error, 'string', `{"error": "..."} expected, got ${r.text}`);
    assert.ok(!('response' in r.json), 'a partial answer was returned as if complete');
  });
});

describe('chat dialect: a client that leaves cancels the upstream', { timeout: 60_000 }, () => {
  test('mid-stream: the upstream is closed at once, the log says cancelled', async () => {
    const msg = uid('chat-gone');
    const rid = uid('rid');
    const s = stream(ctx.sl.slow, { message: msg }, { 'x-request-id': rid });
    await s.waitFor((x) => x.events.filter((e) => e.json?.type === 'chunk').length >= 3, 3000, 'three chunks');
    s.destroy();
    const rec = await assertUpstreamCancelled(ctx.up, msg, s.destroyedAt);
    assert.ok(rec.bytesWritten < 20000, `the upstream wrote ${rec.bytesWritten} bytes`);
    const l = await logLine(ctx.sl.slow, rid);
    assert.equal(l.dialect, 'chat');
    assert.equal(l.cancelled, true);
  });

  test('before the first token: the upstream is closed at once', async () => {
    const msg = uid('chat-gone-early');
    const s = stream(ctx.sl.hang, { message: msg });
    await ctx.up.waitForRequest((r) => lastUser(r.body) === msg, 3000);
    s.destroy();
    await assertUpstreamCancelled(ctx.up, msg, s.destroyedAt);
  });

  test('while waiting for the JSON answer: the upstream is closed at once', async () => {
    const msg = uid('chat-gone-json');
    const rc = await RawClient.connect(ctx.sl.hang.port);
    await rc.write(formatRequest({ method: 'POST', path: JSON_PATH, body: { message: msg } }));
    await ctx.up.waitForRequest((r) => lastUser(r.body) === msg, 3000);
    const goneAt = performance.now();
    rc.destroy();
    await assertUpstreamCancelled(ctx.up, msg, goneAt);
  });
});

describe('chat dialect: mounting', { timeout: 60_000 }, () => {
  test('enabled: false unmounts it (404), the openai dialect still answers', async () => {
    for (const p of [JSON_PATH, STREAM_PATH]) {
      const r = await postJSON(ctx.sl.off, p, { message: 'off' });
      assert.equal(r.status, 404, `${p} on a sluice with chat disabled: ${r.status} ${r.text.slice(0, 200)}`);
    }
    const r = await postJSON(ctx.sl.off, '/v1/chat/completions', chat('mock-off', 'still here'));
    assert.equal(r.status, 200);
  });

  test('prefix /seed000 mounts both endpoints under it, and not at the root', async () => {
    const j = assertJSON(await postJSON(ctx.sl.prefixed, `/seed000${JSON_PATH}`, { message: 'prefixed' }), 200);
    assert.equal(j.response, await answer());
    const s = await stream(ctx.sl.prefixed, { message: 'prefixed' }, {}, `/seed000${STREAM_PATH}`).finished();
    assert.equal(assertChatStream(s).text, await answer());
    for (const p of [JSON_PATH, STREAM_PATH]) {
      const r = await postJSON(ctx.sl.prefixed, p, { message: 'root' });
      assert.equal(r.status, 404, `${p} without the prefix: ${r.status}`);
    }
  });
});

describe('dialect defaults', { timeout: 60_000 }, () => {
  test('an unconfigured dialect is mounted, open without auth config, and asks for model "default"', async () => {
    const [m1, m2] = [uid('default-monoai'), uid('default-aichat')];
    assertJSON(await postJSON(ctx.sl.off, '/model', { prompt: m1 }), 200, 'monoai with no config');
    const s = await openStream(`${ctx.sl.off.url}/api/ai-chat/stream`, { message: m2 }).finished();
    assert.equal(s.status, 200, `aichat with no config: ${s.status} ${s.text().slice(0, 200)}`);
    for (const m of [m1, m2]) {
      const rec = await ctx.up.waitForRequest((r) => lastUser(r.body) === m, 3000);
      assert.equal(rec.body.model, 'default', `the model asked for ${m}`);
      assert.ok(!('max_tokens' in rec.body), 'max_tokens is the chat dialect\'s default only');
    }
  });

  test('with auth.keys, a dialect defaults to key auth; auth: none opens one dialect only', async () => {
    const before = ctx.up.count();
    assert.equal((await postJSON(ctx.sl.keyed, JSON_PATH, { message: 'no key' })).status, 401, 'chat without a key');
    assert.equal((await postJSON(ctx.sl.keyed, JSON_PATH, { message: 'bad key' }, { authorization: 'Bearer sk-nope' })).status, 401);
    assert.equal((await postJSON(ctx.sl.keyed, '/v1/chat/completions', chat('mock-keyed', 'no key'))).status, 401, 'openai without a key');
    assert.equal(ctx.up.count(), before);
    const j = assertJSON(await postJSON(ctx.sl.keyed, JSON_PATH, { message: 'key' }, { authorization: `Bearer ${CLIENT_KEY}` }), 200);
    assert.equal(j.response, await answer());
    assert.equal(assertJSON(await postJSON(ctx.sl.keyed, '/model', { prompt: 'open' }), 200).response, await answer(), 'monoai has auth: none');
  });
});

describe('openai dialect at /api/v1 (seed 001)', { timeout: 60_000 }, () => {
  test('a stream from /api/v1/chat/completions carries X-Accel-Buffering: no', async () => {
    const s = await openStream(`${ctx.sl.mock.url}/api/v1/chat/completions`, chat('mock-seed001', 'hi', { stream: true })).finished();
    assert.equal(s.headers['x-accel-buffering'], 'no');
    assertChunkStream(s, { model: 'mock-seed001', label: '/api/v1 stream' });
  });
});

ctx.testCleanExit();
