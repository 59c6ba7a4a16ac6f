// What the gateway shows about its traffic, and to whom (issue 11 item 5).
// /rate-limit/stats[/{user_id}] (monoai): an API key sees the usage of that key only, an admin
// key (auth.admin_keys) everyone's; without a key only a loopback peer is answered (the TCP
// peer: a forwarded header cannot make a remote client local), others get 403 in FastAPI's shape.
// /metrics: observability.metrics.auth none | key | admin, by default admin when admin keys
// exist, else key when keys exist, else none; errors are OpenAI-shaped 401/403. With
// observability.metrics.listen, /metrics (and /healthz, /readyz) move to their own listener and
// the main one no longer serves /metrics. The boolean form (metrics: true|false) still works.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { request } from './lib/raw-http.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { baseConfig } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, assertJSON, postJSON } from './lib/dialects.mjs';
import { assertValidExposition } from './lib/prom.mjs';

const K = { alice: 'sk-exp-alice-1111', bob: 'sk-exp-bob-2222', admin: 'sk-exp-admin-9999' };
const keys = [{ name: 'alice', key: K.alice }, { name: 'bob', key: K.bob }];
const base = (up, db, extra = {}) => ({
  ...baseConfig({ upstreamPort: up.port, workers: 2 }),
  store: { sqlite: db },
  dialects: { monoai: { model: 'mock-mono' } },
  ...extra,
});

const ctx = useSluices({
  // keys and admin keys; metrics by default: admin
  keyed: (up, db) => base(up, db, { auth: { keys, admin_keys: [K.admin] } }),
  // keys only; metrics by default: key
  keysOnly: (up, db) => base(up, db, { auth: { keys } }),
  // keys and admin keys, metrics open to any valid key
  metricsKey: (up, db) => base(up, db, { auth: { keys, admin_keys: [K.admin] }, observability: { metrics: { auth: 'key' } } }),
  // no keys at all, on every address (so a non-loopback peer can reach it), believing any proxy
  open: (up, db) => base(up, db, { listen: '0.0.0.0:0', trusted_proxies: ['0.0.0.0/0'] }),
  // /metrics on a listener of its own
  separate: (up, db) => base(up, db, {
    auth: { keys, admin_keys: [K.admin] },
    observability: { metrics: { enabled: true, auth: 'none', listen: '127.0.0.1:0' }, access_log: true },
  }),
  // the boolean form, off
  off: (up, db) => base(up, db, { observability: { metrics: false } }),
}, { secrets: Object.values(K) });

const bearer = (k) => (k ? { authorization: `Bearer ${k}` } : {});
const get = (sl, path, key, headers = {}) => request(sl.url, { path, headers: { ...bearer(key), ...headers } });

/* monoai's error shape: {"detail", "error"} */
function assertDetail(r, status, label) {
  const j = assertJSON(r, status, label);
  assert.equal(typeof j.detail, 'string', `${label}: detail`);
  assert.equal(typeof j.error, 'string', `${label}: error`);
  return j;
}

describe('/rate-limit/stats: each key sees its own usage, an admin key all', { timeout: 60_000 }, () => {
  const users = { alice: uid('u-alice'), bob: uid('u-bob'), shared: uid('u-shared') };

  test('two keys, one shared user id: each sees only the records of its own key', async () => {
    const sl = ctx.sl.keyed;
    const ask = (key, user) => postJSON(sl, '/model', { prompt: 'count me', user_id: user }, bearer(key));
    for (const [key, user] of [[K.alice, users.alice], [K.alice, users.alice], [K.alice, users.shared],
      [K.bob, users.bob], [K.bob, users.shared]]) {
      assertJSON(await ask(key, user), 200, `${user}`);
    }
    // the store writes in batches: wait (bounded) until the admin sees all five
    const all = await pollUntil(async () => assertJSON(await get(sl, '/rate-limit/stats', K.admin), 200), {
      until: (j) => ['alice', 'bob', 'shared'].every((u) => j.users.some((x) => x.user_id === users[u])) &&
        j.users.find((x) => x.user_id === users.shared).requests === 2, timeoutMs: 3000, what: 'five usage records', returnLast: true });
    const byId = (j) => Object.fromEntries(j.users.map((u) => [u.user_id, u.requests]));
    assert.deepEqual(
      [users.alice, users.bob, users.shared].map((u) => byId(all)[u]), [2, 1, 2], 'the admin sees every key\'s records');

    const a = byId(assertJSON(await get(sl, '/rate-limit/stats', K.alice), 200, 'alice'));
    assert.equal(a[users.alice], 2);
    assert.equal(a[users.shared], 1, 'alice sees her own request as the shared user, not bob\'s');
    assert.equal(a[users.bob], undefined, 'alice does not see bob\'s user');
    const b = byId(assertJSON(await get(sl, '/rate-limit/stats', K.bob), 200, 'bob'));
    assert.equal(b[users.bob], 1);
    assert.equal(b[users.shared], 1);
    assert.equal(b[users.alice], undefined);
  });

  test('/rate-limit/stats/{user_id}: the same scopes', async () => {
    const sl = ctx.sl.keyed;
    const one = async (key, user) => assertJSON(await get(sl, `/rate-limit/stats/${user}`, key), 200, `${user}`).requests;
    assert.equal(await one(K.alice, users.bob), 0, 'bob\'s user through alice\'s key: nothing');
    assert.equal(await one(K.bob, users.bob), 1);
    assert.equal(await one(K.alice, users.shared), 1);
    assert.equal(await one(K.bob, users.shared), 1);
    assert.equal(await one(K.admin, users.shared), 2);
  });

  test('no key or a wrong key: 401 in monoai\'s shape, nothing shown', async () => {
    const sl = ctx.sl.keyed;
    for (const [key, label] of [[null, 'no key'], ['sk-not-a-key', 'wrong key']]) {
      const j = assertDetail(await get(sl, '/rate-limit/stats', key), 401, label);
      assert.equal(j.users, undefined);
      assertDetail(await get(sl, `/rate-limit/stats/${users.alice}`, key), 401, `${label}, one user`);
    }
  });
});

/* A non-loopback address of this machine (the open sluice listens on 0.0.0.0). */
function externalIPv4() {
  const all = Object.values(os.networkInterfaces()).flat();
  return all.find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
}

describe('/rate-limit/stats with no keys configured: loopback peers only', { timeout: 60_000 }, () => {
  test('a loopback peer is answered', async () => {
    const port = ctx.sl.open.port;
    const r = await request(`http://127.0.0.1:${port}`, { path: '/rate-limit/stats' });
    assert.ok(Array.isArray(assertJSON(r, 200).users));
  });

  test('a peer on another address gets 403, and a forwarded "127.0.0.1" does not help', async () => {
    const ip = externalIPv4();
    assert.ok(ip, 'this test needs a non-loopback IPv4 address on the machine');
    const url = `http://${ip}:${ctx.sl.open.port}`;
    assertDetail(await request(url, { path: '/rate-limit/stats' }), 403, 'remote peer');
    assertDetail(await request(url, { path: '/rate-limit/stats/someone' }), 403, 'remote peer, one user');
    assertDetail(await request(url, { path: '/rate-limit/stats', headers: { 'x-forwarded-for': '127.0.0.1' } }), 403,
      'remote peer claiming loopback');
    // the rest of monoai answers the remote peer as before
    assertJSON(await request(url, { method: 'POST', path: '/validate-user', body: { user_id: 'x' } }), 200);
  });
});

describe('/metrics: who may read it', { timeout: 60_000 }, () => {
  const metrics = (sl, key) => get(sl, '/metrics', key);
  const assertMetrics = (r, label) => {
    assert.equal(r.status, 200, `${label}: ${r.status} ${r.text.slice(0, 200)}`);
    assert.match(r.headers['content-type'] ?? '', /^text\/plain;\s*version=0\.0\.4/);
    assertValidExposition(r.text);
  };

  test('default with admin keys: admin only (401 without a key or with a wrong one, 403 for an ordinary key)', async () => {
    const sl = ctx.sl.keyed;
    const none = await metrics(sl, null);
    assertErrorBody(none, 401, { type: 'invalid_request_error', code: 'invalid_api_key' });
    assert.match(none.headers['www-authenticate'] ?? '', /^Bearer/);
    assertErrorBody(await metrics(sl, 'sk-not-a-key'), 401, { code: 'invalid_api_key' });
    assertErrorBody(await metrics(sl, K.alice), 403, { type: 'invalid_request_error', code: 'forbidden' });
    assertMetrics(await metrics(sl, K.admin), 'admin key');
    // health stays open to load balancers
    assert.equal((await get(sl, '/healthz')).status, 200);
    assert.equal((await get(sl, '/readyz')).status, 200);
  });

  test('default with keys only: any valid key', async () => {
    const sl = ctx.sl.keysOnly;
    assertErrorBody(await metrics(sl, null), 401, { code: 'invalid_api_key' });
    assertErrorBody(await metrics(sl, 'sk-not-a-key'), 401, { code: 'invalid_api_key' });
    assertMetrics(await metrics(sl, K.bob), 'bob');
  });

  test('auth: key — ordinary and admin keys both read it', async () => {
    const sl = ctx.sl.metricsKey;
    assertErrorBody(await metrics(sl, null), 401, { code: 'invalid_api_key' });
    assertMetrics(await metrics(sl, K.alice), 'alice');
    assertMetrics(await metrics(sl, K.admin), 'admin');
  });

  test('no keys at all: open (default none)', async () => {
    assertMetrics(await request(`http://127.0.0.1:${ctx.sl.open.port}`, { path: '/metrics' }), 'no key');
  });

  test('metrics: false (the boolean form) still turns it off', async () => {
    assertErrorBody(await metrics(ctx.sl.off, null), 404, { code: 'metrics_disabled' });
  });
});

describe('/metrics on its own listener (observability.metrics.listen)', { timeout: 60_000 }, () => {
  const opsURL = async () => {
    const sl = ctx.sl.separate;
    const line = await sl.waitUntil(() => sl.stderrLines.find((l) => /metrics served on http:\/\//.test(l)), 3000, 'the metrics listener line');
    const m = /metrics served on (http:\/\/[^/\s]+)\/metrics/.exec(line);
    assert.ok(m, line);
    assert.notEqual(m[1], ctx.sl.separate.url, 'a port of its own');
    return m[1];
  };

  test('served there (auth: none), with /healthz and /readyz, and nothing else', async () => {
    const url = await opsURL();
    const r = await request(url, { path: '/metrics' });
    assert.equal(r.status, 200, `${r.status} ${r.text.slice(0, 200)}`);
    assertValidExposition(r.text);
    assert.deepEqual((await request(url, { path: '/healthz' })).json, { status: 'ok' });
    assert.deepEqual((await request(url, { path: '/readyz' })).json, { status: 'ready' });
    for (const [method, path] of [['POST', '/v1/chat/completions'], ['GET', '/v1/models'], ['GET', '/rate-limit/stats'], ['GET', '/admin/usage']]) {
      const x = await request(url, { method, path, headers: bearer(K.admin), body: method === 'POST' ? {} : undefined });
      assert.equal(x.status, 404, `${method} ${path} on the metrics listener: ${x.status}`);
    }
  });

  test('and no longer on the main listener, whatever the key; health stays there', async () => {
    const sl = ctx.sl.separate;
    for (const key of [null, K.alice, K.admin]) {
      assertErrorBody(await get(sl, '/metrics', key), 404, { type: 'invalid_request_error' });
    }
    assert.equal((await get(sl, '/healthz')).status, 200);
    assert.equal((await get(sl, '/readyz')).status, 200);
  });
});

ctx.testCleanExit();
