// The azure provider (DESIGN §5): sluice calls {base_url}/openai/deployments/{deployment}/
// chat/completions?api-version=V with an `api-key` header and a body without `model`; the
// deployment is the provider's `deployment`, else the target's model, else the client's model.
// An OpenAI client of sluice gets the same chunk shape as from any provider: Azure's
// prompt-filter chunk (`choices: []`, empty id) never reaches it, a `choices: []` chunk is only
// the usage chunk and only when asked, and Azure's errors arrive as OpenAI error bodies with the
// upstream status.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { AzureOpenAI } from 'openai';
import {
  startFakeAzure, AZURE_KEY, azurePieces, azureUsage, azureCompletion, azureError, TOOL_CALLS,
} from './lib/fake-azure.mjs';
import { openStream } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat, CLIENT_KEY } from './lib/sluice.mjs';
import { assertErrorBody, assertErrorEnding, assertChunkStream } from './lib/checks.mjs';
import { uid } from './lib/dialects.mjs';

const WRONG_KEY = 'az-wrong-key-0000';
let az;
after(async () => { await az?.close(); });

const ctx = useSluice(async () => {
  az = await startFakeAzure();
  // Every provider has a breaker (default 5 failures); this file makes many failures on purpose.
  const p = (extra = {}) => ({ type: 'azure', base_url: az.baseURL, api_key: AZURE_KEY, breaker: { failures: 1000, cooldown: '1s' }, ...extra });
  const cfg = baseConfig({ workers: 2 });
  cfg.providers = {
    ...cfg.providers,
    az: p(),
    azdep: p({ deployment: 'prod-gpt4o' }),
    azver: p({ api_version: '2024-10-21' }),
    azbad: p({ api_key: WRONG_KEY }),
  };
  cfg.models = {
    ...cfg.models,
    'dep-*': [{ provider: 'azdep', model: 'chunks:2' }], // deployment wins over the target's model
    'target-*': [{ provider: 'az', model: 'chunks:2' }],
    'ver-*': [{ provider: 'azver' }],
    'bad-*': [{ provider: 'azbad', retries: 0 }],
    '*': [{ provider: 'az', retries: 0 }],
  };
  return cfg;
}, { upstream: false, secrets: [CLIENT_KEY, AZURE_KEY, WRONG_KEY] });

const url = () => `${ctx.sl.url}/v1/chat/completions`;
let sdkCache;
const sdk = () => (sdkCache ??= new OpenAI({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 }));
const post = (body, headers = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, headers });

/* The one Azure request sent with X-Request-Id rid (bounded wait). */
function azureRequest(rid) {
  return az.waitFor((rs) => rs.find((r) => r.bodyComplete && r.headers['x-request-id'] === rid), 3000, `the azure request ${rid}`);
}

const pickUsage = (u) => u && { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens };

/*
 * The stream a client gets from an Azure deployment through sluice: a strict OpenAI chunk
 * stream (lib/checks.mjs), and Azure's prompt-filter chunk (choices: [], no usage) never
 * reaches the client. Returns what assertChunkStream does.
 */
function assertAzureChunkStream(s, opts) {
  const r = assertChunkStream(s, opts);
  for (const c of r.chunks) {
    assert.ok(!('prompt_filter_results' in c) || c.choices.length > 0, `Azure's prompt-filter chunk reached the client: ${JSON.stringify(c)}`);
  }
  return r;
}

describe('the fake Azure OpenAI, directly, through the openai SDK\'s AzureOpenAI client', { timeout: 60_000 }, () => {
  // If these fail, every result below is suspect.
  const client = (apiKey = AZURE_KEY) => new AzureOpenAI({ endpoint: az.baseURL, apiKey, apiVersion: '2024-06-01', maxRetries: 0, timeout: 5000 });

  test('stream (prompt-filter chunk first), tool calls, non-streaming, errors', async () => {
    const chunks = [];
    for await (const c of await client().chat.completions.create({ ...chat('chunks:3', 'direct'), stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    assert.deepEqual(chunks[0].choices, [], 'Azure starts with a prompt-filter chunk');
    assert.ok(chunks[0].prompt_filter_results);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'direct#0 direct#1 direct#2 ');
    assert.equal(chunks.at(-1).usage.completion_tokens, azureUsage('chunks:3', {}).completion_tokens);
    assert.match(az.last().url, /^\/openai\/deployments\/chunks(:|%3A)3\/chat\/completions\?api-version=2024-06-01$/);
    const final = await client().chat.completions.stream({ ...chat('tools', 'direct') }).finalChatCompletion();
    assert.deepEqual(final.choices[0].message.tool_calls.map((c) => [c.id, c.function.name, c.function.arguments]), TOOL_CALLS.map((t) => [t.id, t.name, t.arguments]));
    const plain = await client().chat.completions.create(chat('ok', 'p'));
    assert.equal(plain.choices[0].message.content, 'p#0 p#1 p#2 p#3 p#4 ');
    await assert.rejects(client('az-nope').chat.completions.create(chat('ok')), (e) => e instanceof OpenAI.AuthenticationError);
    await assert.rejects(client().chat.completions.create(chat('status-429:2')), (e) => e instanceof OpenAI.RateLimitError && e.headers.get('retry-after') === '2');
  });
});

describe('azure: the upstream request', { timeout: 60_000 }, () => {
  test('deployment URL, api-version 2024-06-01, api-key header, body without model, X-Request-Id', async () => {
    const rid = uid('az-url');
    const body = chat('ok', rid, { stream: true });
    const s = await openStream(url(), body, { headers: { 'x-request-id': rid, authorization: 'Bearer sk-client-not-for-azure' } }).finished();
    assert.equal(s.status, 200, s.text().slice(0, 300));
    assert.equal(s.headers['x-request-id'], rid);
    const rec = await azureRequest(rid);
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/openai/deployments/ok/chat/completions');
    assert.deepEqual(rec.query, { 'api-version': '2024-06-01' });
    assert.equal(rec.headers['api-key'], AZURE_KEY);
    assert.equal(rec.headers.authorization, undefined, "the client's Authorization must not reach Azure");
    assert.match(rec.headers['content-type'] ?? '', /^application\/json/);
    assert.equal(rec.status, 200, 'the fake refused the request');
    assert.ok(!('model' in rec.body), `the body must not name a model (the deployment does): ${rec.rawBody}`);
    assert.equal(rec.body.stream, true);
    assert.equal(rec.body.stream_options?.include_usage, true, 'sluice asks for usage itself (DESIGN §3.8)');
    assert.deepEqual(rec.body.messages, body.messages);
  });

  test('deployment: the provider\'s, else the target\'s model, else the client\'s model; api_version from config', async () => {
    const cases = [
      ['dep-x', 'prod-gpt4o', '2024-06-01'],
      ['target-x', 'chunks:2', '2024-06-01'],
      ['chunks:3', 'chunks:3', '2024-06-01'],
      ['ver-x', 'ver-x', '2024-10-21'],
    ];
    for (const [model, deployment, version] of cases) {
      const rid = uid('az-dep');
      const body = chat(model, rid);
      const r = await post(body, { 'x-request-id': rid });
      assert.equal(r.status, 200, `${model}: ${r.status} ${r.text.slice(0, 300)}`);
      const rec = await azureRequest(rid);
      assert.equal(rec.deployment, deployment, `${model}: deployment in ${rec.path}`);
      assert.equal(rec.query['api-version'], version, `${model}: api-version`);
      assert.ok(!('model' in rec.body), `${model}: body has a model`);
      assert.equal(r.json.choices[0].message.content, azurePieces(deployment, rec.body).join(''), `${model}: the answer of deployment ${deployment}`);
    }
  });
});

describe('azure: what the OpenAI client receives', { timeout: 60_000 }, () => {
  test('a stream: role first, content, finish stop, no prompt-filter chunk, no usage chunk', async () => {
    const rid = uid('az-stream');
    const body = chat('chunks:4', rid, { stream: true });
    const s = await openStream(url(), body, { headers: { 'x-request-id': rid } }).finished();
    const { text } = assertAzureChunkStream(s);
    const rec = await azureRequest(rid);
    assert.equal(text, azurePieces('chunks:4', rec.body).join(''));
  });

  test('include_usage: one usage chunk with choices: [] and Azure\'s usage, last before [DONE]', async () => {
    const rid = uid('az-usage');
    const body = chat('chunks:3', rid, { stream: true, stream_options: { include_usage: true } });
    const s = await openStream(url(), body, { headers: { 'x-request-id': rid } }).finished();
    const rec = await azureRequest(rid);
    const { text } = assertAzureChunkStream(s, { usage: azureUsage('chunks:3', rec.body) });
    assert.equal(text, azurePieces('chunks:3', rec.body).join(''));
  });

  test('the openai SDK: create({stream}) and the stream() helper', async () => {
    let text = '';
    const chunks = [];
    for await (const c of await sdk().chat.completions.create({ ...chat('chunks:5', 'az-sdk'), stream: true })) {
      chunks.push(c);
      text += c.choices[0]?.delta?.content ?? '';
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.equal(text, 'az-sdk#0 az-sdk#1 az-sdk#2 az-sdk#3 az-sdk#4 ');
    const final = await sdk().chat.completions.stream({ ...chat('chunks:2', 'az-helper'), stream_options: { include_usage: true } }).finalChatCompletion();
    assert.equal(final.choices[0].message.content, 'az-helper#0 az-helper#1 ');
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.equal(final.usage.completion_tokens, azureUsage('chunks:2', {}).completion_tokens);
  });

  test('streamed tool calls: index, id, type, name, argument fragments; finish tool_calls', async () => {
    const rid = uid('az-tools');
    const tools = TOOL_CALLS.map((t) => ({ type: 'function', function: { name: t.name, parameters: { type: 'object', properties: {} } } }));
    const s = await openStream(url(), chat('tools', rid, { stream: true, tools }), { headers: { 'x-request-id': rid } }).finished();
    const { toolCalls } = assertAzureChunkStream(s, { finish: 'tool_calls' });
    assert.deepEqual(toolCalls, TOOL_CALLS.map((t) => ({ id: t.id, name: t.name, arguments: t.arguments })));
    const rec = await azureRequest(rid);
    assert.deepEqual(rec.body.tools, tools, 'tools go to Azure as the client sent them');
    const final = await sdk().chat.completions.stream({ ...chat('tools', 'az-tools-sdk'), tools }).finalChatCompletion();
    assert.deepEqual(final.choices[0].message.tool_calls.map((c) => [c.id, c.function.name, JSON.parse(c.function.arguments)]),
      TOOL_CALLS.map((t) => [t.id, t.name, JSON.parse(t.arguments)]));
  });

  test('finish_reason content_filter passes through', async () => {
    const s = await openStream(url(), chat('filtered', uid('az-filter'), { stream: true })).finished();
    assertAzureChunkStream(s, { finish: 'content_filter' });
  });

  test('non-streaming: a chat.completion with Azure\'s content and usage; Azure got stream off', async () => {
    const rid = uid('az-plain');
    const c = await sdk().chat.completions.create(chat('chunks:3', rid), { headers: { 'x-request-id': rid } });
    const rec = await azureRequest(rid);
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].message.content, azurePieces('chunks:3', rec.body).join(''));
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.deepEqual(pickUsage(c.usage), azureUsage('chunks:3', rec.body));
    assert.ok(rec.body.stream !== true, 'non-streaming request sent with stream: true');
    assert.ok(!('stream_options' in rec.body), 'stream_options on a non-streaming request');
    const expected = azureCompletion('chunks:3', rec.body);
    assert.equal(c.id, expected.id);
  });

  test('the access log has provider az and Azure\'s token counts, streaming or not', async () => {
    for (const stream of [true, false]) {
      const rid = uid('az-log');
      const body = chat('chunks:2', rid, { stream });
      if (stream) await openStream(url(), body, { headers: { 'x-request-id': rid } }).finished();
      else assert.equal((await post(body, { 'x-request-id': rid })).status, 200);
      const rec = await azureRequest(rid);
      const line = await ctx.sl.waitForLog((l) => l.request_id === rid, 3000, `the log line of ${rid}`);
      const u = azureUsage('chunks:2', rec.body);
      assert.equal(line.provider, 'az');
      assert.equal(line.status, 200);
      assert.equal(line.stream, stream);
      assert.equal(line.prompt_tokens, u.prompt_tokens, `prompt_tokens (stream ${stream})`);
      assert.equal(line.completion_tokens, u.completion_tokens, `completion_tokens (stream ${stream})`);
      assert.equal(line.usage_estimated, false);
    }
  });
});

describe('azure: failures', { timeout: 60_000 }, () => {
  const cases = [
    ['bad-key', 401, () => azureError(401)],
    ['status-404', 404, () => azureError(404)],
    ['status-400', 400, () => azureError(400)],
    ['status-500', 500, () => azureError(500)],
    ['status-429:2', 429, () => azureError(429, { retryAfter: 2 })],
  ];
  for (const [model, status, err] of cases) {
    for (const stream of [false, true]) {
      test(`Azure ${status} (${model}) → ${status} with an OpenAI error body carrying Azure's message (stream: ${stream})`, async () => {
        const r = await post(chat(model, uid('az-err'), { stream }));
        const e = assertErrorBody(r, status);
        assert.ok(e.message.includes(err().error.message), `error.message should carry Azure's message: ${e.message}`);
        if (status === 429) assert.equal(r.headers['retry-after'], '2', 'Retry-After passes through');
      });
    }
  }

  test('Azure drops the connection mid-stream → an error event, no [DONE], no finish stop', async () => {
    const rid = uid('az-drop');
    const s = await openStream(url(), chat('drop-mid:2', rid, { stream: true }), { headers: { 'x-request-id': rid } }).finished();
    assert.equal(s.status, 200);
    assertErrorEnding(s, 'azure drop');
    const text = s.events.filter((e) => e.json?.choices?.length).map((e) => e.json.choices[0].delta?.content ?? '').join('');
    assert.equal(text, `${rid}#0 ${rid}#1 `);
    assert.ok(!s.events.some((e) => e.json && Array.isArray(e.json.choices) && e.json.choices.length === 0 && !e.json.usage),
      "Azure's prompt-filter chunk reached the client");
  });

  test('a client that leaves mid-stream closes the Azure connection at once', async () => {
    const rid = uid('az-cancel');
    const s = openStream(url(), chat('chunks:60:40', rid, { stream: true }), { headers: { 'x-request-id': rid } });
    await s.waitFor((x) => x.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length >= 2, 3000, 'two content chunks');
    s.destroy();
    const rec = await az.waitFor((rs) => rs.find((r) => r.headers['x-request-id'] === rid && r.closed), 1500, 'the azure socket to close');
    assert.equal(rec.closedEarly, true);
    assert.ok(rec.closedAt - s.destroyedAt < 500, `closed ${(rec.closedAt - s.destroyedAt).toFixed(0)} ms after the client left`);
  });
});

ctx.testCleanExit();
