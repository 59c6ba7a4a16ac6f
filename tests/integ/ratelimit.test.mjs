// Rate limits on one instance (DESIGN §6): token buckets for requests/minute and tokens/minute
// per key (a key's own rpm/tpm override rate_limits.per_key), per user id (monoai user_id) and per
// client IP. Buckets start full and refill continuously (rpm/60 per second). Tokens are estimated
// up front (prompt bytes/4 + max_tokens) and settled with the real usage. Every answer to a
// limited request carries the six x-ratelimit-* headers; over the limit → 429 with Retry-After
// and an OpenAI rate_limit_error (FastAPI's {"detail"} on monoai), and nothing goes upstream.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import OpenAI from 'openai';
import { request } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { usageFor } from './lib/fake-upstream.mjs';
import { baseConfig, chat } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, assertNothingUpstream, assertJSON, postJSON } from './lib/dialects.mjs';

const K = {
  plain: 'sk-rl-plain-1111', // no limits of its own: per_key (rpm 3)
  rpm5: 'sk-rl-rpm5-2222',
  tpm: 'sk-rl-tpm-3333', // tpm 300
  tpm2: 'sk-rl-tpm2-4444', // tpm 1000
  refill: 'sk-rl-refill-5555', // rpm 60: one request a second
  other: 'sk-rl-other-6666',
};
const ctx = useSluices({
  keys: (up, db) => ({
    ...baseConfig({ upstreamPort: up.port, workers: 2 }),
    auth: {
      keys: [
        { name: 'plain', key: K.plain },
        { name: 'rpm5', key: K.rpm5, rpm: 5 },
        { name: 'tpm', key: K.tpm, rpm: 1000, tpm: 300 },
        { name: 'tpm2', key: K.tpm2, rpm: 1000, tpm: 1000 },
        { name: 'refill', key: K.refill, rpm: 60 },
        { name: 'other', key: K.other, rpm: 1000 },
      ],
    },
    rate_limits: { per_key: { rpm: 3, tpm: 100000 } },
    store: { sqlite: db },
  }),
  ip: (up, db) => ({ ...baseConfig({ upstreamPort: up.port, workers: 2 }), rate_limits: { per_ip: { rpm: 4, tpm: 100000 } }, store: { sqlite: db } }),
  user: (up, db) => ({
    ...baseConfig({ upstreamPort: up.port, workers: 2 }),
    rate_limits: { per_user: { rpm: 2, tpm: 100000 } },
    store: { sqlite: db },
    dialects: { monoai: { model: 'ok', auth: 'none' } },
  }),
}, { secrets: Object.values(K) });

const post = (sl, body, key, headers = {}) => request(sl.url, {
  method: 'POST', path: '/v1/chat/completions', body,
  headers: key ? { authorization: `Bearer ${key}`, ...headers } : headers,
});

const RL = ['limit-requests', 'remaining-requests', 'reset-requests', 'limit-tokens', 'remaining-tokens', 'reset-tokens'];

/* The six x-ratelimit-* headers, present and well-formed; numbers for limit/remaining. */
function rl(headers, label = 'answer') {
  const out = {};
  for (const k of RL) {
    const v = headers[`x-ratelimit-${k}`];
    assert.ok(typeof v === 'string' && v.length > 0, `${label}: x-ratelimit-${k} missing (headers: ${JSON.stringify(headers)})`);
    if (k.startsWith('reset')) {
      assert.match(v, /^\d/, `${label}: x-ratelimit-${k}: ${v}`);
      out[k] = v;
    } else {
      assert.match(v, /^\d+$/, `${label}: x-ratelimit-${k}: ${v}`);
      out[k] = Number(v);
    }
  }
  assert.ok(out['remaining-requests'] <= out['limit-requests'], `${label}: remaining > limit`);
  assert.ok(out['remaining-tokens'] <= out['limit-tokens'], `${label}: remaining tokens > limit`);
  return out;
}

/* A 429 of the OpenAI dialect: error body, Retry-After (whole seconds in [1, maxRetry]), headers. */
function assert429(r, { maxRetry = 60, label = '429' } = {}) {
  assertErrorBody(r, 429, { type: 'rate_limit_error', code: 'rate_limit_exceeded' });
  const ra = r.headers['retry-after'];
  assert.match(ra ?? '', /^\d+$/, `${label}: Retry-After ${JSON.stringify(ra)}`);
  assert.ok(Number(ra) >= 1 && Number(ra) <= maxRetry, `${label}: Retry-After ${ra} not in [1, ${maxRetry}]`);
  return rl(r.headers, label);
}

describe('per key', { timeout: 60_000 }, () => {
  test('every answer carries the x-ratelimit headers; remaining-requests drops by one per request', async () => {
    const sl = ctx.sl.keys;
    const seen = [];
    const r1 = await post(sl, chat('ok', uid('h1')), K.rpm5);
    assert.equal(r1.status, 200);
    seen.push(rl(r1.headers, 'non-streaming #1'));
    const s = await openStream(`${sl.url}/v1/chat/completions`, chat('chunks:3', uid('h2'), { stream: true }), { headers: { authorization: `Bearer ${K.rpm5}` } }).finished();
    assert.equal(s.status, 200);
    seen.push(rl(s.headers, 'SSE #2'));
    const r3 = await post(sl, chat('mock-rl', uid('h3')), K.rpm5);
    assert.equal(r3.status, 200);
    seen.push(rl(r3.headers, 'mock #3'));
    const r4 = await post(sl, chat('ok', uid('h4'), { stream: true }), K.rpm5);
    assert.equal(r4.status, 200);
    seen.push(rl(r4.headers, 'SSE #4'));
    const r5 = await post(sl, chat('ok', uid('h5')), K.rpm5);
    assert.equal(r5.status, 200);
    seen.push(rl(r5.headers, 'non-streaming #5'));
    for (const h of seen) {
      assert.equal(h['limit-requests'], 5, 'the key\'s own rpm');
      assert.equal(h['limit-tokens'], 100000, 'per_key tpm (the key sets none)');
    }
    assert.deepEqual(seen.map((h) => h['remaining-requests']), [4, 3, 2, 1, 0], 'remaining-requests after each request');
  });

  test('over the key\'s rpm: 429 rate_limit_exceeded with Retry-After and the headers, nothing upstream (streaming too)', async () => {
    const sl = ctx.sl.keys;
    // Use up what the previous test left of the bucket (all of it when that test passed).
    for (let i = 0; i < 5; i++) {
      const r = await post(sl, chat('ok', uid('use-up')), K.rpm5);
      if (r.status !== 200 || r.headers['x-ratelimit-remaining-requests'] === '0') break;
    }
    const tag = uid('over');
    const n = ctx.up.count();
    const h = assert429(await post(sl, chat('ok', tag), K.rpm5), { maxRetry: 13, label: 'non-streaming' });
    assert.equal(h['remaining-requests'], 0);
    assert.equal(h['limit-requests'], 5);
    const rs = await post(sl, chat('ok', tag, { stream: true }), K.rpm5);
    assert.match(rs.headers['content-type'] ?? '', /^application\/json/i, 'a refused stream is a JSON error, not SSE');
    assert429(rs, { maxRetry: 13, label: 'streaming' });
    assert429(await post(sl, chat('mock-rl', tag), K.rpm5), { maxRetry: 13, label: 'mock' });
    assertNothingUpstream(ctx.up, tag, n);
    const sdk = new OpenAI({ apiKey: K.rpm5, baseURL: sl.baseURL, maxRetries: 0, timeout: 10000 });
    await assert.rejects(sdk.chat.completions.create(chat('ok', tag)),
      (e) => e instanceof OpenAI.RateLimitError && e.status === 429 && e.code === 'rate_limit_exceeded');
    assert.equal(ctx.up.count(), n, 'a refused request reached the upstream');
    assert.equal((await post(sl, chat('ok', uid('other-key')), K.other)).status, 200, 'another key has its own bucket');
  });

  test('a key without limits of its own gets rate_limits.per_key (rpm 3)', async () => {
    const sl = ctx.sl.keys;
    const rem = [];
    for (let i = 0; i < 3; i++) {
      const r = await post(sl, chat('ok', uid('plain')), K.plain);
      assert.equal(r.status, 200, `request ${i + 1}: ${r.status} ${r.text.slice(0, 200)}`);
      const h = rl(r.headers, `plain #${i + 1}`);
      assert.equal(h['limit-requests'], 3);
      rem.push(h['remaining-requests']);
    }
    assert.deepEqual(rem, [2, 1, 0]);
    const tag = uid('plain-over');
    const n = ctx.up.count();
    assert429(await post(sl, chat('ok', tag), K.plain), { maxRetry: 21 });
    assertNothingUpstream(ctx.up, tag, n);
  });

  test('buckets refill continuously: rpm 60 gives a request back about every second', async () => {
    const sl = ctx.sl.keys;
    let ok = 0;
    let refused;
    for (let i = 0; i < 70 && !refused; i++) {
      const r = await post(sl, chat('ok', uid('refill')), K.refill);
      if (r.status === 200) ok++;
      else refused = r;
    }
    assert.ok(refused, '70 requests in a row on an rpm 60 key: none refused');
    assert.ok(ok >= 60 && ok <= 62, `a full rpm 60 bucket admitted ${ok} requests in a row`);
    assert429(refused, { maxRetry: 1, label: 'rpm 60 exhausted' });
    const t0 = performance.now();
    const back = await pollUntil(() => post(sl, chat('ok', uid('refill-back')), K.refill), { until: (r) => r.status === 200, timeoutMs: 2500, what: 'a refilled request', intervalMs: 100, returnLast: true });
    const ms = performance.now() - t0;
    assert.equal(back.status, 200, `no request admitted ${ms.toFixed(0)} ms after exhausting rpm 60 (Retry-After said 1 s)`);
    assert429(await post(sl, chat('ok', uid('refill-again')), K.refill), { maxRetry: 1, label: 'right after the refilled one' });
  });
});

describe('tokens per minute', { timeout: 60_000 }, () => {
  test('the real usage (prompt + completion) is charged: tpm 300 admits two or three 100-token answers', async () => {
    const sl = ctx.sl.keys;
    const t0 = performance.now();
    const b1 = chat('chunks:100', uid('tpm1'));
    const r1 = await post(sl, b1, K.tpm);
    assert.equal(r1.status, 200, `${r1.status} ${r1.text.slice(0, 200)}`);
    const up1 = await ctx.up.waitForRequest((x) => x.body?.messages?.[0]?.content === b1.messages[0].content);
    const a1 = usageFor(up1.body, 100).total_tokens;
    assert.equal(r1.json.usage.total_tokens, a1, 'the fake upstream\'s usage reaches the client');
    const h1 = rl(r1.headers, 'tpm #1');
    assert.equal(h1['limit-tokens'], 300);
    assert.ok(h1['remaining-tokens'] >= 200, `the estimate of a small prompt without max_tokens took ${300 - h1['remaining-tokens']} tokens`);

    const r2 = await post(sl, chat('chunks:100', uid('tpm2')), K.tpm);
    assert.equal(r2.status, 200, `the second: ${r2.status} ${r2.text.slice(0, 200)}`);
    const h2 = rl(r2.headers, 'tpm #2');
    const refill = Math.ceil(((performance.now() - t0) / 1000) * 5) + 1;
    assert.ok(h2['remaining-tokens'] <= 300 - a1 + refill,
      `after a first answer of ${a1} tokens, remaining-tokens is ${h2['remaining-tokens']}: the real usage was not charged`);
    assert.ok(h2['remaining-tokens'] >= 300 - a1 - 100, `remaining-tokens ${h2['remaining-tokens']}: more than the real usage was charged`);

    let refused;
    let admitted = 2;
    for (let i = 0; i < 3 && !refused; i++) {
      const tag = uid('tpm-more');
      const n = ctx.up.count();
      const r = await post(sl, chat('chunks:100', tag), K.tpm);
      if (r.status === 200) { admitted++; continue; }
      refused = r;
      assert429(r, { label: 'tpm exhausted' });
      assertNothingUpstream(ctx.up, tag, n);
    }
    assert.ok(refused, `tpm 300 admitted ${admitted} answers of over 100 tokens each`);
    assert.ok(admitted <= 3, `tpm 300 admitted ${admitted} answers of over 100 tokens each`);
  });

  test('max_tokens counts in the up-front estimate: beyond the bucket → 429 before anything goes upstream', async () => {
    const sl = ctx.sl.keys;
    const r = await post(sl, chat('ok', uid('est'), { max_tokens: 100 }), K.tpm2);
    assert.equal(r.status, 200, `${r.status} ${r.text.slice(0, 200)}`);
    const h = rl(r.headers, 'max_tokens 100');
    assert.equal(h['limit-tokens'], 1000);
    assert.ok(h['remaining-tokens'] <= 900, `max_tokens 100 must be part of the estimate: remaining-tokens ${h['remaining-tokens']}`);
    const tag = uid('est-big');
    const n = ctx.up.count();
    // Retry-After: whatever sluice says for a request larger than the whole bucket (not bounded here).
    assert429(await post(sl, chat('ok', tag, { max_tokens: 5000 }), K.tpm2), { maxRetry: 86400, label: 'max_tokens 5000 on tpm 1000' });
    assertNothingUpstream(ctx.up, tag, n);
  });
});

describe('per client IP', { timeout: 60_000 }, () => {
  test('per_ip rpm 4 without auth: four answers, the fifth → 429 with the headers', async () => {
    const sl = ctx.sl.ip;
    const rem = [];
    for (const model of ['ok', 'mock-ip', 'ok', 'chunks:2']) {
      const r = await post(sl, chat(model, uid('ip')));
      assert.equal(r.status, 200, `${model}: ${r.status} ${r.text.slice(0, 200)}`);
      const h = rl(r.headers, `per-ip ${model}`);
      assert.equal(h['limit-requests'], 4);
      assert.equal(h['limit-tokens'], 100000);
      rem.push(h['remaining-requests']);
    }
    assert.deepEqual(rem, [3, 2, 1, 0]);
    const tag = uid('ip-over');
    const n = ctx.up.count();
    const h = assert429(await post(sl, chat('ok', tag)), { maxRetry: 16 });
    assert.equal(h['remaining-requests'], 0);
    assertNothingUpstream(ctx.up, tag, n);
  });
});

describe('per user (monoai user_id)', { timeout: 60_000 }, () => {
  test('per_user rpm 2: alice\'s third request → 429 {"detail"} with Retry-After; bob still passes', async () => {
    const sl = ctx.sl.user;
    const alice = uid('alice');
    const rem = [];
    for (let i = 0; i < 2; i++) {
      const r = await postJSON(sl, '/model', { prompt: uid('mono'), user_id: alice });
      assertJSON(r, 200, `alice #${i + 1}`);
      const h = rl(r.headers, `alice #${i + 1}`);
      assert.equal(h['limit-requests'], 2);
      assert.equal(h['limit-tokens'], 100000);
      rem.push(h['remaining-requests']);
    }
    assert.deepEqual(rem, [1, 0]);
    const tag = uid('alice-over');
    const n = ctx.up.count();
    const r = await postJSON(sl, '/model', { prompt: tag, user_id: alice });
    const j = assertJSON(r, 429, 'alice #3');
    assert.equal(typeof j.detail, 'string', `monoai's error shape is {"detail": "..."}: ${r.text}`);
    assert.ok(j.detail.length > 0);
    assert.match(r.headers['retry-after'] ?? '', /^\d+$/, 'Retry-After');
    assert.ok(Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 31, `Retry-After ${r.headers['retry-after']}`);
    assert.equal(rl(r.headers, 'alice #3')['remaining-requests'], 0);
    assertNothingUpstream(ctx.up, tag, n);
    const rb = await postJSON(sl, '/model', { prompt: uid('mono'), user_id: uid('bob') });
    assertJSON(rb, 200, 'bob');
    assert.equal(rl(rb.headers, 'bob')['remaining-requests'], 1, 'bob has a bucket of his own');
  });
});

ctx.testCleanExit();
