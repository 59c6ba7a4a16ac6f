// Scale-out with Redis (DESIGN §6, §8): two sluice instances (each with its own SQLite file) on
// one real redis-server share their rate limits and budgets: 10 requests of an rpm-10 key spread
// over both pass and the 11th is refused on either; a budget spent on one is refused on the
// other. When Redis dies sluice keeps serving on local limits and says so in its log; when Redis
// comes back on the same port sluice reconnects (log line) and the limits are shared again.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from './lib/raw-http.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { baseConfig, chat } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, assertNothingUpstream } from './lib/dialects.mjs';
import { startRedis } from './lib/redis-server.mjs';

const K = {
  ten: 'sk-redis-ten-1010',
  bud: 'sk-redis-bud-2020',
  flap: 'sk-redis-flap-3030',
  again: 'sk-redis-again-4040',
};
let redisP;
const redis = () => (redisP ??= startRedis());

/* One worker each: one Redis connection per instance, so one state line per change. */
const config = async (up, db) => ({
  ...baseConfig({ upstreamPort: up.port, workers: 1 }),
  auth: {
    keys: [
      { name: 'ten', key: K.ten, rpm: 10 },
      { name: 'bud', key: K.bud, budget_tokens: 100 },
      { name: 'flap', key: K.flap, rpm: 6 },
      { name: 'again', key: K.again, rpm: 4 },
    ],
  },
  rate_limits: { per_key: { rpm: 1000, tpm: 1000000 } },
  store: { sqlite: db, redis: (await redis()).url },
});
const ctx = useSluices({ a: config, b: config }, { secrets: Object.values(K) });
/* After useSluices' own after(): the sluices go first, then the server they use. */
after(async () => { if (redisP) await (await redisP.catch(() => null))?.stop(); });

const post = (sl, body, key) => request(sl.url, {
  method: 'POST', path: '/v1/chat/completions', body, headers: { authorization: `Bearer ${key}` },
});

const remaining = (r) => {
  const v = r.headers['x-ratelimit-remaining-requests'];
  assert.match(v ?? '', /^\d+$/, `x-ratelimit-remaining-requests: ${JSON.stringify(v)}`);
  return Number(v);
};

function assert429(r, label) {
  assertErrorBody(r, 429, { type: 'rate_limit_error', code: 'rate_limit_exceeded' });
  assert.match(r.headers['retry-after'] ?? '', /^\d+$/, `${label}: Retry-After`);
  assert.equal(remaining(r), 0, `${label}: remaining-requests`);
}

/* Stderr lines of sl (access-log lines left out) from index `from`. */
const logLines = (sl, from = 0) => sl.stderrLines.slice(from).map((l, i) => ({ l, i: i + from })).filter(({ l }) => !l.startsWith('{"ts"'));
const DOWN = /\b(down|unavailable|unreachable|lost|disconnect\w*|refused|fail\w*|error|closed)\b/i;
const UP = /\b(re)?connected\b|\bup\b|\bback\b|\brestored\b|\bavailable\b/i;
const isDown = (l) => /redis/i.test(l) && DOWN.test(l);
const isUp = (l) => /redis/i.test(l) && UP.test(l) && !DOWN.test(l) && !/not connected|unavailable/i.test(l);

describe('limits shared through Redis', { timeout: 60_000 }, () => {
  test('both instances answer with Redis up', async () => {
    // Redis connects in the background: give a startup "connected" line (if sluice logs one) a
    // bounded moment, so the first shared decision is not made by the local fallback.
    await Promise.all(['a', 'b'].map((n) => ctx.sl[n].waitUntil(() => logLines(ctx.sl[n]).find(({ l }) => isUp(l)), 1000).catch(() => null)));
    for (const name of ['a', 'b']) assertErrorBody(await post(ctx.sl[name], chat('mock-hello', uid('hello')), 'sk-redis-unknown'), 401);
  });

  test('rpm 10 over two instances: 10 requests spread over both pass, the 11th is refused on either', async () => {
    const rem = [];
    for (let i = 0; i < 10; i++) {
      const sl = i % 2 ? ctx.sl.b : ctx.sl.a;
      const r = await post(sl, chat('ok', uid('ten')), K.ten);
      assert.equal(r.status, 200, `request ${i + 1} (on ${i % 2 ? 'b' : 'a'}): ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.headers['x-ratelimit-limit-requests'], '10');
      rem.push(remaining(r));
    }
    assert.deepEqual(rem, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], 'one bucket for both instances');
    const tag = uid('eleventh');
    const n = ctx.up.count();
    assert429(await post(ctx.sl.a, chat('ok', tag), K.ten), '11th on a');
    assert429(await post(ctx.sl.b, chat('ok', tag), K.ten), '11th on b');
    assertNothingUpstream(ctx.up, tag, n);
  });

  test('a budget spent on one instance is refused on the other', async () => {
    const r = await post(ctx.sl.a, chat('chunks:120', uid('spend')), K.bud);
    assert.equal(r.status, 200, `${r.status} ${r.text.slice(0, 200)}`);
    assert.ok(r.json.usage.total_tokens >= 100);
    const onB = await pollUntil(() => post(ctx.sl.b, chat('ok', uid('bud-b')), K.bud), { until: (x) => x.status === 429, timeoutMs: 1000, what: 'the refusal on b', intervalMs: 100, returnLast: true });
    assertErrorBody(onB, 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
    const tag = uid('bud-refused');
    const n = ctx.up.count();
    assertErrorBody(await post(ctx.sl.a, chat('ok', tag), K.bud), 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
    assertErrorBody(await post(ctx.sl.b, chat('ok', tag), K.bud), 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
    assertNothingUpstream(ctx.up, tag, n);
  });
});

const downAt = {};
describe('Redis goes away and comes back', { timeout: 60_000 }, () => {
  test('Redis killed: both log it, and keep serving promptly on local limits (per instance)', async () => {
    const r = await redis();
    const from = { a: ctx.sl.a.stderrLines.length, b: ctx.sl.b.stderrLines.length };
    await r.kill();
    for (const name of ['a', 'b']) {
      const sl = ctx.sl[name];
      const hit = await sl.waitUntil(() => logLines(sl, from[name]).find(({ l }) => isDown(l)), 3000, `[${name}] a log line saying Redis is down`);
      downAt[name] = hit.i;
    }
    for (const name of ['a', 'b']) {
      const sl = ctx.sl[name];
      for (let i = 0; i < 6; i++) {
        const x = await post(sl, chat('ok', uid('local')), K.flap);
        assert.equal(x.status, 200, `[${name}] request ${i + 1} with Redis down: ${x.status} ${x.text.slice(0, 200)}`);
        assert.ok(x.ms < 1000, `[${name}] request ${i + 1} took ${x.ms.toFixed(0)} ms with Redis down`);
      }
      const tag = uid('local-over');
      const n = ctx.up.count();
      assert429(await post(sl, chat('ok', tag), K.flap), `[${name}] 7th on rpm 6 with Redis down`);
      assertNothingUpstream(ctx.up, tag, n);
    }
  });

  test('Redis back on the same port: both log the reconnection, and limits are shared again', async () => {
    assert.ok(downAt.a !== undefined && downAt.b !== undefined, 'the previous test did not see Redis go down');
    const r = await redis();
    await r.restart();
    for (const name of ['a', 'b']) {
      const sl = ctx.sl[name];
      await sl.waitUntil(() => logLines(sl, downAt[name] + 1).find(({ l }) => isUp(l)), 7000, `[${name}] a log line saying Redis is reconnected`);
    }
    const rem = [];
    for (let i = 0; i < 4; i++) {
      const sl = i % 2 ? ctx.sl.b : ctx.sl.a;
      const x = await post(sl, chat('ok', uid('again')), K.again);
      assert.equal(x.status, 200, `request ${i + 1}: ${x.status} ${x.text.slice(0, 200)}`);
      rem.push(remaining(x));
    }
    assert.deepEqual(rem, [3, 2, 1, 0], 'one bucket for both instances again');
    const tag = uid('again-over');
    const n = ctx.up.count();
    assert429(await post(ctx.sl.a, chat('ok', tag), K.again), '5th on a');
    assert429(await post(ctx.sl.b, chat('ok', tag), K.again), '5th on b');
    assertNothingUpstream(ctx.up, tag, n);
  });
});

ctx.testCleanExit();
