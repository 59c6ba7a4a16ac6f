// Token counts at the edges of int64 (DESIGN §6): a client's max_tokens of INT64_MAX (or any
// huge value) and an upstream's absurd usage numbers never overflow a sum (UBSan would stop
// sluice: every sum is saturating, usage is pinned to a sane bound at intake), and the limits
// still hold: a huge max_tokens is refused by a tpm bucket that is not full and by a budget (429
// in the usual shape), and absurd usage spends a key's budget instead of wrapping around.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptedServer } from './lib/scripted-server.mjs';
import { completionFor, streamFrames } from './lib/fake-upstream.mjs';
import { request } from './lib/raw-http.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { pollUntil } from './lib/poll.mjs';
import { startSluice, stopAndCheck, baseConfig, tempFile } from './lib/sluice.mjs';
import fs from 'node:fs';
import path from 'node:path';

const INT64_MAX = '9223372036854775807';
const INT64_MIN = '-9223372036854775808';
const TOKENS_MAX = 2 ** 40; /* SL_TOKENS_MAX (src/core/tokens.h): absurd usage is pinned here */
const ADMIN = 'sk-ovf-admin-9999';
const K = {
  tpm: 'sk-ovf-tpm-1111', // tpm 1000
  bud: 'sk-ovf-bud-2222', // budget 100000
  bud2: 'sk-ovf-bud2-3333', // budget 100000, spent by absurd usage
  tpm2: 'sk-ovf-tpm2-4444', // tpm 1000, settled with absurd usage
  free: 'sk-ovf-free-5555', // no limits
};

/* Usage numbers as raw JSON text: JavaScript numbers cannot hold int64's ends. */
function withUsage(obj, prompt, completion) {
  const text = JSON.stringify({ ...obj, usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
  return text.replace('"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}',
    `"usage":{"prompt_tokens":${prompt},"completion_tokens":${completion},"total_tokens":${INT64_MAX}}`);
}

function plan(rec) {
  const body = rec.body ?? {};
  const m = /^usage:(max|min|mixed)$/.exec(body.model ?? '');
  const [p, c] = !m ? [null, null] : m[1] === 'max' ? [INT64_MAX, INT64_MAX]
    : m[1] === 'min' ? [INT64_MIN, INT64_MIN] : [INT64_MAX, INT64_MIN];
  if (body.stream) {
    const frames = streamFrames({ ...body, model: 'ok' }).map((f) => f.text);
    if (p !== null) {
      const usage = withUsage({ id: 'chatcmpl-u', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [] }, p, c);
      frames.splice(frames.length - 1, 0, `data: ${usage}\n\n`);
    }
    return [{ kind: 'head', status: 200, headers: { 'content-type': 'text/event-stream' } },
      ...frames.map((data) => ({ kind: 'write', data })), { kind: 'end' }];
  }
  const obj = completionFor({ ...body, model: 'ok' });
  const text = p === null ? JSON.stringify(obj) : withUsage(obj, p, c);
  return [{ kind: 'head', status: 200, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
    { kind: 'write', data: text }, { kind: 'end' }];
}

let up;
let sl;
before(async () => {
  up = await startScriptedServer(plan);
  const db = path.join(fs.mkdtempSync(path.join(path.dirname(tempFile('x', '')), 'db-')), 'sluice.db');
  sl = await startSluice({
    config: {
      ...baseConfig({ upstreamPort: up.port, workers: 1 }),
      auth: {
        keys: [
          { name: 'tpm', key: K.tpm, rpm: 1000, tpm: 1000 },
          { name: 'bud', key: K.bud, budget_tokens: 100000 },
          { name: 'bud2', key: K.bud2, budget_tokens: 100000 },
          { name: 'tpm2', key: K.tpm2, rpm: 1000, tpm: 1000 },
          { name: 'free', key: K.free },
        ],
        admin_keys: [ADMIN],
      },
      dialects: { chat: { model: 'usage:max', auth: 'none' } },
      store: { sqlite: db },
    },
  });
});
after(async () => {
  if (sl && !sl.exit) { sl.proc.kill('SIGKILL'); await sl.exited; }
  await up?.close();
});

const post = (key, text) => request(sl.url, {
  method: 'POST', path: '/v1/chat/completions', body: text,
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
});
const raw = (model, maxTokens, extra = '') =>
  `{"model":"${model}","messages":[{"role":"user","content":"hi"}]${maxTokens === undefined ? '' : `,"max_tokens":${maxTokens}`}${extra}}`;

describe('max_tokens at INT64_MAX', { timeout: 60_000 }, () => {
  test('without limits it is forwarded as sent and answered', async () => {
    const n = up.count();
    const r = await post(K.free, raw('ok', INT64_MAX));
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(up.count(), n + 1);
    assert.ok(up.last().rawBody.toString().includes(`"max_tokens":${INT64_MAX}`), 'the body goes upstream as sent');
    const s = await post(K.free, raw('ok', INT64_MAX, ',"stream":true'));
    assert.equal(s.status, 200, s.text.slice(0, 300));
    const mc = await post(K.free, `{"model":"ok","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":${INT64_MAX}}`);
    assert.equal(mc.status, 200, mc.text.slice(0, 300));
  });

  test('against a tpm bucket that is not full → 429 rate_limit_exceeded, nothing upstream', async () => {
    assert.equal((await post(K.tpm, raw('ok', 10))).status, 200);
    const n = up.count();
    for (const extra of ['', ',"stream":true']) {
      const r = await post(K.tpm, raw('ok', INT64_MAX, extra));
      assertErrorBody(r, 429, { type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    }
    assert.equal(up.count(), n, 'nothing went upstream');
  });

  test('against a budget → 429 insufficient_quota, nothing upstream', async () => {
    const n = up.count();
    for (const mt of [INT64_MAX, '4611686018427387904', '100001']) {
      const r = await post(K.bud, raw('ok', mt));
      const e = assertErrorBody(r, 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
      assert.match(e.message, /more than the 100000 left/, e.message);
    }
    assert.equal(up.count(), n, 'nothing went upstream');
    assert.equal((await post(K.bud, raw('ok', 100))).status, 200, 'a sane max_tokens still passes');
  });
});

describe('absurd usage from the upstream', { timeout: 60_000 }, () => {
  test('INT64_MAX / INT64_MIN usage, streamed or whole, is answered without overflow', async () => {
    for (const model of ['usage:max', 'usage:min', 'usage:mixed']) {
      for (const extra of ['', ',"stream":true,"stream_options":{"include_usage":true}']) {
        const r = await post(K.free, raw(model, undefined, extra));
        assert.equal(r.status, 200, `${model}${extra}: ${r.text.slice(0, 300)}`);
      }
    }
  });

  test('a seed dialect shows the pinned usage, its total without overflow', async () => {
    const r = await request(sl.url, { method: 'POST', path: '/api/chat/', body: JSON.stringify({ message: 'hi' }),
      headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.deepEqual(JSON.parse(r.text).usage,
      { prompt_tokens: TOKENS_MAX, completion_tokens: TOKENS_MAX, total_tokens: 2 * TOKENS_MAX });
  });

  test('INT64_MAX usage spends a budget (it does not wrap around to a refund)', async () => {
    const r = await post(K.bud2, raw('usage:max'));
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const again = await post(K.bud2, raw('ok'));
    assertErrorBody(again, 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
  });

  test('INT64_MAX usage settles a tpm bucket into debt, INT64_MIN refunds nothing', async () => {
    assert.equal((await post(K.tpm2, raw('usage:min'))).status, 200);
    assert.equal((await post(K.tpm2, raw('usage:max'))).status, 200);
    const r = await post(K.tpm2, raw('ok'));
    assertErrorBody(r, 429, { type: 'rate_limit_error', code: 'rate_limit_exceeded' });
  });

  test('the usage records hold the pinned numbers, and the report sums them without overflow', async () => {
    const get = () => request(sl.url, { method: 'GET', path: '/admin/usage?key=bud2', headers: { authorization: `Bearer ${ADMIN}` } });
    const row = await pollUntil(async () => {
      const r = await get();
      assert.equal(r.status, 200, r.text.slice(0, 300));
      return JSON.parse(r.text).data.find((x) => x.requests >= 1);
    }, { timeoutMs: 3000, intervalMs: 100, what: 'a usage row for bud2' });
    // The absurd answer, plus the refused request after it (its prompt estimate, no completion).
    assert.ok(row.prompt_tokens >= TOKENS_MAX && row.prompt_tokens < TOKENS_MAX + 10, JSON.stringify(row));
    assert.equal(row.completion_tokens, TOKENS_MAX, JSON.stringify(row));
    assert.equal(row.total_tokens, row.prompt_tokens + row.completion_tokens, JSON.stringify(row));
  });
});

test('SIGTERM: sluice exits 0, no sanitizer report', async () => {
  await stopAndCheck(sl, { secrets: [...Object.values(K), ADMIN] });
});
