// API keys issued by sluice (DESIGN §6): `sluice keys create|list|revoke --config FILE` works on
// the config's store (here one SQLite file shared by two running instances). The secret is
// printed once (`sk-sl-…`) with its id (`key_…`), stored only as a hash, never listed; it
// authenticates the OpenAI dialect like a config key (which keeps working, `key:` or
// `key_sha256:`). A revoked or expired key is refused (401) by every instance within a second;
// `--models` globs restrict the models (403 model_not_allowed); `--rpm`/`--tpm` set its limits.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { request } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { assertErrorBody, assertChunkStream } from './lib/checks.mjs';
import { runSluiceSync, baseConfig, chat, CLIENT_KEY, UPSTREAM_KEY } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, assertNothingUpstream } from './lib/dialects.mjs';

const HASHED = 'sk-hashed-777-config';
const secrets = [CLIENT_KEY, HASHED]; // issued secrets are added as they are created
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

/* Both instances on one SQLite file (the file's temp dir, keys.db). */
const shared = (up, db) => ({
  ...baseConfig({ upstreamPort: up.port, workers: 1 }),
  auth: { keys: [{ name: 'dev', key: CLIENT_KEY }, { name: 'hashed', key_sha256: sha256(HASHED) }] },
  store: { sqlite: path.join(path.dirname(db), 'keys.db') },
});
const ctx = useSluices({ a: shared, b: shared }, { secrets });
const both = () => [['a', ctx.sl.a], ['b', ctx.sl.b]];

const post = (sl, body, key, headers = {}) => request(sl.url, {
  method: 'POST', path: '/v1/chat/completions', body,
  headers: key === undefined ? headers : { authorization: `Bearer ${key}`, ...headers },
});

/* `sluice keys ARGS --config <instance a's config file>`, bounded. */
const keysCli = (...args) => runSluiceSync(['keys', ...args, '--config', ctx.sl.a.configFile]);

/* Creates a key; asserts exit 0, the secret on exactly one line of stdout, and an id. */
function createKey(name, ...opts) {
  const r = keysCli('create', '--name', name, ...opts);
  assert.equal(r.code, 0, `keys create ${name} ${opts.join(' ')}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('sk-sl-'));
  assert.equal(lines.length, 1, `keys create must print the secret on one line starting with sk-sl-:\n${r.stdout}`);
  const secret = /^sk-sl-[A-Za-z0-9_-]+/.exec(lines[0])?.[0];
  assert.ok(secret && secret.length >= 32, `a secret too short to be one: ${JSON.stringify(lines[0])}`);
  const id = /\bkey_[A-Za-z0-9_-]+/.exec(r.stdout)?.[0];
  assert.ok(id, `keys create printed no key id (key_…):\n${r.stdout}`);
  assert.ok(!id.includes(secret.slice(6, 20)), 'the id must not be derived from the secret');
  assert.equal(r.stdout.split(secret).length - 1, 1, 'the secret must be printed exactly once');
  secrets.push(secret);
  return { secret, id, stdout: r.stdout };
}

/* keys list: exit 0; the line naming id (or undefined). */
function listLine(id) {
  const r = keysCli('list');
  assert.equal(r.code, 0, `keys list: exit ${r.code}\n${r.stderr}`);
  return { out: r.stdout, line: r.stdout.split('\n').find((l) => l.includes(id)) };
}

/* Polls (≤ ms) until key answers `status` on sl; returns the last answer and when it came. */
async function untilStatus(sl, key, status, ms, model = 'ok') {
  const t0 = performance.now();
  const r = await pollUntil(() => post(sl, chat(model, uid('poll')), key), { until: (x) => x.status === status, timeoutMs: ms, what: `HTTP ${status}`, intervalMs: 25, returnLast: true });
  return { r, ms: performance.now() - t0 };
}

describe('sluice keys create / list', { timeout: 60_000 }, () => {
  test('create prints the secret once and a key id; the key works on both instances within a second', async () => {
    const k = createKey(uid('alpha'));
    for (const [name, sl] of both()) {
      const { r, ms } = await untilStatus(sl, k.secret, 200, 1500);
      assert.equal(r.status, 200, `[${name}] a new key must work within 1.5 s (got ${r.status} after ${ms.toFixed(0)} ms): ${r.text.slice(0, 300)}`);
      assert.equal(r.json.object, 'chat.completion');
    }
    const body = chat('chunks:3', uid('issued-stream'), { stream: true });
    const s = await openStream(`${ctx.sl.b.url}/v1/chat/completions`, body, { headers: { authorization: `Bearer ${k.secret}` } }).finished();
    assert.equal(s.status, 200, `streaming with an issued key: ${s.text().slice(0, 300)}`);
    assertChunkStream(s, { label: 'issued-key stream' });
    const rec = await ctx.up.waitForRequest((x) => x.body?.messages?.[0]?.content === body.messages[0].content);
    assert.equal(rec.headers.authorization, `Bearer ${UPSTREAM_KEY}`, 'the upstream gets the provider key');
    assert.ok(!JSON.stringify(rec.headers).includes(k.secret) && !rec.rawBody.toString().includes(k.secret), 'the issued key was forwarded upstream');
  });

  test('list shows id, name and limits of each key, never a secret', async () => {
    const name = uid('listed');
    const k = createKey(name, '--rpm', '7', '--tpm', '7777', '--budget-tokens', '4242', '--expires', '30d');
    const { out, line } = listLine(k.id);
    assert.ok(line, `keys list has no line for ${k.id}:\n${out}`);
    assert.ok(line.includes(name), `the line of ${k.id} must name ${name}: ${line}`);
    assert.match(line, /\b7777\b/, `the line must show tpm 7777: ${line}`);
    assert.match(line, /\b4242\b/, `the line must show the budget 4242: ${line}`);
    assert.match(line.replace(name, '').replace(k.id, ''), /\b7\b/, `the line must show rpm 7: ${line}`);
    for (const s of secrets) assert.ok(!out.includes(s), 'keys list printed a secret');
    assert.ok(!out.includes(sha256(k.secret)), 'keys list printed a secret\'s hash');
  });

  test('the store keeps hashes only: no issued secret in the SQLite files', () => {
    const dir = ctx.dir;
    const files = fs.readdirSync(dir).filter((f) => f.startsWith('keys.db')).map((f) => path.join(dir, f));
    assert.ok(files.length > 0, `no keys.db in ${dir}`);
    const issued = secrets.filter((s) => s.startsWith('sk-sl-'));
    assert.ok(issued.length > 0);
    for (const f of files) {
      const bytes = fs.readFileSync(f);
      for (const s of issued) assert.equal(bytes.indexOf(s), -1, `${path.basename(f)} contains an issued secret`);
    }
  });

  test('create without --name fails (non-zero exit, a message), and prints no secret', () => {
    const r = keysCli('create');
    assert.notEqual(r.code, 0, `keys create without --name must fail: ${r.stdout}`);
    assert.ok(r.stderr.trim().length > 0, 'no error message');
    assert.doesNotMatch(r.stdout, /sk-sl-/);
  });
});

describe('config keys still work beside issued ones', { timeout: 60_000 }, () => {
  test('auth.keys key: and key_sha256: authenticate; an unknown sk-sl- key is 401 with nothing upstream', async () => {
    for (const [name, sl] of both()) {
      assert.equal((await post(sl, chat('ok', uid('cfg')), CLIENT_KEY)).status, 200, `[${name}] config key`);
      assert.equal((await post(sl, chat('ok', uid('hashed')), HASHED)).status, 200, `[${name}] key_sha256 config key`);
      const before = ctx.up.count();
      const tag = uid('bogus');
      assertErrorBody(await post(sl, chat('ok', tag), `sk-sl-${'0'.repeat(48)}`), 401);
      assertErrorBody(await post(sl, chat('ok', tag)), 401);
      assertNothingUpstream(ctx.up, tag, before);
    }
  });
});

describe('revocation and expiry reach every instance within a second', { timeout: 60_000 }, () => {
  test('keys revoke ID: both instances answer 401 within 1.5 s; list marks it revoked', async () => {
    const k = createKey(uid('revoke-me'));
    for (const [name, sl] of both()) {
      const { r } = await untilStatus(sl, k.secret, 200, 1500);
      assert.equal(r.status, 200, `[${name}] before revocation: ${r.status} ${r.text.slice(0, 200)}`);
    }
    const before = listLine(k.id).line;
    const rv = keysCli('revoke', k.id);
    assert.equal(rv.code, 0, `keys revoke ${k.id}: exit ${rv.code}\n${rv.stdout}\n${rv.stderr}`);
    const t0 = performance.now();
    const done = await Promise.all(both().map(async ([name, sl]) => {
      const { r } = await untilStatus(sl, k.secret, 401, 1500);
      return { name, r, ms: performance.now() - t0 };
    }));
    for (const { name, r, ms } of done) {
      assertErrorBody(r, 401);
      assert.ok(ms <= 1600, `[${name}] refused only ${ms.toFixed(0)} ms after revoke`);
    }
    const tag = uid('revoked');
    const n = ctx.up.count();
    for (const [, sl] of both()) assertErrorBody(await post(sl, chat('ok', tag), k.secret), 401);
    assertNothingUpstream(ctx.up, tag, n);
    const after = listLine(k.id).line;
    assert.ok(after, `keys list no longer shows ${k.id}`);
    assert.notEqual(after, before, `the list line must change once revoked: ${after}`);
    assert.match(after, /revoked|yes|true/i, `the list line must say revoked: ${after}`);
    assert.equal((await post(ctx.sl.a, chat('ok', uid('cfg')), CLIENT_KEY)).status, 200, 'the config key is unaffected');
  });

  test('keys revoke of an unknown id fails (non-zero exit)', () => {
    const r = keysCli('revoke', 'key_0000000000000000');
    assert.notEqual(r.code, 0, `revoking an unknown id must fail: ${r.stdout}`);
    assert.ok(r.stderr.trim().length > 0, 'no error message');
  });

  test('a key created with --expires 3s works, then is refused (401) on both instances once expired', async () => {
    const created = Date.now();
    const k = createKey(uid('short'), '--expires', '3s');
    for (const [name, sl] of both()) {
      const { r } = await untilStatus(sl, k.secret, 200, 1500);
      assert.equal(r.status, 200, `[${name}] before expiry: ${r.status} ${r.text.slice(0, 200)}`);
    }
    // expires_at is in whole seconds: it may fall up to 1 s before created + 3 s.
    const wait = 3000 - (Date.now() - created) + 2000;
    const done = await Promise.all(both().map(async ([name, sl]) => {
      const { r } = await untilStatus(sl, k.secret, 401, Math.max(wait, 200));
      return { name, r, at: Date.now() - created };
    }));
    for (const { name, r, at } of done) {
      assertErrorBody(r, 401);
      assert.ok(at >= 1900, `[${name}] refused ${at} ms after creation: before its expiry`);
      assert.ok(at <= 5000, `[${name}] still accepted ${at} ms after creation (expired at about 3000)`);
    }
  });
});

describe('per-key models and limits from the CLI', { timeout: 60_000 }, () => {
  test('--models gpt-*,claude-*: matching models pass, another → 403 model_not_allowed, nothing upstream', async () => {
    const k = createKey(uid('models'), '--models', 'gpt-*,claude-*');
    const { r } = await untilStatus(ctx.sl.a, k.secret, 200, 1500, 'gpt-4o-mini');
    assert.equal(r.status, 200, `gpt-4o-mini: ${r.status} ${r.text.slice(0, 200)}`);
    // Instance b reads the new key on its own refresh (within a second): wait for it there too.
    const onB = await untilStatus(ctx.sl.b, k.secret, 200, 1500, 'claude-3-haiku');
    assert.equal(onB.r.status, 200, 'claude-3-haiku');
    for (const [name, sl] of both()) {
      for (const model of ['ok', 'mock-a', 'gpt4']) {
        const tag = uid('denied-model');
        const n = ctx.up.count();
        assertErrorBody(await post(sl, chat(model, tag), k.secret), 403, { code: 'model_not_allowed' });
        assertErrorBody(await post(sl, chat(model, tag, { stream: true }), k.secret), 403, { code: 'model_not_allowed' });
        assert.equal(ctx.up.count(), n, `[${name}] a ${model} request refused by --models reached the upstream`);
        assertNothingUpstream(ctx.up, tag);
      }
    }
  });

  test('--rpm 2 --tpm 5000: the x-ratelimit headers show them, the third request → 429', async () => {
    const k = createKey(uid('limited'), '--rpm', '2', '--tpm', '5000');
    const first = await untilStatus(ctx.sl.a, k.secret, 200, 1500);
    assert.equal(first.r.status, 200, `${first.r.status} ${first.r.text.slice(0, 200)}`);
    assert.equal(first.r.headers['x-ratelimit-limit-requests'], '2');
    assert.equal(first.r.headers['x-ratelimit-limit-tokens'], '5000');
    assert.equal((await post(ctx.sl.a, chat('ok', uid('second')), k.secret)).status, 200);
    const tag = uid('third');
    const n = ctx.up.count();
    const r = await post(ctx.sl.a, chat('ok', tag), k.secret);
    assertErrorBody(r, 429, { type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    assert.match(r.headers['retry-after'] ?? '', /^\d+$/, 'Retry-After');
    assertNothingUpstream(ctx.up, tag, n);
  });
});

ctx.testCleanExit();
