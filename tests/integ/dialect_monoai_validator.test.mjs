// monoai's user validator as an HTTP callback (seed 002's `user_validator`): with
// `dialects.monoai.users.url`, sluice POSTs {"user_id"} to the URL before anything goes upstream
// and reads true / false / a normalized id. Invalid users get the allow-list's 403 (WebSocket:
// {"error"}); a normalized id is the user from then on (usage, /rate-limit/stats); a validator
// that is down, slow or talks nonsense fails closed with 503; answers are cached per worker for
// users.cache; a client that leaves while sluice waits cancels the validator's request.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { request, closedPort } from './lib/raw-http.mjs';
import {
  useSluices, dialectConfig, uid, echoed, openWS, postJSON, assertNothingUpstream, assertJSON,
  lastUser, pollUntil,
} from './lib/dialects.mjs';

/*
 * The validator, deciding by the id's first '-'-separated word, like the seed's example:
 *   user-…     → true                          admin-X  → {"valid": true, "user_id": "user-X"}
 *   str-X      → "norm-X" (a bare string)      same-…   → {"valid": true, "user_id": <same id>}
 *   slow-…     → never answers                 garbage-… → not JSON
 *   err-…      → HTTP 500                      anything else → {"valid": false}
 * Every call is logged: {user_id, body, headers, closedEarly} (the socket closed before we
 * answered).
 */
function startValidator() {
  const calls = [];
  const em = new EventEmitter();
  em.setMaxListeners(0);
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const raw = Buffer.concat(parts).toString('utf8');
      let body;
      try { body = JSON.parse(raw); } catch { body = undefined; }
      const id = String(body?.user_id ?? '');
      const rec = { user_id: id, raw, body, headers: req.headers, method: req.method, closedEarly: false };
      calls.push(rec);
      res.on('close', () => {
        if (!res.writableEnded) rec.closedEarly = true;
        em.emit('change');
      });
      em.emit('change');
      const [kind, ...rest] = id.split('-');
      const json = (v) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(v)); };
      if (kind === 'slow') return;
      if (kind === 'user') json(true);
      else if (kind === 'admin') json({ valid: true, user_id: `user-${rest.join('-')}` });
      else if (kind === 'str') json(`norm-${rest.join('-')}`);
      else if (kind === 'same') json({ valid: true, user_id: id });
      else if (kind === 'garbage') { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"valid": tru'); }
      else if (kind === 'err') { res.writeHead(500); res.end('{"valid": true}'); }
      else json({ valid: false });
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        calls,
        callsFor: (id) => calls.filter((c) => c.user_id === id),
        waitFor: (pred, timeoutMs = 3000, label = 'a validator call') => new Promise((res, rej) => {
          const check = () => { const v = pred(calls); if (v) { done(); res(v); return true; } return false; };
          const timer = setTimeout(() => { done(); rej(new Error(`timed out after ${timeoutMs} ms waiting for ${label}`)); }, timeoutMs);
          const done = () => { clearTimeout(timer); em.off('change', check); };
          if (!check()) em.on('change', check);
        }),
        close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
      });
    });
  });
}

// Started here, not in a before() of this file: useSluices' configs await it (see sluice.mjs).
const validatorP = startValidator();
after(async () => (await validatorP).close());

const monoai = (users) => ({ monoai: { model: 'echo', auth: 'none', users, agents: { support: { model: 'echo' } } } });
const ctx = useSluices({
  main: async (up, db) => {
    const v = await validatorP;
    return dialectConfig(up, db, { dialects: monoai({ url: `http://127.0.0.1:${v.port}/validate` }) });
  },
  nocache: async (up, db) => {
    const v = await validatorP;
    return dialectConfig(up, db, { dialects: monoai({ url: `http://127.0.0.1:${v.port}/validate`, cache: 0 }) });
  },
  down: async (up, db) => dialectConfig(up, db, { dialects: monoai({ url: `http://127.0.0.1:${await closedPort()}/v` }) }),
});

const statsOf = async (sl, user) => assertJSON(await request(sl.url, { path: `/rate-limit/stats/${encodeURIComponent(user)}` }), 200, `stats of ${user}`);
const wsURL = (sl, p) => `ws://127.0.0.1:${sl.port}${p}`;

function assertUnavailable(r, label) {
  const j = assertJSON(r, 503, label);
  assert.equal(j.detail, 'user validation is unavailable', `${label}: ${r.text}`);
  assert.equal(typeof j.error, 'string', `${label}: {"error": "..."} expected: ${r.text}`);
  assert.ok(j.error.length > 0);
  return j;
}

describe('monoai users.url: the verdict', { timeout: 60_000 }, () => {
  test('a valid user is served, and sluice asked with POST {"user_id"} as JSON', async () => {
    const v = await validatorP;
    const user = uid('user');
    const prompt = uid('valid');
    const j = assertJSON(await postJSON(ctx.sl.main, '/model', { prompt, user_id: user }), 200);
    assert.equal(lastUser(echoed(j.response).body), prompt);
    const [call] = v.callsFor(user);
    assert.ok(call, 'the validator was not asked');
    assert.equal(call.method, 'POST');
    assert.match(call.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(call.body, { user_id: user });
    const a = assertJSON(await postJSON(ctx.sl.main, '/agent/support/stream', { prompt, user_id: user }), 200);
    assert.equal(lastUser(echoed(a.response).body), prompt);
  });

  test('an invalid user gets 403 {"detail"} on every route, and nothing goes upstream', async () => {
    const tag = uid('refused');
    const before = ctx.up.count();
    for (const p of ['/model', '/model/stream', '/agent/support', '/agent/support/stream']) {
      const j = assertJSON(await postJSON(ctx.sl.main, p, { prompt: tag, user_id: uid('nobody') }), 403, p);
      assert.equal(j.detail, 'invalid user');
    }
    const s = await postJSON(ctx.sl.main, '/model/stream', { prompt: tag, user_id: uid('nobody') }, { accept: 'text/event-stream' });
    assert.equal(assertJSON(s, 403, 'SSE').detail, 'invalid user');
    assertNothingUpstream(ctx.up, tag, before);
  });

  test('a normalized id is the user: /rate-limit/stats counts it, not the id sent', async () => {
    const rest = uid('norm');
    const j = assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'hi', user_id: `admin-${rest}` }), 200);
    assert.equal(typeof j.response, 'string');
    const s = await pollUntil(() => statsOf(ctx.sl.main, `user-${rest}`), { until: (x) => x.requests >= 1, timeoutMs: 3000, what: 'the normalized user in the stats', returnLast: true });
    assert.equal(s.requests, 1, `stats of the normalized id: ${JSON.stringify(s)}`);
    assert.equal((await statsOf(ctx.sl.main, `admin-${rest}`)).requests, 0, 'the id as sent must not be counted');
    // a bare JSON string is a normalized id too
    const str = uid('s');
    assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'hi', user_id: `str-${str}` }), 200);
    const n = await pollUntil(() => statsOf(ctx.sl.main, `norm-${str}`), { until: (x) => x.requests >= 1, timeoutMs: 3000, what: 'the string-normalized user', returnLast: true });
    assert.equal(n.requests, 1);
  });

  test('/validate-user: {"valid", "user_id", "normalized"}', async () => {
    const id = uid('x');
    const check = async (user) => assertJSON(await postJSON(ctx.sl.main, '/validate-user', { user_id: user }), 200, user);
    assert.deepEqual(await check(`user-${id}`), { valid: true, user_id: `user-${id}`, normalized: null });
    assert.deepEqual(await check(`admin-${id}`), { valid: true, user_id: `admin-${id}`, normalized: `user-${id}` });
    assert.deepEqual(await check(`str-${id}`), { valid: true, user_id: `str-${id}`, normalized: `norm-${id}` });
    assert.deepEqual(await check(`same-${id}`), { valid: true, user_id: `same-${id}`, normalized: null });
    assert.deepEqual(await check(`bad-${id}`), { valid: false, user_id: `bad-${id}`, normalized: null });
    assertUnavailable(await postJSON(ctx.sl.down, '/validate-user', { user_id: `user-${id}` }), '/validate-user, validator down');
    assert.equal((await postJSON(ctx.sl.main, '/validate-user', {})).status, 400);
  });
});

describe('monoai users.url: failing closed', { timeout: 60_000 }, () => {
  test('validator down: 503 {"detail": "user validation is unavailable"}, nothing upstream', async () => {
    const tag = uid('down');
    const before = ctx.up.count();
    for (const p of ['/model', '/agent/support']) {
      assertUnavailable(await postJSON(ctx.sl.down, p, { prompt: tag, user_id: uid('user') }), p);
    }
    assertNothingUpstream(ctx.up, tag, before);
  });

  test('an unreadable answer or an HTTP error from the validator: 503', async () => {
    const tag = uid('nonsense');
    const before = ctx.up.count();
    assertUnavailable(await postJSON(ctx.sl.main, '/model', { prompt: tag, user_id: uid('garbage') }), 'garbage');
    assertUnavailable(await postJSON(ctx.sl.main, '/model', { prompt: tag, user_id: uid('err') }), 'HTTP 500');
    assertNothingUpstream(ctx.up, tag, before);
  });

  test('a validator that never answers: 503 after the deadline, its request closed', async () => {
    const v = await validatorP;
    const user = uid('slow');
    const t0 = performance.now();
    const r = await postJSON(ctx.sl.main, '/model', { prompt: 'hi', user_id: user }, {}, 10000);
    assertUnavailable(r, 'validator timeout');
    const ms = performance.now() - t0;
    assert.ok(ms >= 1500 && ms < 5000, `answered after ${ms.toFixed(0)} ms (deadline 2 s)`);
    await v.waitFor(() => v.callsFor(user).find((c) => c.closedEarly), 2000, 'the timed-out validator request to close');
  });

  test('the client leaving while sluice waits closes the validator request, and nothing goes upstream', async () => {
    const v = await validatorP;
    const user = uid('slow');
    const tag = uid('abort');
    const before = ctx.up.count();
    const body = JSON.stringify({ prompt: tag, user_id: user });
    const req = http.request({
      host: '127.0.0.1', port: ctx.sl.main.port, path: '/model', method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('error', () => { /* we destroy it */ });
    req.end(body);
    await v.waitFor(() => v.callsFor(user).length > 0, 3000, 'the validator to be asked');
    const goneAt = performance.now();
    req.destroy();
    await v.waitFor(() => v.callsFor(user).find((c) => c.closedEarly), 1500, 'the validator request to close after the client left');
    assert.ok(performance.now() - goneAt < 1500);
    assertNothingUpstream(ctx.up, tag, before);
  });
});

describe('monoai users.url: the per-worker cache', { timeout: 60_000 }, () => {
  test('two requests by one user within users.cache: one validator call', async () => {
    const v = await validatorP;
    const user = uid('user');
    for (let i = 0; i < 2; i++) assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: `c${i}`, user_id: user }), 200);
    assert.deepEqual(assertJSON(await postJSON(ctx.sl.main, '/validate-user', { user_id: user }), 200), { valid: true, user_id: user, normalized: null });
    assert.equal(v.callsFor(user).length, 1, 'answers are cached');
    // refusals are cached too
    const bad = uid('bad');
    for (let i = 0; i < 2; i++) assert.equal((await postJSON(ctx.sl.main, '/model', { prompt: 'x', user_id: bad })).status, 403);
    assert.equal(v.callsFor(bad).length, 1);
    // a normalized answer, from the cache, still normalizes
    const rest = uid('cn');
    for (let i = 0; i < 2; i++) assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'x', user_id: `admin-${rest}` }), 200);
    assert.equal(v.callsFor(`admin-${rest}`).length, 1);
    const s = await pollUntil(() => statsOf(ctx.sl.main, `user-${rest}`), { until: (x) => x.requests >= 2, timeoutMs: 3000, what: 'both requests under the normalized id', returnLast: true });
    assert.equal(s.requests, 2);
  });

  test('failures are not cached: the next request asks again', async () => {
    const v = await validatorP;
    const user = uid('err');
    for (let i = 0; i < 2; i++) assertUnavailable(await postJSON(ctx.sl.main, '/model', { prompt: 'x', user_id: user }), `try ${i}`);
    assert.equal(v.callsFor(user).length, 2);
  });

  test('cache: 0 asks every time', async () => {
    const v = await validatorP;
    const user = uid('user');
    for (let i = 0; i < 2; i++) assertJSON(await postJSON(ctx.sl.nocache, '/model', { prompt: `n${i}`, user_id: user }), 200);
    assert.equal(v.callsFor(user).length, 2);
  });
});

describe('monoai users.url: WebSocket', { timeout: 60_000 }, () => {
  test('an invalid user gets {"error"}, nothing goes upstream, and the socket serves the next prompt', async () => {
    const tag = uid('ws-refused');
    const before = ctx.up.count();
    const c = await openWS(wsURL(ctx.sl.main, '/model/ws'));
    const r = await c.exchange({ prompt: tag, user_id: uid('nobody') });
    assert.ok(r.error, `an {"error"} message expected: ${JSON.stringify(r.msgs)}`);
    assert.equal(r.error.error, 'invalid user');
    assertNothingUpstream(ctx.up, tag, before);
    const prompt = uid('ws-ok');
    const ok = await c.exchange({ prompt, user_id: `admin-${uid('w')}` });
    assert.ok(ok.complete, `complete expected: ${JSON.stringify(ok.msgs).slice(0, 300)}`);
    assert.equal(lastUser(echoed(ok.complete.result.response).body), prompt);
    await c.close();
  });

  test('validator down: {"error"} naming it, and the socket stays usable', async () => {
    const c = await openWS(wsURL(ctx.sl.down, '/agent/support/ws'));
    const r = await c.exchange({ prompt: 'hi', user_id: uid('user') });
    assert.ok(r.error, `an {"error"} message expected: ${JSON.stringify(r.msgs)}`);
    assert.match(r.error.error, /^user validation is unavailable/);
    const again = await c.exchange({ prompt: 'hi', user_id: uid('user') });
    assert.ok(again.error);
    assert.equal(c.closed, null);
    await c.close();
  });

  test('closing the socket while sluice waits closes the validator request', async () => {
    const v = await validatorP;
    const user = uid('slow');
    const c = await openWS(wsURL(ctx.sl.main, '/model/ws'));
    await c.send({ prompt: 'hi', user_id: user });
    await v.waitFor(() => v.callsFor(user).length > 0, 3000, 'the validator to be asked');
    c.ws.terminate();
    await v.waitFor(() => v.callsFor(user).find((x) => x.closedEarly), 1500, 'the validator request to close after the socket did');
  });
});

ctx.testCleanExit();
