// API keys (auth.keys set): a missing or wrong bearer key is 401 and nothing reaches the
// upstream; the right key works, is never forwarded upstream and never appears in stderr.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { expectedClientStream } from './lib/fake-upstream.mjs';
import { request } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { useSluice, baseConfig, chat, CLIENT_KEY, UPSTREAM_KEY } from './lib/sluice.mjs';
import { assertErrorBody } from './lib/checks.mjs';

const WRONG = 'sk-wrong-456';
const ctx = useSluice((up) => baseConfig({ upstreamPort: up.port, auth: true }), { secrets: [CLIENT_KEY, WRONG] });

const post = (body, headers = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, headers });

describe('without the right key', { timeout: 60_000 }, () => {
  const cases = {
    'no Authorization header': {},
    'a wrong key': { authorization: `Bearer ${WRONG}` },
    'the key without "Bearer"': { authorization: CLIENT_KEY },
    'the key as Basic credentials': { authorization: `Basic ${Buffer.from(`x:${CLIENT_KEY}`).toString('base64')}` },
    'a prefix of the key': { authorization: `Bearer ${CLIENT_KEY.slice(0, -1)}` },
    'the key with a suffix': { authorization: `Bearer ${CLIENT_KEY}4` },
    'an empty bearer': { authorization: 'Bearer ' },
  };
  for (const [name, headers] of Object.entries(cases)) {
    test(`${name} → 401, nothing sent upstream`, async () => {
      const before = ctx.up.count();
      assertErrorBody(await post(chat('ok', 'denied'), headers), 401);
      assertErrorBody(await post(chat('ok', 'denied', { stream: true }), headers), 401);
      assertErrorBody(await post(chat('mock-a', 'denied', { stream: true }), headers), 401);
      assert.equal(ctx.up.count(), before, 'a request without a valid key reached the upstream');
    });
  }

  test('401s are in the access log too', async () => {
    await post(chat('ok', 'denied-logged'), { authorization: `Bearer ${WRONG}` });
    await ctx.sl.waitForLog((l) => l.status === 401 && l.path === '/v1/chat/completions', 3000, 'a 401 log line');
  });
});

describe('with the right key', { timeout: 60_000 }, () => {
  test('a raw request passes, and the upstream sees the provider key, not the client key', async () => {
    const body = chat('chunks:3', 'authed', { stream: true });
    const s = await openStream(`${ctx.sl.url}/v1/chat/completions`, body, { headers: { authorization: `Bearer ${CLIENT_KEY}` } }).finished();
    assert.equal(s.status, 200);
    assert.equal(s.body(), expectedClientStream(body));
    const rec = await ctx.up.waitForRequest((r) => r.body?.messages?.[0]?.content === 'authed');
    assert.equal(rec.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.ok(!JSON.stringify(rec.headers).includes(CLIENT_KEY), 'the client key was forwarded upstream');
    assert.ok(!rec.rawBody.toString().includes(CLIENT_KEY), 'the client key appeared in the upstream body');
  });

  test('the official SDK with apiKey works, streaming and not', async () => {
    const sdk = new OpenAI({ apiKey: CLIENT_KEY, baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 });
    const c = await sdk.chat.completions.create(chat('echo', 'sdk-authed'));
    const seen = JSON.parse(c.choices[0].message.content);
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    let text = '';
    for await (const ch of await sdk.chat.completions.create({ ...chat('mock-auth'), stream: true })) text += ch.choices[0]?.delta?.content ?? '';
    assert.ok(text.length > 0);

    const bad = new OpenAI({ apiKey: WRONG, baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 });
    await assert.rejects(bad.chat.completions.create(chat('mock-auth')), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  });
});

ctx.testCleanExit();
