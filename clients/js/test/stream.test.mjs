// streamChat() and collectChat() in node against real sluices, both dialects: the events as
// they come (text deltas, tool-call fragments, finish reason, usage), the request each form of
// options makes (checked through the fake upstream's echo), HTTP errors and in-stream errors
// (thrown after the events before them), and leaving the loop or aborting the signal cancelling
// the request (sluice logs it cancelled; the upstream socket closes early).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { streamChat, collectChat, SluiceError } from '../src/sluice-client.js';
import {
  useSluices, clientConfig, API_KEY, jwt, mockAnswer, rid, logLine, assertUpstreamCancelled, MOCK_TOKENS,
} from './lib/sluices.mjs';

const ctx = useSluices({
  main: (up, db) => clientConfig(up, { db }), /* aichat → mock "any" */
  slow: (up, db) => clientConfig(up, { db, aichat: 'slow' }),
  drop: (up, db) => clientConfig(up, { db, aichat: 'drop-mid:3' }),
  echo: (up, db) => clientConfig(up, { db, aichat: 'echo' }),
}, { secrets: [API_KEY] });

const openai = (extra = {}) => ({ dialect: 'openai', baseUrl: ctx.sl.main.url, apiKey: API_KEY, ...extra });
const aichat = (sl, extra = {}) => ({ dialect: 'aichat', baseUrl: ctx.sl[sl].url, token: jwt(), ...extra });
const chatBody = (model, content = 'hi') => ({ model, messages: [{ role: 'user', content }] });

/* Every event of the loop, and what it threw (null if nothing). */
async function drain(options) {
  const events = [];
  try {
    for await (const ev of streamChat(options)) events.push(ev);
    return { events, error: null };
  } catch (error) {
    return { events, error };
  }
}
const texts = (events) => events.filter((e) => e.type === 'text').map((e) => e.text);

describe('streamChat, OpenAI dialect', { timeout: 30_000 }, () => {
  test('yields each delta as it comes, then finish "stop" and usage, and ends after [DONE]', async () => {
    const full = await mockAnswer(ctx.sl.main);
    const { events, error } = await drain(openai({ body: chatBody('any') }));
    assert.equal(error, null);
    assert.equal(texts(events).length, MOCK_TOKENS, 'one text event per mock token');
    assert.equal(texts(events).join(''), full);
    assert.ok(events.every((e) => e.type !== 'text' || e.choice === 0));
    assert.deepEqual(events.at(-2), { type: 'finish', reason: 'stop', choice: 0 });
    assert.equal(events.at(-1).type, 'usage');
    assert.equal(events.at(-1).usage.completion_tokens, MOCK_TOKENS);
    assert.equal(events.at(-1).usage.total_tokens, events.at(-1).usage.prompt_tokens + MOCK_TOKENS);
    /* sluice sends usage only when stream_options.include_usage asks: streamChat asks unless told. */
    const without = await drain(openai({ body: { ...chatBody('any'), stream_options: { include_usage: false } } }));
    assert.equal(without.error, null);
    assert.equal(without.events.filter((e) => e.type === 'usage').length, 0);
    assert.equal(texts(without.events).join(''), full);
  });

  test('message + history + model make the request: model, stream, history then the message', async () => {
    const history = [{ role: 'user', content: 'earlier' }, { role: 'assistant', content: 'answer before' }];
    const r = await collectChat(openai({ model: 'echo', message: 'now this', history }));
    const upstream = JSON.parse(r.text); /* the fake's echo: the request sluice sent it */
    assert.equal(upstream.body.model, 'echo');
    assert.equal(upstream.body.stream, true);
    assert.deepEqual(upstream.body.messages, [...history, { role: 'user', content: 'now this' }]);
    assert.equal(r.finishReason, 'stop');
  });

  test('tool calls: fragments as events, assembled by collectChat, finish "tool_calls"', async () => {
    const seen = [];
    const r = await collectChat(openai({ body: chatBody('tools') }), (ev) => seen.push(ev));
    const frags = seen.filter((e) => e.type === 'tool_call');
    assert.ok(frags.length > 4, `arguments come in many fragments (${frags.length})`);
    assert.deepEqual(frags.filter((e) => e.id).map((e) => [e.index, e.id, e.name]),
      [[0, 'call_weather_1', 'get_weather'], [1, 'call_time_2', 'get_time']]);
    assert.equal(r.finishReason, 'tool_calls');
    assert.deepEqual(r.toolCalls.map((tc) => [tc.id, tc.type, tc.function.name]),
      [['call_weather_1', 'function', 'get_weather'], ['call_time_2', 'function', 'get_time']]);
    assert.deepEqual(JSON.parse(r.toolCalls[0].function.arguments), { location: 'Paris, France', unit: 'celsius' });
    assert.equal(typeof JSON.parse(r.toolCalls[1].function.arguments).timezone, 'string');
    assert.equal(r.text, '');
  });

  test('an HTTP error throws a SluiceError with status, type, code, message and Retry-After', async () => {
    const { events, error } = await drain(openai({ body: chatBody('status-429') }));
    assert.deepEqual(events, []);
    assert.ok(error instanceof SluiceError, String(error));
    assert.equal(error.name, 'SluiceError');
    assert.equal(error.status, 429);
    assert.equal(error.code, 'fake_429');
    assert.equal(error.type, 'rate_limit_error');
    assert.match(error.message, /429/);
    assert.equal(error.retryAfter, 7);
    assert.equal(error.inStream, false);
  });

  test('no API key: 401 from sluice itself', async () => {
    const { error } = await drain(openai({ apiKey: undefined, body: chatBody('any') }));
    assert.ok(error instanceof SluiceError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.type, 'invalid_request_error');
  });

  test('an in-stream error throws after yielding the deltas before it', async () => {
    const { events, error } = await drain(openai({ body: chatBody('drop-mid:3', 'dropped') }));
    assert.deepEqual(texts(events), ['dropped#0 ', 'dropped#1 ', 'dropped#2 ']);
    assert.ok(error instanceof SluiceError, String(error));
    assert.equal(error.inStream, true);
    assert.equal(error.status, null);
    assert.equal(error.type, 'server_error');
    assert.equal(error.code, 'upstream_disconnected');
  });

  test('break after 3 deltas aborts the request: sluice logs it cancelled', async () => {
    const id = rid('break');
    const t0 = Date.now();
    let n = 0;
    for await (const ev of streamChat(openai({ body: chatBody('slow'), headers: { 'X-Request-Id': id } }))) {
      if (ev.type === 'text' && ++n === 3) break;
    }
    const line = await logLine(ctx.sl.main, id, 5000);
    assert.equal(line.cancelled, true);
    assert.ok(line.completion_tokens < 100, `stopped early (${line.completion_tokens} tokens)`);
    assert.ok(Date.now() - t0 < 5000, 'the slow answer takes 20 s: the loop did not wait for it');
  });

  test('aborting the signal mid-stream throws its AbortError and closes the upstream call', async () => {
    const id = rid('abort');
    const ctrl = new AbortController();
    const got = [];
    let goneAt = 0;
    let thrown = null;
    try {
      for await (const ev of streamChat({ ...openai({ model: 'chunks:300:10', message: id, headers: { 'X-Request-Id': id } }), signal: ctrl.signal })) {
        if (ev.type !== 'text') continue;
        got.push(ev.text);
        if (got.length === 2) {
          goneAt = performance.now();
          ctrl.abort();
        }
      }
    } catch (e) {
      thrown = e;
    }
    assert.ok(thrown, 'the loop must throw');
    assert.equal(thrown.name, 'AbortError');
    assert.ok(!(thrown instanceof SluiceError));
    assert.deepEqual(got, [`${id}#0 `, `${id}#1 `], 'nothing after the abort');
    const line = await logLine(ctx.sl.main, id, 5000);
    assert.equal(line.cancelled, true);
    await assertUpstreamCancelled(ctx.up, id, goneAt);
  });

  test('an already aborted signal throws before anything is sent; an unknown dialect is a TypeError', async () => {
    const ctrl = new AbortController();
    ctrl.abort();
    const { events, error } = await drain({ ...openai({ body: chatBody('any') }), signal: ctrl.signal });
    assert.deepEqual(events, []);
    assert.equal(error?.name, 'AbortError');
    const bad = await drain({ dialect: 'monoai', baseUrl: ctx.sl.main.url });
    assert.ok(bad.error instanceof TypeError);
  });
});

describe('streamChat, aichat dialect (seed 003)', { timeout: 30_000 }, () => {
  test('{content} events as text deltas, ending at {done:true}; no finish or usage', async () => {
    const full = await mockAnswer(ctx.sl.main);
    const { events, error } = await drain(aichat('main', { message: 'hi', history: [], sessionId: 'js-session-1' }));
    assert.equal(error, null);
    assert.equal(events.length, MOCK_TOKENS);
    assert.ok(events.every((e) => e.type === 'text' && e.choice === 0));
    assert.equal(texts(events).join(''), full);
    const r = await collectChat(aichat('main', { message: 'hi' }));
    assert.deepEqual(r, { text: full, toolCalls: [], finishReason: null, usage: null });
  });

  test('message, history and sessionId (or a whole body) are seed 003\'s request', async () => {
    const history = [{ role: 'user', content: 'first' }, { role: 'assistant', content: 'reply' }];
    const a = JSON.parse((await collectChat(aichat('echo', { message: 'second', history, sessionId: 'js-s-2' }))).text);
    assert.deepEqual(a.body.messages, [...history, { role: 'user', content: 'second' }]);
    const b = JSON.parse((await collectChat(aichat('echo', { body: { message: 'as a body', workspaceId: 'w-1' } }))).text);
    assert.deepEqual(b.body.messages.at(-1), { role: 'user', content: 'as a body' });
  });

  test('no token: 401 SluiceError with NestJS\'s message; bad history: 400', async () => {
    const { error } = await drain(aichat('main', { token: undefined, message: 'hi' }));
    assert.ok(error instanceof SluiceError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.type, 'Unauthorized');
    assert.ok(error.message.length > 0 && !error.message.startsWith('{'), error.message);
    const bad = await drain(aichat('main', { body: { message: 'hi', history: 'not an array' } }));
    assert.equal(bad.error?.status, 400);
    assert.match(bad.error.message, /history/);
  });

  test('an in-stream {error, done:true} throws after the deltas before it', async () => {
    const { events, error } = await drain(aichat('drop', { message: 'cut' }));
    assert.deepEqual(texts(events), ['cut#0 ', 'cut#1 ', 'cut#2 ']);
    assert.ok(error instanceof SluiceError, String(error));
    assert.equal(error.inStream, true);
    assert.match(error.message, /closed the connection/);
  });

  test('break aborts the request: sluice logs it cancelled', async () => {
    const id = rid('aichat-break');
    let n = 0;
    for await (const ev of streamChat(aichat('slow', { message: 'stop me', headers: { 'X-Request-Id': id } }))) {
      if (ev.type === 'text' && ++n === 2) break;
    }
    const line = await logLine(ctx.sl.slow, id, 5000);
    assert.equal(line.dialect, 'aichat');
    assert.equal(line.cancelled, true);
  });
});

ctx.testCleanExit();
