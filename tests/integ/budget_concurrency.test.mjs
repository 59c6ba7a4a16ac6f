// Budgets under concurrency (DESIGN §6, README "Budgets"): a request reserves its worst case
// (prompt estimate + max_tokens) of its key's budget at admission, atomically, and settles to
// its real usage at the end, so parallel requests that send max_tokens never spend more than
// the budget: on one instance (the process's ledger) and on two instances sharing Redis (one
// Lua script). When Redis comes back empty, the spend is rebuilt from the usage records.
//
// The answers come from the mock provider, which honours max_tokens as a real model does
// (finish_reason "length"), so each request's real spend is known from its usage.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from './lib/raw-http.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { baseConfig, chat, startSluice, stopAndCheck } from './lib/sluice.mjs';
import { uid, pollUntil } from './lib/dialects.mjs';
import { startRedis, redisCommand } from './lib/redis-server.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const KEYS = { one: 'sk-bud-one-0101', two: 'sk-bud-two-0202', gone: 'sk-bud-gone-0303', open: 'sk-bud-open-0404' };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-budget-'));
let redis;
const started = [];
after(async () => {
  for (const sl of started) if (!sl.exit) { sl.proc.kill('SIGKILL'); await sl.exited; }
  await redis?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function config({ db, redisUrl, workers = 2 }) {
  const cfg = baseConfig({ workers });
  cfg.providers.long = { type: 'mock', ttft: '100ms', tokens_per_s: 400, tokens: 200 };
  cfg.models = { 'long-*': [{ provider: 'long' }], ...cfg.models };
  cfg.auth = { keys: Object.entries(KEYS).map(([name, key]) => ({ name, key, budget_tokens: 100 })) };
  cfg.store = { sqlite: db, ...(redisUrl ? { redis: redisUrl } : {}) };
  return cfg;
}

async function start(opts) {
  const sl = await startSluice({ config: config(opts) });
  started.push(sl);
  return sl;
}

const post = (sl, key, body) => request(sl.url, {
  method: 'POST', path: '/v1/chat/completions', body, headers: { authorization: `Bearer ${key}` },
});

/* 20 requests at once (max_tokens 25) spread over sls; returns {ok, refused, spent}. */
async function burst(sls, key, n = 20) {
  const rs = await Promise.all(Array.from({ length: n }, (_, i) =>
    post(sls[i % sls.length], key, chat('long-x', uid('par'), { max_tokens: 25 }))));
  let spent = 0, ok = 0, refused = 0;
  for (const r of rs) {
    if (r.status === 200) {
      ok++;
      assert.equal(r.json.choices[0].finish_reason, 'length', 'max_tokens cut the answer');
      assert.equal(r.json.usage.completion_tokens, 25);
      spent += r.json.usage.total_tokens;
    } else {
      assertErrorBody(r, 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
      refused++;
    }
  }
  return { ok, refused, spent };
}

/* Then one at a time until refused: the whole budget's use, never past it. */
async function drain(sls, key, spent0) {
  let spent = spent0;
  for (let i = 0; i < 10; i++) {
    const r = await post(sls[i % sls.length], key, chat('long-x', uid('seq'), { max_tokens: 25 }));
    if (r.status !== 200) {
      const e = assertErrorBody(r, 429, { type: 'insufficient_quota' });
      assert.match(e.message, /up to \d+ tokens/, 'the refusal says why');
      return spent;
    }
    spent += r.json.usage.total_tokens;
  }
  assert.fail('never refused');
}

describe('one instance (the process ledger)', { timeout: 60_000 }, () => {
  test('20 parallel requests (max_tokens 25) on a 100-token budget spend at most 100', async (t) => {
    const sl = await start({ db: path.join(dir, 'one.db') });
    const b = await burst([sl], KEYS.one);
    t.diagnostic(`one instance: ${b.ok} served, ${b.refused} refused, ${b.spent} tokens spent in parallel`);
    assert.ok(b.ok >= 1, 'some were served');
    assert.ok(b.refused >= 1, 'some were refused');
    assert.ok(b.spent <= 100, `spent ${b.spent} of 100 in parallel`);
    const total = await drain([sl], KEYS.one, b.spent);
    t.diagnostic(`one instance: ${total} of 100 spent in all`);
    assert.ok(total <= 100, `spent ${total} of 100`);
    assert.ok(total >= 100 - 2 * 34, `the budget was used, not refused early (${total})`);
    // A request without max_tokens is served while something is left (it cannot be
    // bounded), and two of them at once cannot both run on the same remainder.
    const open = await Promise.all([0, 1].map(() => post(sl, KEYS.open, chat('long-x', uid('open')))));
    assert.deepEqual(open.map((r) => r.status).sort(), [200, 429], 'one runs on the remainder, one is refused');
    await stopAndCheck(sl, { secrets: Object.values(KEYS) });
  });
});

describe('two instances sharing Redis', { timeout: 60_000 }, () => {
  test('20 parallel requests over both spend at most 100; after Redis loses its data the spend comes back from the records', async (t) => {
    redis = await startRedis();
    const db = path.join(dir, 'shared.db'); // one database: the records both instances read
    const a = await start({ db, redisUrl: redis.url, workers: 1 });
    const b = await start({ db, redisUrl: redis.url, workers: 1 });
    await pollUntil(() => Promise.resolve(a.stderr() + '\n' + b.stderr()), { until: (t) => (t.match(/redis [^\n]*?: connected/g) ?? []).length >= 2, timeoutMs: 5000, what: 'both connected to Redis' });
    const r = await burst([a, b], KEYS.two);
    t.diagnostic(`two instances: ${r.ok} served, ${r.refused} refused, ${r.spent} tokens spent in parallel`);
    assert.ok(r.ok >= 1 && r.refused >= 1, `${r.ok} served, ${r.refused} refused`);
    assert.ok(r.spent <= 100, `spent ${r.spent} of 100 over two instances`);
    const total = await drain([a, b], KEYS.two, r.spent);
    assert.ok(total <= 100, `spent ${total} of 100`);

    // Spend part of another key's budget, then Redis forgets everything.
    let spent = 0;
    for (let i = 0; i < 2; i++) {
      const x = await post(i ? b : a, KEYS.gone, chat('long-x', 'hi', { max_tokens: 25 }));
      assert.equal(x.status, 200);
      spent += x.json.usage.total_tokens;
    }
    assert.equal(await redisCommand(redis.port, ['FLUSHALL']), 'OK');
    // The records hold the spend within the key snapshot's refresh (500 ms). Each request
    // spends 27 (prompt 2 + 25) and reserves 33 (prompt estimate 8 + 25): 54 + 33 fits, the
    // next 81 + 33 does not. On an empty counter it would (27 + 33).
    await new Promise((res) => setTimeout(res, 1200));
    const first = await post(a, KEYS.gone, chat('long-x', 'hi', { max_tokens: 25 }));
    assert.equal(first.status, 200, 'one more fits');
    spent += first.json.usage.total_tokens;
    const second = await post(b, KEYS.gone, chat('long-x', 'hi', { max_tokens: 25 }));
    assertErrorBody(second, 429, { type: 'insufficient_quota' });
    assert.ok(spent <= 100, `spent ${spent}`);
    const counter = Number(await redisCommand(redis.port, ['GET', 'sluice:budget:cfg:gone']));
    assert.ok(counter >= spent - 1, `Redis's counter was rebuilt from the records: ${counter} (spent ${spent})`);
    await stopAndCheck(a, { secrets: Object.values(KEYS) });
    await stopAndCheck(b, { secrets: Object.values(KEYS) });
  });
});
