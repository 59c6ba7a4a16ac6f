// The anthropic provider (DESIGN §5): an OpenAI client of sluice talks to Anthropic's Messages
// API without knowing it. Requests are translated (system prompt → `system`, max_tokens default
// 1024 or the provider's, stop → stop_sequences, tools → input_schema, tool_choice, assistant
// tool calls → tool_use blocks, tool messages → tool_result blocks; headers x-api-key and
// anthropic-version) and the fake validates them as the real API would (400 otherwise). Answers
// come back as OpenAI chunks: role first, text deltas as content, input_json_delta as tool-call
// argument fragments (tool indexes counted from 0), stop reasons end_turn → stop, tool_use →
// tool_calls, max_tokens → length, usage from message_start + message_delta (only sent to the
// client when asked). 529 overloaded → 503; other statuses kept; Retry-After passes; a mid-stream
// `event: error` or a drop is an error event without [DONE].
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
  startFakeAnthropic, ANTHROPIC_KEY, ANTHROPIC_VERSION, ANTHROPIC_TOOL_CALLS, TOOLS_TEXT,
  anthropicPieces, expectedUsage, anthropicError,
} from './lib/fake-anthropic.mjs';
import { openStream } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat, CLIENT_KEY } from './lib/sluice.mjs';
import { assertErrorBody, assertErrorEnding, assertChunkStream } from './lib/checks.mjs';
import { uid } from './lib/dialects.mjs';

let ant;
after(async () => { await ant?.close(); });

const ctx = useSluice(async () => {
  ant = await startFakeAnthropic();
  const cfg = baseConfig({ workers: 2 });
  cfg.providers = {
    ...cfg.providers,
    // Every provider has a breaker (default 5 failures); this file makes many failures on purpose.
    ant: { type: 'anthropic', base_url: ant.baseURL, api_key: ANTHROPIC_KEY, breaker: { failures: 1000, cooldown: '1s' } },
    ant2: { type: 'anthropic', base_url: ant.baseURL, api_key: ANTHROPIC_KEY, api_version: '2023-01-01', max_tokens: 333 },
  };
  cfg.models = {
    ...cfg.models,
    'c2-*': [{ provider: 'ant2', retries: 0 }],
    renamed: [{ provider: 'ant', model: 'chunks:3', retries: 0 }],
    '*': [{ provider: 'ant', retries: 0 }],
  };
  return cfg;
}, { upstream: false, secrets: [CLIENT_KEY, ANTHROPIC_KEY] });

const url = () => `${ctx.sl.url}/v1/chat/completions`;
let sdkCache;
const sdk = () => (sdkCache ??= new OpenAI({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 }));
const post = (body, headers = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, headers });

/* The Anthropic request sent with X-Request-Id rid (bounded wait). */
function antRequest(rid) {
  return ant.waitFor((rs) => rs.find((r) => r.bodyComplete && r.headers['x-request-id'] === rid), 3000, `the anthropic request ${rid}`);
}

/* Asserts the fake accepted the translated request (it answers 400 with the reason otherwise). */
function assertAccepted(rec) {
  assert.equal(rec.invalid ?? null, null, `Anthropic would refuse sluice's request: ${rec.invalid}\nbody: ${rec.rawBody}`);
}

/* Blocks of a content (string → one text block), consecutive turns of one role merged (as the
 * API does): the shape the model sees. */
function turns(messages) {
  const out = [];
  for (const m of messages) {
    const blocks = typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content.map((b) => {
      if (b.type !== 'tool_result') return b;
      const c = typeof b.content === 'string' ? b.content : (b.content ?? []).map((x) => x.text).join('');
      return { type: 'tool_result', tool_use_id: b.tool_use_id, content: c };
    });
    if (out.length && out.at(-1).role === m.role) out.at(-1).content.push(...blocks);
    else out.push({ role: m.role, content: [...blocks] });
  }
  return out;
}

const systemText = (s) => (typeof s === 'string' ? s : Array.isArray(s) ? s.map((b) => b.text).join('\n') : s);
const pickUsage = (u) => u && { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens };


const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather at a place',
    parameters: { type: 'object', properties: { location: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } }, required: ['location'] } } },
  { type: 'function', function: { name: 'get_time', description: 'Time in a zone',
    parameters: { type: 'object', properties: { timezone: { type: 'string' }, format: { type: 'string' } } } } },
];

describe('the fake Anthropic API, directly, through the official @anthropic-ai/sdk', { timeout: 60_000 }, () => {
  // If these fail, every result below is suspect.
  const client = () => new Anthropic({ baseURL: ant.baseURL.replace(/\/v1$/, ''), apiKey: ANTHROPIC_KEY, maxRetries: 0, timeout: 5000 });

  test('stream: the SDK assembles text + tool_use blocks, stop_reason and usage', async () => {
    const final = await client().messages.stream({ model: 'tools', max_tokens: 100, system: 'be brief',
      messages: [{ role: 'user', content: 'direct' }], tools: [{ name: 'get_weather', input_schema: { type: 'object' } }] }).finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    assert.deepEqual(final.content.map((b) => (b.type === 'text' ? b.text : [b.id, b.name, b.input])),
      [TOOLS_TEXT, ...ANTHROPIC_TOOL_CALLS.map((t) => [t.id, t.name, t.input])]);
    assert.deepEqual({ prompt_tokens: final.usage.input_tokens, completion_tokens: final.usage.output_tokens }, {
      prompt_tokens: expectedUsage('tools', 'direct').prompt_tokens, completion_tokens: expectedUsage('tools', 'direct').completion_tokens });
  });

  test('non-streaming message; 529 and mid-stream errors are the SDK\'s errors; invalid requests are refused', async () => {
    const msg = await client().messages.create({ model: 'chunks:2', max_tokens: 10, messages: [{ role: 'user', content: 'q' }] });
    assert.deepEqual(msg.content, [{ type: 'text', text: 'q#0 q#1 ' }]);
    assert.equal(msg.stop_reason, 'end_turn');
    await assert.rejects(client().messages.create({ model: 'overloaded', max_tokens: 10, messages: [{ role: 'user', content: 'q' }] }),
      (e) => e instanceof Anthropic.APIError && e.status === 529 && e.error?.error?.type === 'overloaded_error');
    await assert.rejects(async () => {
      for await (const ev of await client().messages.create({ model: 'error-mid:2', max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'q' }] })) void ev;
    }, (e) => e instanceof Anthropic.APIError);
    for (const bad of [{ messages: [{ role: 'system', content: 'q' }] }, { messages: [{ role: 'user', content: 'q' }], stream_options: {} }]) {
      await assert.rejects(client().messages.create({ model: 'text', max_tokens: 10, ...bad }), (e) => e instanceof Anthropic.BadRequestError);
    }
    await assert.rejects(new Anthropic({ baseURL: ant.baseURL.replace(/\/v1$/, ''), apiKey: 'sk-ant-wrong', maxRetries: 0 })
      .messages.create({ model: 'text', max_tokens: 10, messages: [{ role: 'user', content: 'q' }] }), (e) => e instanceof Anthropic.AuthenticationError);
  });
});

describe('anthropic: streaming answers as OpenAI chunks', { timeout: 60_000 }, () => {
  test('text: role first, text deltas as content, end_turn → stop, no usage chunk, no Anthropic events', async () => {
    const rid = uid('ant-text');
    const body = chat('chunks:4', rid, { stream: true });
    const s = await openStream(url(), body, { headers: { 'x-request-id': rid } }).finished();
    const { text } = assertChunkStream(s);
    assert.equal(text, anthropicPieces('chunks:4', rid).join(''));
    assert.ok(!/message_start|content_block|message_delta|"ping"/.test(s.text()), `Anthropic event names leaked:\n${s.text().slice(0, 500)}`);
  });

  test('include_usage: a usage chunk with choices: [], prompt = input_tokens, completion = final output_tokens', async () => {
    const rid = uid('ant-usage');
    const s = await openStream(url(), chat('chunks:3', rid, { stream: true, stream_options: { include_usage: true } })).finished();
    const { text } = assertChunkStream(s, { usage: expectedUsage('chunks:3', rid) });
    assert.equal(text, anthropicPieces('chunks:3', rid).join(''));
  });

  test('max_tokens stop → finish_reason length', async () => {
    const s = await openStream(url(), chat('max-tokens', uid('ant-len'), { stream: true })).finished();
    assertChunkStream(s, { finish: 'length' });
  });

  test('tool use: text + two tool calls with index 0 and 1, ids, names, argument fragments; finish tool_calls', async () => {
    const rid = uid('ant-tools');
    const s = await openStream(url(), chat('tools', rid, { stream: true, tools: TOOLS, tool_choice: 'auto', stream_options: { include_usage: true } }),
      { headers: { 'x-request-id': rid } }).finished();
    const { text, toolCalls } = assertChunkStream(s, { finish: 'tool_calls', usage: expectedUsage('tools', rid) });
    assert.equal(text, TOOLS_TEXT);
    assert.deepEqual(toolCalls.map((t) => ({ ...t, arguments: JSON.parse(t.arguments) })),
      ANTHROPIC_TOOL_CALLS.map((t) => ({ id: t.id, name: t.name, arguments: t.input })));
    const fragments = s.events.filter((e) => e.json?.choices?.[0]?.delta?.tool_calls).length;
    assert.ok(fragments > 4, `arguments must stream as fragments, got ${fragments} tool-call deltas`);
  });

  test('the openai SDK: create({stream}) and the stream() helper with tools and usage', async () => {
    let text = '';
    const chunks = [];
    for await (const c of await sdk().chat.completions.create({ ...chat('chunks:5', 'ant-sdk'), stream: true })) {
      chunks.push(c);
      text += c.choices[0]?.delta?.content ?? '';
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.equal(text, anthropicPieces('chunks:5', 'ant-sdk').join(''));
    const final = await sdk().chat.completions.stream({ ...chat('tools', 'ant-helper'), tools: TOOLS, stream_options: { include_usage: true } }).finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    assert.equal(final.choices[0].message.content, TOOLS_TEXT);
    assert.deepEqual(final.choices[0].message.tool_calls.map((c) => [c.id, c.type, c.function.name, JSON.parse(c.function.arguments)]),
      ANTHROPIC_TOOL_CALLS.map((t) => [t.id, 'function', t.name, t.input]));
    assert.deepEqual(pickUsage(final.usage), expectedUsage('tools', 'ant-helper'));
  });

  test('the access log has provider ant and Anthropic\'s token counts, without include_usage', async () => {
    const rid = uid('ant-log');
    await openStream(url(), chat('chunks:2', rid, { stream: true }), { headers: { 'x-request-id': rid } }).finished();
    const line = await ctx.sl.waitForLog((l) => l.request_id === rid, 3000, 'the log line');
    const u = expectedUsage('chunks:2', rid);
    assert.equal(line.provider, 'ant');
    assert.equal(line.status, 200);
    assert.equal(line.prompt_tokens, u.prompt_tokens);
    assert.equal(line.completion_tokens, u.completion_tokens, 'completion = message_delta output_tokens (cumulative, not added to message_start\'s)');
    assert.equal(line.usage_estimated, false);
  });
});

describe('anthropic: non-streaming answers', { timeout: 60_000 }, () => {
  test('a chat.completion with the text, finish stop and usage; Anthropic got no stream', async () => {
    const rid = uid('ant-plain');
    const c = await sdk().chat.completions.create(chat('chunks:3', rid), { headers: { 'x-request-id': rid } });
    assert.equal(c.object, 'chat.completion');
    assert.equal(typeof c.id, 'string');
    assert.equal(c.choices[0].index, 0);
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].message.content, anthropicPieces('chunks:3', rid).join(''));
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.deepEqual(pickUsage(c.usage), expectedUsage('chunks:3', rid));
    const rec = await antRequest(rid);
    assertAccepted(rec);
    assert.ok(rec.body.stream !== true, 'stream: true on a non-streaming call');
  });

  test('tool use → message.tool_calls (arguments as a JSON string), finish tool_calls', async () => {
    const c = await sdk().chat.completions.create({ ...chat('tools', 'ant-plain-tools'), tools: TOOLS });
    assert.equal(c.choices[0].finish_reason, 'tool_calls');
    assert.equal(c.choices[0].message.content, TOOLS_TEXT);
    assert.deepEqual(c.choices[0].message.tool_calls.map((t) => [t.id, t.type, t.function.name, JSON.parse(t.function.arguments)]),
      ANTHROPIC_TOOL_CALLS.map((t) => [t.id, 'function', t.name, t.input]));
    assert.deepEqual(pickUsage(c.usage), expectedUsage('tools', 'ant-plain-tools'));
  });

  test('max_tokens stop → finish_reason length', async () => {
    const c = await sdk().chat.completions.create(chat('max-tokens', 'ant-plain-len'));
    assert.equal(c.choices[0].finish_reason, 'length');
  });
});

describe('anthropic: the request sluice sends', { timeout: 60_000 }, () => {
  test('POST /v1/messages, x-api-key, anthropic-version 2023-06-01, system moved out, max_tokens 1024, no OpenAI-only fields', async () => {
    const rid = uid('ant-req');
    const body = { model: 'chunks:2', stream: true, messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: rid }] };
    const s = await openStream(url(), body, { headers: { 'x-request-id': rid, authorization: 'Bearer sk-client-not-for-anthropic' } }).finished();
    assert.equal(s.status, 200, s.text().slice(0, 300));
    assert.equal(s.headers['x-request-id'], rid);
    const rec = await antRequest(rid);
    assertAccepted(rec);
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/v1/messages');
    assert.equal(rec.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(rec.headers['anthropic-version'], ANTHROPIC_VERSION);
    assert.equal(rec.headers.authorization, undefined, "the client's Authorization must not reach Anthropic");
    assert.match(rec.headers['content-type'] ?? '', /^application\/json/);
    assert.equal(rec.body.model, 'chunks:2');
    assert.equal(rec.body.stream, true);
    assert.equal(rec.body.max_tokens, 1024);
    assert.equal(systemText(rec.body.system), 'You are terse.');
    assert.deepEqual(turns(rec.body.messages), [{ role: 'user', content: [{ type: 'text', text: rid }] }]);
  });

  test('provider config: api_version → anthropic-version, max_tokens → the default', async () => {
    const rid = uid('ant-cfg');
    assert.equal((await post(chat('c2-x', rid), { 'x-request-id': rid })).status, 200);
    const rec = await antRequest(rid);
    assertAccepted(rec);
    assert.equal(rec.headers['anthropic-version'], '2023-01-01');
    assert.equal(rec.body.max_tokens, 333);
  });

  test("the client's max_tokens or max_completion_tokens wins over the default", async () => {
    for (const [extra, want] of [[{ max_tokens: 77 }, 77], [{ max_completion_tokens: 55 }, 55]]) {
      const rid = uid('ant-max');
      assert.equal((await post(chat('text', rid, extra), { 'x-request-id': rid })).status, 200);
      const rec = await antRequest(rid);
      assertAccepted(rec);
      assert.equal(rec.body.max_tokens, want, JSON.stringify(extra));
    }
  });

  test('a target model renames the upstream model', async () => {
    const rid = uid('ant-rename');
    const r = await post(chat('renamed', rid), { 'x-request-id': rid });
    assert.equal(r.status, 200);
    const rec = await antRequest(rid);
    assert.equal(rec.body.model, 'chunks:3');
    assert.equal(r.json.choices[0].message.content, anthropicPieces('chunks:3', rid).join(''));
  });

  test('temperature and top_p pass; stop (string or list) → stop_sequences; a conversation keeps its turns', async () => {
    const rid = uid('ant-params');
    const body = { model: 'text', temperature: 0.25, top_p: 0.5, stop: ['END', 'STOP'], messages: [
      { role: 'user', content: 'first question' }, { role: 'assistant', content: 'first answer' }, { role: 'user', content: rid }] };
    const r = await post(body, { 'x-request-id': rid });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const rec = await antRequest(rid);
    assertAccepted(rec);
    assert.equal(rec.body.temperature, 0.25);
    assert.equal(rec.body.top_p, 0.5);
    assert.deepEqual(rec.body.stop_sequences, ['END', 'STOP']);
    assert.deepEqual(turns(rec.body.messages), [
      { role: 'user', content: [{ type: 'text', text: 'first question' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'first answer' }] },
      { role: 'user', content: [{ type: 'text', text: rid }] }]);
    const rid2 = uid('ant-stop');
    assert.equal((await post({ ...chat('text', rid2), stop: 'END' }, { 'x-request-id': rid2 })).status, 200);
    assert.deepEqual((await antRequest(rid2)).body.stop_sequences, ['END']);
  });

  test('tools → {name, description, input_schema}; tool_choice auto/required/named → auto/any/tool', async () => {
    const cases = [
      ['auto', { type: 'auto' }],
      ['required', { type: 'any' }],
      [{ type: 'function', function: { name: 'get_time' } }, { type: 'tool', name: 'get_time' }],
    ];
    for (const [choice, want] of cases) {
      const rid = uid('ant-toolchoice');
      const r = await post({ ...chat('text', rid), tools: TOOLS, tool_choice: choice }, { 'x-request-id': rid });
      assert.equal(r.status, 200, `${JSON.stringify(choice)}: ${r.text.slice(0, 300)}`);
      const rec = await antRequest(rid);
      assertAccepted(rec);
      assert.deepEqual((rec.body.tools ?? []).map((x) => ({ name: x.name, description: x.description, input_schema: x.input_schema })), TOOLS.map((t) => ({ name: t.function.name, description: t.function.description, input_schema: t.function.parameters })));
      assert.deepEqual({ type: rec.body.tool_choice?.type, ...(rec.body.tool_choice?.name ? { name: rec.body.tool_choice.name } : {}) }, want, JSON.stringify(choice));
    }
  });

  test('assistant tool_calls → tool_use blocks, tool messages → tool_result blocks in one user turn', async () => {
    const rid = uid('ant-results');
    const [w, t] = ANTHROPIC_TOOL_CALLS;
    const body = { model: 'text', tools: TOOLS, messages: [
      { role: 'user', content: 'weather and time in Paris?' },
      { role: 'assistant', content: 'Checking.', tool_calls: [
        { id: w.id, type: 'function', function: { name: w.name, arguments: w.arguments } },
        { id: t.id, type: 'function', function: { name: t.name, arguments: t.arguments } }] },
      { role: 'tool', tool_call_id: w.id, content: '18C and sunny' },
      { role: 'tool', tool_call_id: t.id, content: '14:05' },
      { role: 'user', content: rid },
    ] };
    const r = await post(body, { 'x-request-id': rid });
    const rec = await antRequest(rid);
    assertAccepted(rec);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.deepEqual(turns(rec.body.messages), [
      { role: 'user', content: [{ type: 'text', text: 'weather and time in Paris?' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: w.id, name: w.name, input: w.input },
        { type: 'tool_use', id: t.id, name: t.name, input: t.input }] },
      { role: 'user', content: [
        { type: 'tool_result', tool_use_id: w.id, content: '18C and sunny' },
        { type: 'tool_result', tool_use_id: t.id, content: '14:05' },
        { type: 'text', text: rid }] },
    ]);
  });
});

describe('anthropic: failures', { timeout: 60_000 }, () => {
  for (const stream of [false, true]) {
    test(`529 overloaded_error → 503 with an OpenAI error body (stream: ${stream})`, async () => {
      const r = await post(chat('overloaded', uid('ant-529'), { stream }));
      assertErrorBody(r, 503);
    });

    test(`429 → 429 with Retry-After passed through (stream: ${stream})`, async () => {
      const r = await post(chat('status-429:3', uid('ant-429'), { stream }));
      assertErrorBody(r, 429);
      assert.equal(r.headers['retry-after'], '3');
    });

    for (const status of [400, 401, 404, 500]) {
      test(`${status} → ${status}, the message carried over (stream: ${stream})`, async () => {
        const r = await post(chat(`status-${status}`, uid('ant-st'), { stream }));
        const e = assertErrorBody(r, status);
        assert.ok(e.message.includes(anthropicError(status).error.message), `error.message: ${e.message}`);
      });
    }
  }

  test('a mid-stream `event: error` → the content so far, then an error event, no [DONE]', async () => {
    const rid = uid('ant-mid');
    const s = await openStream(url(), chat('error-mid:2', rid, { stream: true })).finished();
    assert.equal(s.status, 200);
    assertErrorEnding(s, 'anthropic error-mid');
    const text = s.events.filter((e) => e.json?.choices?.length).map((e) => e.json.choices[0].delta?.content ?? '').join('');
    assert.equal(text, anthropicPieces('error-mid:2', rid).join(''));
    assert.equal(s.events.find((e) => e.json?.choices)?.json.choices[0].delta.role, 'assistant');
    await assert.rejects(async () => {
      for await (const c of await sdk().chat.completions.create({ ...chat('error-mid:2', 'ant-mid-sdk'), stream: true })) void c;
    }, (e) => e instanceof OpenAI.APIError, 'the SDK must raise on the error event');
  });

  test('Anthropic drops the connection mid-stream → an error event, no [DONE]', async () => {
    const rid = uid('ant-drop');
    const s = await openStream(url(), chat('drop-mid:2', rid, { stream: true })).finished();
    assert.equal(s.status, 200);
    assertErrorEnding(s, 'anthropic drop');
    const text = s.events.filter((e) => e.json?.choices?.length).map((e) => e.json.choices[0].delta?.content ?? '').join('');
    assert.equal(text, anthropicPieces('drop-mid:2', rid).join(''));
  });

  test('a client that leaves mid-stream closes the Anthropic connection at once', async () => {
    const rid = uid('ant-cancel');
    const s = openStream(url(), chat('chunks:60:40', rid, { stream: true }), { headers: { 'x-request-id': rid } });
    await s.waitFor((x) => x.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length >= 2, 3000, 'two content chunks');
    s.destroy();
    const rec = await ant.waitFor((rs) => rs.find((r) => r.headers['x-request-id'] === rid && r.closed), 1500, 'the anthropic socket to close');
    assert.equal(rec.closedEarly, true);
    assert.ok(rec.closedAt - s.destroyedAt < 500, `closed ${(rec.closedAt - s.destroyedAt).toFixed(0)} ms after the client left`);
  });
});

ctx.testCleanExit();
