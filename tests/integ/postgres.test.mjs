// PostgreSQL as the shared store (DESIGN §8): two sluice instances (each with its own SQLite
// file) on one real PostgreSQL 15. `sluice keys` writes keys there (hash only, never the secret);
// a key issued or revoked through the CLI takes effect on both instances within a second. The
// store thread writes one usage row per request to PostgreSQL, with the upstream's exact token
// counts, and loses none on SIGTERM.
//
// Assumes the usage table keeps SQLite's name and columns (usage: request_id, key_name, model,
// status, prompt_tokens, completion_tokens, cancelled, ...).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { request } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { promptTokens } from './lib/fake-upstream.mjs';
import { runSluiceSync, stopAndCheck, baseConfig, chat, CLIENT_KEY } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, lastUser } from './lib/dialects.mjs';
import { startPostgres, PG_BIN, PG_USER } from './lib/postgres-server.mjs';

const secrets = [CLIENT_KEY];
let pgP;
const postgres = () => (pgP ??= startPostgres());

const sqliteFiles = {};
const config = (name) => async (up, db) => {
  sqliteFiles[name] = db;
  return {
    ...baseConfig({ upstreamPort: up.port, workers: 2 }),
    auth: { keys: [{ name: 'dev', key: CLIENT_KEY }] },
    store: { sqlite: db, postgres: (await postgres()).url },
  };
};
const ctx = useSluices({ a: config('a'), b: config('b') }, { secrets });
const both = () => [['a', ctx.sl.a], ['b', ctx.sl.b]];
/* After useSluices' own after(): the sluices go first, then the server they use. */
after(async () => { if (pgP) await (await pgP.catch(() => null))?.cleanup(); });

const post = (sl, body, key = CLIENT_KEY, headers = {}) => request(sl.url, {
  method: 'POST', path: '/v1/chat/completions', body, headers: { authorization: `Bearer ${key}`, ...headers },
});
const keysCli = (...args) => runSluiceSync(['keys', ...args, '--config', ctx.sl.a.configFile]);
const sqlStr = (s) => `'${String(s).replace(/'/g, "''")}'`;

/* Polls (≤ ms) until key answers `status` on sl. */
async function untilStatus(sl, key, status, ms) {
  const t0 = performance.now();
  const r = await pollUntil(() => post(sl, chat('ok', uid('poll')), key), { until: (x) => x.status === status, timeoutMs: ms, what: `HTTP ${status}`, intervalMs: 25, returnLast: true });
  return { r, ms: performance.now() - t0 };
}

/* The whole database as SQL text (pg_dump), to look for values whatever the schema. */
async function dump() {
  const pg = await postgres();
  const r = spawnSync(`${PG_BIN}/pg_dump`, ['-h', '127.0.0.1', '-p', String(pg.port), '-U', PG_USER, '--data-only', 'sluice'],
    { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 0, `pg_dump: ${r.stderr}`);
  return r.stdout;
}

/* usage rows whose model contains tag: [{model, key, status, prompt, completion, cancelled}]. */
async function usageRows(tag) {
  const pg = await postgres();
  return pg.query(`SELECT model, coalesce(key_name, ''), status, prompt_tokens, completion_tokens, cancelled::int
    FROM usage WHERE model LIKE ${sqlStr(`%${tag}%`)} ORDER BY model`).map(([model, key, status, prompt, completion, cancelled]) => ({
    model, key, status: Number(status), prompt: Number(prompt), completion: Number(completion), cancelled: Number(cancelled),
  }));
}

describe('keys in PostgreSQL', { timeout: 60_000 }, () => {
  test('keys create writes to PostgreSQL (hash only); both instances accept the key within 1.5 s', async () => {
    const r = keysCli('create', '--name', uid('pg-key'), '--rpm', '100');
    assert.equal(r.code, 0, `keys create: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    const secret = /^sk-sl-[A-Za-z0-9_-]+/m.exec(r.stdout)?.[0];
    const id = /\bkey_[A-Za-z0-9_-]+/.exec(r.stdout)?.[0];
    assert.ok(secret && id, `keys create must print the secret and the id:\n${r.stdout}`);
    secrets.push(secret);
    const text = await dump();
    assert.ok(text.includes(id), `the key ${id} is not in PostgreSQL`);
    assert.ok(!text.includes(secret), 'PostgreSQL holds the secret itself');
    for (const [name, sl] of both()) {
      for (const f of [sqliteFiles[name], `${sqliteFiles[name]}-wal`].filter((x) => fs.existsSync(x))) {
        assert.ok(!fs.readFileSync(f).includes(secret), `[${name}] ${f} holds the secret`);
      }
      const { r: x, ms } = await untilStatus(sl, secret, 200, 1500);
      assert.equal(x.status, 200, `[${name}] the issued key after ${ms.toFixed(0)} ms: ${x.status} ${x.text.slice(0, 200)}`);
    }
    const list = keysCli('list');
    assert.equal(list.code, 0, list.stderr);
    assert.ok(list.stdout.includes(id), `keys list (PostgreSQL) does not show ${id}:\n${list.stdout}`);
    assert.ok(!list.stdout.includes(secret), 'keys list printed the secret');

    const rv = keysCli('revoke', id);
    assert.equal(rv.code, 0, `keys revoke: exit ${rv.code}\n${rv.stderr}`);
    const t0 = performance.now();
    const done = await Promise.all(both().map(async ([name, sl]) => ({ name, ...(await untilStatus(sl, secret, 401, 1500)), at: performance.now() - t0 })));
    for (const { name, r: x, at } of done) {
      assertErrorBody(x, 401);
      assert.ok(at <= 1600, `[${name}] refused ${at.toFixed(0)} ms after revoke`);
    }
  });
});

describe('usage in PostgreSQL', { timeout: 60_000 }, () => {
  test('one row per request from either instance, with the upstream\'s exact token counts', async () => {
    const tag = uid('pgu');
    const sent = [
      { sl: ctx.sl.a, body: chat(`ok:${tag}-1`, `${tag} one`), completion: 5 },
      { sl: ctx.sl.b, body: chat(`ok:${tag}-2`, `${tag} two`), completion: 5 },
      { sl: ctx.sl.a, body: chat(`chunks:7:0:${tag}-3`, `${tag} three`, { stream: true }), completion: 7 },
      { sl: ctx.sl.b, body: chat(`chunks:9:0:${tag}-4`, `${tag} four`, { stream: true, stream_options: { include_usage: true } }), completion: 9 },
    ];
    for (const { sl, body } of sent) {
      if (body.stream) {
        const s = await openStream(`${sl.url}/v1/chat/completions`, body, { headers: { authorization: `Bearer ${CLIENT_KEY}` } }).finished();
        assert.equal(s.status, 200, s.text().slice(0, 200));
      } else {
        assert.equal((await post(sl, body)).status, 200);
      }
    }
    const want = [];
    for (const { body, completion } of sent) {
      const rec = await ctx.up.waitForRequest((r) => lastUser(r.body) === body.messages[0].content, 3000, 0, body.model);
      want.push({ model: body.model, key: 'dev', status: 200, prompt: promptTokens(rec.body), completion, cancelled: 0 });
    }
    want.sort((x, y) => (x.model < y.model ? -1 : 1));
    const rows = await pollUntil(() => usageRows(tag), { until: (r) => r.length >= sent.length, timeoutMs: 3000, what: 'the usage rows', intervalMs: 100, returnLast: true });
    assert.deepEqual(rows, want, 'usage rows in PostgreSQL');
  });

  test('usage goes to PostgreSQL, not to the SQLite file', async () => {
    const tag = uid('pg-only');
    assert.equal((await post(ctx.sl.a, chat(`ok:${tag}`, tag))).status, 200);
    await pollUntil(() => usageRows(tag), { until: (r) => r.length === 1, timeoutMs: 3000, what: 'the usage row in PostgreSQL', intervalMs: 100 });
    const r = spawnSync('sqlite3', [sqliteFiles.a, `SELECT count(*) FROM usage WHERE model = ${sqlStr(`ok:${tag}`)}`], { encoding: 'utf8', timeout: 5000 });
    if (r.error?.code === 'ENOENT') return; // no sqlite3 CLI: nothing more to check
    if (r.status !== 0) {
      assert.match(r.stderr, /no such table/i, `sqlite3: ${r.stderr}`);
      return;
    }
    assert.equal(r.stdout.trim(), '0', 'a usage row went to SQLite too');
  });

  test('no record lost on SIGTERM: 30 requests, SIGTERM right after the last answer, 30 rows', async () => {
    const sl = ctx.sl.b;
    const tag = uid('pgterm');
    const N = 30;
    for (let i = 0; i < N; i += 10) {
      const batch = [];
      for (let j = i; j < i + 10; j++) batch.push(post(sl, chat(`ok:${tag}-${String(j).padStart(2, '0')}`, `${tag} ${j}`)));
      for (const r of await Promise.all(batch)) assert.equal(r.status, 200, r.text.slice(0, 200));
    }
    sl.proc.kill('SIGTERM');
    await sl.exited;
    await stopAndCheck(sl, { secrets });
    const pg = await postgres();
    const n = Number(pg.scalar(`SELECT count(*) FROM usage WHERE model LIKE ${sqlStr(`%${tag}%`)}`));
    assert.equal(n, N, `${n} usage rows in PostgreSQL for ${N} answered requests`);
    assert.equal((await post(ctx.sl.a, chat('ok', uid('still')))).status, 200, 'the other instance still serves');
  });
});

ctx.testCleanExit();
