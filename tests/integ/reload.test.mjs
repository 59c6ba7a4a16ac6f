// Hot reload (DESIGN §2, §7): SIGHUP or `POST /admin/reload` (admin key) re-reads the config
// file. A bad file is refused — POST answers 400 naming file:line:col, SIGHUP logs it — and the
// running config keeps serving. A stream in flight finishes on the config it started with, even
// when the new config removed its provider. Under load, with good and bad reloads interleaved,
// no request fails.
//
// Two fake upstreams: A (ctx.up, provider `a`) and B (provider `b`); each config variant routes
// the models `ok*` and `chunks*` to one of them, so where a request lands shows which config
// served it.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { startFakeUpstream, expectedClientStream, contentPieces } from './lib/fake-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { useSluice, baseConfig, toYAML, chat, CLIENT_KEY, UPSTREAM_KEY } from './lib/sluice.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { uid, pollUntil } from './lib/dialects.mjs';
import { scrape, total } from './lib/prom.mjs';

const ADMIN_KEY = 'adm-reload-7d1e0c55';
const ROTATED_KEY = 'sk-rotated-4b9a21f0';

let upB;
after(async () => { await upB?.close(); });

/* A config variant: `route` is the provider of the ok* and chunks* models; dropA removes provider `a`. */
function variant(upA, { route = 'a', keys = [CLIENT_KEY], dropA = false } = {}) {
  const cfg = baseConfig({ upstreamPort: upA.port, star: false, workers: 2 });
  cfg.auth = { keys: keys.map((key, i) => ({ name: `k${i}`, key })), admin_keys: [ADMIN_KEY] };
  const prov = (port) => ({ type: 'openai', base_url: `http://127.0.0.1:${port}/v1`, api_key: UPSTREAM_KEY });
  cfg.providers = { ...cfg.providers, ...(dropA ? {} : { a: prov(upA.port) }), b: prov(upB.port) };
  cfg.models = { ...cfg.models, 'ok*': [{ provider: route }], 'chunks*': [{ provider: route }] };
  return cfg;
}

const ctx = useSluice(async (up) => {
  upB = await startFakeUpstream();
  return variant(up);
}, { secrets: [CLIENT_KEY, ADMIN_KEY, ROTATED_KEY] });

const auth = (key) => ({ authorization: `Bearer ${key}` });
const url = () => `${ctx.sl.url}/v1/chat/completions`;
const post = (body, headers = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, headers: { ...auth(CLIENT_KEY), ...headers } });
const reloadPost = (headers = auth(ADMIN_KEY)) => request(ctx.sl.url, { method: 'POST', path: '/admin/reload', headers });
const byRid = (srv, rid) => srv.requests.filter((r) => r.headers['x-request-id'] === rid);

/* Writes text as the config file, atomically (the path sluice was started with). */
function writeConfig(text) {
  const file = ctx.sl.configFile;
  const tmp = path.join(path.dirname(file), `.next-${process.pid}-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

const yamlOf = (opts) => `${toYAML(variant(ctx.up, opts))}\n`;

/* A valid file plus an unknown top-level key on its last line: {text, line, col}. */
function badUnknownKey(opts) {
  const good = yamlOf(opts);
  return { text: `${good}bogus_reload_key: 1\n`, line: good.split('\n').length, col: 1, what: 'bogus_reload_key' };
}

/* The /metrics scrape, with the admin key if it wants one. */
async function metrics() {
  let m = await scrape(ctx.sl.url);
  if (m.status === 401 || m.status === 403) m = await scrape(ctx.sl.url, auth(ADMIN_KEY));
  assert.equal(m.status, 200, `/metrics: ${m.status} ${m.text.slice(0, 200)}`);
  return m.p;
}
const reloads = async () => {
  const p = await metrics();
  return { ok: total(p, 'sluice_config_reloads_total', { result: 'ok' }), failed: total(p, 'sluice_config_reloads_total', { result: 'failed' }) };
};

/* SIGHUP, then waits (bounded) until sluice counted the reload as `result`. */
async function sighup(result = 'ok') {
  const before = await reloads();
  process.kill(ctx.sl.pid, 'SIGHUP');
  const after = await pollUntil(reloads, { until: (r) => r[result] > before[result], timeoutMs: 3000, what: `a ${result} reload`, returnLast: true });
  assert.equal(after[result], before[result] + 1, `sluice_config_reloads_total{result="${result}"} after SIGHUP`);
}

/* POSTs a reload of `text` and expects 200 {"reloaded":true}. */
async function reloadTo(text) {
  writeConfig(text);
  const r = await reloadPost();
  assert.equal(r.status, 200, `POST /admin/reload: ${r.status} ${r.text.slice(0, 300)}`);
  assert.deepEqual(r.json, { reloaded: true });
}

/* Which upstream served a request for `model` now: 'a' or 'b'. */
async function servedBy(model = 'ok') {
  const rid = uid('which');
  const r = await post(chat(model, rid), { 'x-request-id': rid });
  assert.equal(r.status, 200, `${r.status} ${r.text.slice(0, 200)}`);
  const a = byRid(ctx.up, rid).length;
  const b = byRid(upB, rid).length;
  assert.equal(a + b, 1, `served by ${a} A and ${b} B requests`);
  return a ? 'a' : 'b';
}

/* Polls (bounded) until new requests land on `want`; every reload must take effect that fast. */
async function assertRoutedTo(want, timeoutMs = 2000) {
  const got = await pollUntil(() => servedBy(), { until: (w) => w === want, timeoutMs, what: `requests to land on ${want}`, intervalMs: 20, returnLast: true });
  assert.equal(got, want, `new requests still go to ${got} after the reload`);
}

describe('POST /admin/reload: who may', { timeout: 60_000 }, () => {
  test('no key → 401, an API key → 403, an unknown key → 401/403, an admin key → 200 {"reloaded":true}', async () => {
    assertErrorBody(await reloadPost({}), 401);
    const unknown = await reloadPost(auth('adm-not-a-key'));
    assertErrorBody(unknown, unknown.status === 403 ? 403 : 401);
    assertErrorBody(await reloadPost(auth(CLIENT_KEY)), 403);
    const r = await reloadPost();
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(r.json, { reloaded: true });
    assert.ok(r.headers['x-request-id'], 'X-Request-Id on the admin answer');
  });

  test('/healthz needs no key even with auth on', async () => {
    const r = await request(ctx.sl.url, { path: '/healthz' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ok' });
  });
});

describe('reloading a good config', { timeout: 60_000 }, () => {
  test('SIGHUP re-reads the file: new requests take the new route', async () => {
    assert.equal(await servedBy(), 'a');
    writeConfig(yamlOf({ route: 'b' }));
    await sighup('ok');
    await assertRoutedTo('b');
    writeConfig(yamlOf({ route: 'a' }));
    await sighup('ok');
    await assertRoutedTo('a');
  });

  test('POST /admin/reload re-reads the file and counts an ok reload', async () => {
    const before = await reloads();
    await reloadTo(yamlOf({ route: 'b' }));
    await assertRoutedTo('b');
    await reloadTo(yamlOf({ route: 'a' }));
    await assertRoutedTo('a');
    const after2 = await reloads();
    assert.equal(after2.ok, before.ok + 2);
    assert.equal(after2.failed, before.failed);
  });

  test('client keys are re-read: a rotated key works, the old one is refused', async () => {
    await reloadTo(yamlOf({ keys: [ROTATED_KEY] }));
    const rid = uid('rotated');
    const got = await pollUntil(() => post(chat('ok', rid), auth(ROTATED_KEY)), { until: (r) => r.status === 200, timeoutMs: 2000, what: 'the rotated key to work', returnLast: true });
    assert.equal(got.status, 200, `rotated key: ${got.status} ${got.text.slice(0, 200)}`);
    const old = await pollUntil(() => post(chat('ok', 'old-key')), { until: (r) => r.status === 401, timeoutMs: 2000, what: 'the old key to be refused', returnLast: true });
    assertErrorBody(old, 401);
    await reloadTo(yamlOf());
    const back = await pollUntil(() => post(chat('ok', 'key-back')), { until: (r) => r.status === 200, timeoutMs: 2000, what: 'the original key to work again', returnLast: true });
    assert.equal(back.status, 200);
  });
});

describe('reloading a bad config: refused, the old one keeps serving', { timeout: 60_000 }, () => {
  test('POST: an unknown key → 400 naming file:line:col, route unchanged, counted as failed', async () => {
    const before = await reloads();
    const bad = badUnknownKey({ route: 'b' });
    writeConfig(bad.text);
    const r = await reloadPost();
    const e = assertErrorBody(r, 400);
    assert.match(e.message, new RegExp(`sluice\\.yaml:${bad.line}:${bad.col}\\b`), `error.message must name file:line:col: ${e.message}`);
    assert.ok(e.message.includes(bad.what), `error.message must say what is wrong: ${e.message}`);
    assert.equal(await servedBy(), 'a', 'the old config must keep serving');
    const after2 = await reloads();
    assert.equal(after2.failed, before.failed + 1);
    assert.equal(after2.ok, before.ok);
    writeConfig(yamlOf());
  });

  test('POST: a YAML syntax error and an unknown provider → 400 with file:line:col', async () => {
    for (const text of [`${yamlOf({ route: 'b' })}models: [unclosed\n`, yamlOf({ route: 'nope' })]) {
      writeConfig(text);
      const e = assertErrorBody(await reloadPost(), 400);
      assert.match(e.message, /sluice\.yaml:\d+:\d+/, `error.message must name file:line:col: ${e.message}`);
      assert.equal(await servedBy(), 'a');
    }
    writeConfig(yamlOf());
  });

  test('POST: a missing file → 400 naming the path; then a good file reloads', async () => {
    const file = ctx.sl.configFile;
    const keep = fs.readFileSync(file, 'utf8');
    fs.unlinkSync(file);
    try {
      const e = assertErrorBody(await reloadPost(), 400);
      assert.ok(e.message.includes('sluice.yaml'), `error.message must name the file: ${e.message}`);
      assert.equal(await servedBy(), 'a');
    } finally {
      fs.writeFileSync(file, keep);
    }
    await reloadTo(yamlOf());
  });

  test('SIGHUP: the error is logged with file:line:col, the old config keeps serving', async () => {
    const bad = badUnknownKey({ route: 'b' });
    writeConfig(bad.text);
    const mark = ctx.sl.stderrLines.length;
    await sighup('failed');
    const line = await ctx.sl.waitUntil(() => ctx.sl.stderrLines.slice(mark).find((l) => l.includes(`sluice.yaml:${bad.line}:${bad.col}`)),
      2000, 'the reload error on stderr');
    assert.ok(line.includes(bad.what), line);
    assert.equal(await servedBy(), 'a');
    writeConfig(yamlOf());
    await sighup('ok');
    assert.equal(await servedBy(), 'a');
  });
});

describe('in-flight streams and load', { timeout: 60_000 }, () => {
  test('a stream in flight finishes on its config (provider removed by the reload); new requests use the new one', async () => {
    const rid = uid('inflight');
    const body = chat('chunks:8:120', rid, { stream: true });
    const s = openStream(url(), body, { headers: { ...auth(CLIENT_KEY), 'x-request-id': rid } });
    await s.waitFor((x) => x.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length >= 2, 3000, 'two content chunks');
    await reloadTo(yamlOf({ route: 'b', dropA: true }));
    await assertRoutedTo('b');
    assert.equal(s.closedAt, null, 'the stream must still be open after the reload');
    await s.finished(5000);
    assert.equal(s.status, 200);
    assert.equal(s.body(), expectedClientStream(body), 'the stream in flight, byte for byte');
    assert.equal(byRid(ctx.up, rid).length, 1);
    assert.equal(byRid(ctx.up, rid)[0].finished, true, 'A finished the stream it started');
    assert.equal(byRid(upB, rid).length, 0, 'the running stream must not move to B');
    const line = await ctx.sl.waitForLog((l) => l.request_id === rid, 3000, 'its log line');
    assert.equal(line.provider, 'a');
    await reloadTo(yamlOf());
    await assertRoutedTo('a');
  });

  test('50 requests while good and bad configs are reloaded (POST and SIGHUP): none fails', async () => {
    const N = 50;
    const CONCURRENCY = 5;
    const progress = new EventEmitter();
    let next = 0;
    let done = 0;
    const failures = [];
    const client = async () => {
      while (next < N) {
        const i = next++;
        const stream = i % 2 === 0;
        const rid = uid(`load${i}`);
        const body = chat('chunks:4:30', rid, { stream });
        try {
          if (stream) {
            const s = await openStream(url(), body, { headers: { ...auth(CLIENT_KEY), 'x-request-id': rid } }).finished(8000);
            if (s.status !== 200 || s.body() !== expectedClientStream(body)) failures.push(`#${i} stream: ${s.status} ${s.text().slice(0, 200)}`);
          } else {
            const r = await post(body, { 'x-request-id': rid });
            if (r.status !== 200 || r.json?.choices?.[0]?.message?.content !== contentPieces(body).join('')) failures.push(`#${i}: ${r.status} ${r.text.slice(0, 200)}`);
          }
        } catch (e) {
          failures.push(`#${i}: ${e.message}`);
        }
        done++;
        progress.emit('done');
      }
    };
    const plan = [
      { text: () => yamlOf({ route: 'b' }), how: 'post', want: 200 },
      { text: () => badUnknownKey({ route: 'a' }).text, how: 'post', want: 400 },
      { text: () => yamlOf({ route: 'a' }), how: 'hup', want: 'ok' },
      { text: () => badUnknownKey({ route: 'b' }).text, how: 'hup', want: 'failed' },
      { text: () => yamlOf({ route: 'b' }), how: 'post', want: 200 },
      { text: () => yamlOf({ route: 'nope' }), how: 'post', want: 400 },
      { text: () => yamlOf({ route: 'a' }), how: 'post', want: 200 },
    ];
    let reloadsDone = 0;
    const reloader = async () => {
      for (let k = 0; done < N; k++) {
        const step = plan[k % plan.length];
        writeConfig(step.text());
        if (step.how === 'post') {
          const r = await reloadPost();
          assert.equal(r.status, step.want, `reload ${k} (${step.how}): ${r.status} ${r.text.slice(0, 200)}`);
        } else {
          await sighup(step.want);
        }
        reloadsDone++;
      }
    };
    const [, reloadResult] = await Promise.allSettled([
      Promise.all(Array.from({ length: CONCURRENCY }, client)),
      reloader(),
    ]);
    assert.deepEqual(failures, [], `requests failed during reloads:\n${failures.join('\n')}`);
    if (reloadResult.status === 'rejected') throw reloadResult.reason;
    assert.ok(reloadsDone >= plan.length, `only ${reloadsDone} reloads happened during the load`);
    const served = ctx.up.requests.concat(upB.requests).filter((r) => /^load\d+-/.test(r.headers['x-request-id'] ?? ''));
    assert.equal(served.length, N, 'every request reached exactly one upstream, once');
    await reloadTo(yamlOf());
    await assertRoutedTo('a');
  });
});

ctx.testCleanExit();
