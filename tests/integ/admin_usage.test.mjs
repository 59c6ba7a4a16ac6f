// The admin API and usage accounting on SQLite (DESIGN §6, §8). /admin/usage and /admin/reload
// need an admin key (auth.admin_keys): none → 401, a normal key → 403. The store thread writes
// one usage row per request (key, user, model, status, the upstream's exact prompt and
// completion tokens, cancelled) to the SQLite file; GET /admin/usage?key=&user=&model=&since=
// &until=&group_by= sums them as {"data":[{group, requests, prompt_tokens, completion_tokens,
// total_tokens, errors, cancelled}]}. No row is lost on SIGTERM.
//
// Assumes: key= is the key's name, model= the model the client asked for (exact), since/until
// unix seconds, one total row (group "") without group_by.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { promptTokens } from './lib/fake-upstream.mjs';
import { baseConfig, chat, startSluice, stopAndCheck, CLIENT_KEY } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, lastUser, postJSON, assertJSON, nowS } from './lib/dialects.mjs';

const OTHER = 'sk-usage-other-4567';
const ADMIN = 'sk-admin-usage-7890';
const secrets = [CLIENT_KEY, OTHER, ADMIN];
let dbFile;
const config = (up, db) => {
  dbFile = db;
  return {
    ...baseConfig({ upstreamPort: up.port, workers: 2 }),
    auth: { keys: [{ name: 'dev', key: CLIENT_KEY }, { name: 'other', key: OTHER }], admin_keys: [ADMIN] },
    store: { sqlite: db },
    dialects: { monoai: { model: 'ok', auth: 'none' } },
  };
};
const ctx = useSluices({ main: config }, { secrets });
const t0 = nowS();

const post = (body, key = CLIENT_KEY) => request(ctx.sl.main.url, {
  method: 'POST', path: '/v1/chat/completions', body, headers: { authorization: `Bearer ${key}` },
});
const usage = (params = {}, key = ADMIN) => request(ctx.sl.main.url, {
  method: 'GET', path: `/admin/usage?${new URLSearchParams(params)}`, headers: key ? { authorization: `Bearer ${key}` } : {},
});

/* /admin/usage as admin: 200, JSON {data: [rows]}, every row well-formed. */
async function usageData(params) {
  const r = await usage(params);
  const j = assertJSON(r, 200, `/admin/usage?${new URLSearchParams(params)}`);
  assert.ok(Array.isArray(j.data), `no data array: ${r.text.slice(0, 300)}`);
  for (const row of j.data) {
    assert.ok(typeof row.group === 'string' || row.group === null, `row.group: ${JSON.stringify(row)}`);
    for (const k of ['requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'errors', 'cancelled']) {
      assert.ok(Number.isInteger(row[k]) && row[k] >= 0, `row.${k}: ${JSON.stringify(row)}`);
    }
    assert.equal(row.total_tokens, row.prompt_tokens + row.completion_tokens, `total != prompt + completion: ${JSON.stringify(row)}`);
  }
  return j.data;
}
const requestsIn = (data) => data.reduce((n, r) => n + r.requests, 0);
/* Polls /admin/usage until it counts `n` requests (the store thread writes in batches). */
const usageWhen = (params, n) => pollUntil(() => usageData(params), { until: (d) => requestsIn(d) >= n, timeoutMs: 3000, what: `${n} requests in /admin/usage`, intervalMs: 100, returnLast: true });
const byGroup = (data) => Object.fromEntries(data.map((r) => [r.group, r]));

/* The upstream's prompt tokens for the request whose last user message is tag. */
async function upstreamPrompt(tag) {
  const rec = await ctx.up.waitForRequest((r) => lastUser(r.body) === tag, 3000, 0, `the upstream request ${tag}`);
  return promptTokens(rec.body);
}

const sum = (prompt, completion, n, extra = {}) => ({
  requests: n, prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, errors: 0, cancelled: 0, ...extra,
});
const pick = (row) => row && {
  requests: row.requests, prompt_tokens: row.prompt_tokens, completion_tokens: row.completion_tokens,
  total_tokens: row.total_tokens, errors: row.errors, cancelled: row.cancelled,
};

function sqlite(sql) {
  const r = spawnSync('sqlite3', ['-separator', '|', dbFile, sql], { encoding: 'utf8', timeout: 5000 });
  if (r.error?.code === 'ENOENT') return null; // no sqlite3 CLI
  assert.equal(r.status, 0, `sqlite3 ${sql}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => l.split('|'));
}

describe('admin keys', { timeout: 60_000 }, () => {
  test('GET /admin/usage: no key → 401, a normal key → 403, an admin key → 200 {"data": [...]}', async () => {
    assertErrorBody(await usage({}, null), 401);
    assertErrorBody(await usage({}, CLIENT_KEY), 403);
    assertErrorBody(await usage({}, OTHER), 403);
    await usageData({});
  });

  test('POST /admin/reload: no key → 401, a normal key → 403, an admin key → 200', async () => {
    const reload = (key) => request(ctx.sl.main.url, { method: 'POST', path: '/admin/reload', headers: key ? { authorization: `Bearer ${key}` } : {} });
    assertErrorBody(await reload(null), 401);
    assertErrorBody(await reload(CLIENT_KEY), 403);
    const r = await reload(ADMIN);
    assert.equal(r.status, 200, `reload as admin: ${r.status} ${r.text.slice(0, 300)}`);
    assert.equal((await post(chat('ok', uid('after-reload')))).status, 200, 'serving after the reload');
  });
});

describe('usage records', { timeout: 60_000 }, () => {
  const tag = uid('usage');
  const model = `ok:${tag}`;
  const want = {};

  test('one row per request with the upstream\'s exact tokens, grouped by key', async () => {
    const sent = [
      { key: 'dev', body: chat(model, `${tag} a`) },
      { key: 'dev', body: chat(model, `${tag} bb`) },
      { key: 'dev', body: chat(model, `${tag} ccc`, { stream: true }) },
      { key: 'other', body: chat(model, `${tag} dddd`) },
    ];
    for (const { key, body } of sent) {
      const secret = key === 'dev' ? CLIENT_KEY : OTHER;
      if (body.stream) {
        const s = await openStream(`${ctx.sl.main.url}/v1/chat/completions`, body, { headers: { authorization: `Bearer ${secret}` } }).finished();
        assert.equal(s.status, 200, s.text().slice(0, 200));
      } else {
        const r = await post(body, secret);
        assert.equal(r.status, 200, r.text.slice(0, 200));
      }
      const p = await upstreamPrompt(body.messages[0].content);
      want[key] ??= { prompt: 0, completion: 0, n: 0, rows: [] };
      want[key].prompt += p;
      want[key].completion += 5;
      want[key].n++;
      want[key].rows.push([key, String(p), '5', '200']);
    }
    const data = await usageWhen({ model, group_by: 'key' }, sent.length);
    const g = byGroup(data);
    assert.deepEqual(Object.keys(g).sort(), ['dev', 'other'], `groups: ${JSON.stringify(data)}`);
    assert.deepEqual(pick(g.dev), sum(want.dev.prompt, want.dev.completion, 3), 'dev');
    assert.deepEqual(pick(g.other), sum(want.other.prompt, want.other.completion, 1), 'other');
  });

  test('the rows in the SQLite file (sqlite3) hold the same numbers', () => {
    assert.ok(want.dev?.n === 3 && want.other?.n === 1, 'the previous test did not send its requests');
    const rows = sqlite(`SELECT key_name, prompt_tokens, completion_tokens, status FROM usage WHERE model = '${model}' ORDER BY id`);
    if (rows === null) return; // no sqlite3 CLI: /admin/usage above is the check
    assert.deepEqual(rows, [...want.dev.rows, ...want.other.rows]);
  });

  test('filters: key= gives one total row; since/until bound the time', async () => {
    assert.ok(want.dev?.n === 3 && want.other?.n === 1, 'the previous test did not send its requests');
    const dev = await usageData({ model, key: 'dev' });
    assert.equal(dev.length, 1, `one total row without group_by: ${JSON.stringify(dev)}`);
    assert.deepEqual(pick(dev[0]), sum(want.dev.prompt, want.dev.completion, 3));
    assert.equal(requestsIn(await usageData({ model, since: t0 - 5, until: nowS() + 5 })), 4, 'inside [since, until]');
    assert.equal(requestsIn(await usageData({ model, since: nowS() + 3600 })), 0, 'since an hour from now');
    assert.equal(requestsIn(await usageData({ model, until: t0 - 3600 })), 0, 'until an hour ago');
    assert.equal(requestsIn(await usageData({ model, key: 'nobody' })), 0, 'an unknown key');
    const byModel = byGroup(await usageData({ key: 'other', group_by: 'model', since: t0 - 5 }));
    assert.equal(byModel[model]?.requests, 1, `group_by=model for key other: ${JSON.stringify(byModel)}`);
  });

  test('errors and cancelled requests are counted', async () => {
    const errModel = `status-400:${tag}`;
    const r = await post(chat(errModel, uid('err')));
    assert.equal(r.status, 400, r.text.slice(0, 200));
    const e = await usageWhen({ model: errModel }, 1);
    assert.equal(requestsIn(e), 1);
    assert.equal(e.reduce((n, x) => n + x.errors, 0), 1, `errors: ${JSON.stringify(e)}`);

    const cModel = `chunks:50:40:${tag}`;
    const ctag = uid('cancel');
    const s = openStream(`${ctx.sl.main.url}/v1/chat/completions`, chat(cModel, ctag, { stream: true }), { headers: { authorization: `Bearer ${CLIENT_KEY}` } });
    await s.waitFor((x) => x.events.some((ev) => ev.json?.choices?.[0]?.delta?.content), 3000, 'the first content chunk');
    s.destroy();
    await ctx.up.waitFor((rs) => rs.find((x) => lastUser(x.body) === ctag && x.closed), 2000, 'the upstream to be cancelled');
    const c = await usageWhen({ model: cModel }, 1);
    assert.equal(requestsIn(c), 1);
    assert.equal(c.reduce((n, x) => n + x.cancelled, 0), 1, `cancelled: ${JSON.stringify(c)}`);
  });

  test('user= and group_by=user sum the monoai user_id', async () => {
    const alice = uid('alice');
    const bob = uid('bob');
    const w = { [alice]: { p: 0, n: 0 }, [bob]: { p: 0, n: 0 } };
    for (const u of [alice, bob, alice]) {
      const prompt = uid('mono');
      assertJSON(await postJSON(ctx.sl.main, '/model', { prompt, user_id: u }), 200, `/model as ${u}`);
      w[u].p += await upstreamPrompt(prompt);
      w[u].n++;
    }
    const a = await usageWhen({ user: alice }, 2);
    assert.equal(a.length, 1, JSON.stringify(a));
    assert.deepEqual(pick(a[0]), sum(w[alice].p, 10, 2), 'alice');
    const g = byGroup(await usageWhen({ group_by: 'user', since: t0 - 5 }, 3));
    assert.deepEqual(pick(g[alice]), sum(w[alice].p, 10, 2), 'alice by group');
    assert.deepEqual(pick(g[bob]), sum(w[bob].p, 5, 1), 'bob by group');
  });
});

describe('shutdown', { timeout: 60_000 }, () => {
  test('no record lost on SIGTERM: 30 requests, SIGTERM right after the last answer, 30 rows', async () => {
    const sl = ctx.sl.main;
    const model = `ok:${uid('term')}`;
    const N = 30;
    for (let i = 0; i < N; i += 10) {
      const batch = [];
      for (let j = i; j < i + 10; j++) batch.push(post(chat(model, uid(`term-${j}`))));
      for (const r of await Promise.all(batch)) assert.equal(r.status, 200, r.text.slice(0, 200));
    }
    sl.proc.kill('SIGTERM');
    await sl.exited;
    await stopAndCheck(sl, { secrets });
    const rows = sqlite(`SELECT count(*) FROM usage WHERE model = '${model}'`);
    let n;
    if (rows) n = Number(rows[0][0]);
    else { // no sqlite3 CLI: a new sluice on the same file answers /admin/usage
      ctx.sl.main = await startSluice({ config: config(ctx.up, dbFile) });
      n = requestsIn(await usageData({ model }));
    }
    assert.equal(n, N, `${n} usage rows for ${N} answered requests`);
  });
});

ctx.testCleanExit();
