// The official `openai` SDK against sluice: create({stream:true}) iteration, the stream()
// helper with finalChatCompletion(), non-streaming calls, tool calls, errors as the SDK's
// error classes, and models.list().
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertChunks } from './lib/checks.mjs';
import OpenAI from 'openai';
import { contentPieces, TOOL_CALLS, RETRY_AFTER } from './lib/fake-upstream.mjs';
import { useSluice, chat } from './lib/sluice.mjs';

const ctx = useSluice();
// Created on first use: node 20 does not wait for one root before() hook before the next.
let sdkCache;
let apiSdkCache;
const sdk = () => (sdkCache ??= new OpenAI({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 }));
const apiSdk = () => (apiSdkCache ??= new OpenAI({ apiKey: 'sk-any', baseURL: `${ctx.sl.url}/api/v1`, maxRetries: 0, timeout: 10000 }));

describe('openai SDK, mock provider', { timeout: 60_000 }, () => {
  test('chat.completions.create({stream: true}) iterates role, 20 tokens, finish stop', async () => {
    const chunks = [];
    for await (const c of await sdk().chat.completions.create({ ...chat('mock-sdk'), stream: true })) chunks.push(c);
    // What the SDK hands over is the chunks as sent: the whole shape (role first, one finish stop).
    assertChunks(chunks, { model: 'mock-sdk', finish: 'stop', label: 'SDK stream' });
    assert.equal(chunks.filter((c) => c.choices[0]?.delta?.content).length, 20);
    assert.ok(chunks.every((c) => !c.usage), 'no usage without include_usage');
  });

  test('chat.completions.stream() helper: content events and finalChatCompletion() with usage', async () => {
    const runner = sdk().chat.completions.stream({ ...chat('mock-helper'), stream_options: { include_usage: true } });
    let text = '';
    runner.on('content', (delta) => { text += delta; });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.role, 'assistant');
    assert.equal(final.choices[0].message.content, text);
    assert.ok(text.length > 0);
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.equal(final.usage.completion_tokens, 20);
    assert.equal(final.usage.total_tokens, final.usage.prompt_tokens + 20);
    const c = await sdk().chat.completions.create(chat('mock-helper'));
    assert.equal(c.choices[0].message.content, text, 'the same deterministic text without streaming');
  });

  test('non-streaming create() returns a chat.completion with usage', async () => {
    const c = await sdk().chat.completions.create(chat('mock-plain'));
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.equal(c.usage.completion_tokens, 20);
  });

  test('the /api/v1 mount works with the SDK', async () => {
    let text = '';
    for await (const c of await apiSdk().chat.completions.create({ ...chat('mock-api'), stream: true })) text += c.choices[0]?.delta?.content ?? '';
    const plain = await apiSdk().chat.completions.create(chat('mock-api'));
    assert.equal(text, plain.choices[0].message.content);
  });

  test('models.list() returns the configured patterns', async () => {
    const ids = [];
    for await (const m of sdk().models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), ['*', 'mock-*', 'renamed']);
  });
});

describe('openai SDK, OpenAI-compatible upstream through sluice', { timeout: 60_000 }, () => {
  test('streamed content equals what the upstream sent', async () => {
    let text = '';
    for await (const c of await sdk().chat.completions.create({ ...chat('chunks:6', 'sdk-pass'), stream: true })) text += c.choices[0]?.delta?.content ?? '';
    assert.equal(text, contentPieces(chat('chunks:6', 'sdk-pass')).join(''));
  });

  test('streamed tool calls assemble in the stream helper', async () => {
    const runner = sdk().chat.completions.stream({
      ...chat('tools', 'weather and time?'),
      tools: TOOL_CALLS.map((t) => ({ type: 'function', function: { name: t.name, parameters: { type: 'object', properties: {} } } })),
    });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    const calls = final.choices[0].message.tool_calls;
    assert.deepEqual(calls.map((c) => [c.id, c.type, c.function.name, JSON.parse(c.function.arguments)]),
      TOOL_CALLS.map((t) => [t.id, 'function', t.name, JSON.parse(t.arguments)]));
  });

  test('an upstream drop mid-stream surfaces as an error in the SDK, after the content so far', async () => {
    let text = '';
    await assert.rejects(async () => {
      for await (const c of await sdk().chat.completions.create({ ...chat('drop-mid:2', 'sdk-drop'), stream: true })) text += c.choices[0]?.delta?.content ?? '';
    }, (e) => e instanceof OpenAI.APIError);
    assert.equal(text, 'sdk-drop#0 sdk-drop#1 ');
  });

  test('an upstream 429 is a RateLimitError with Retry-After', async () => {
    await assert.rejects(sdk().chat.completions.create({ ...chat('status-429'), stream: true }), (e) => {
      assert.ok(e instanceof OpenAI.RateLimitError, `${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 429);
      assert.equal(e.headers.get('retry-after'), RETRY_AFTER);
      return true;
    });
  });

  test('an invalid request is a BadRequestError', async () => {
    await assert.rejects(sdk().chat.completions.create({ model: 'mock-x', messages: [] }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
  });
});

ctx.testCleanExit();
