// The aichat dialect (seed 003, NestJS): POST /api/ai-chat/stream with a Bearer JWT, and
// GET /api/ai-chat/stream-sse with the same fields as query parameters (token as access_token, so
// a browser EventSource works), both streaming `{"content","done":false}` … `{"done":true}` with
// an id per event, or `{"error","done":true}`. A reconnect carrying Last-Event-ID gets 204 (the
// EventSource stops instead of paying for the completion again). JWTs are checked with the
// algorithm pinned by config (HS256, RS256, ES256), exp/nbf with leeway, and a user claim;
// refusals are NestJS 401s and nothing goes upstream. Bad input is NestJS's 400.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EventSource } from 'eventsource';
import { openStream, within } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { assertStreamHeaders } from './lib/checks.mjs';
import { UPSTREAM_KEY } from './lib/sluice.mjs';
import {
  useSluices, dialectConfig, uid, echoed, postJSON, payloads, openSSE, signJwt, nowS,
  assertNothingUpstream, assertUpstreamCancelled, logLine, assertJSON, lastUser,
} from './lib/dialects.mjs';

const SECRET = 'aichat-hs256-secret-0123456789abcdef';
const SYS = 'AICHAT-SYS: you help with workspaces.';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ecOther = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = (k) => k.publicKey.export({ type: 'spki', format: 'pem' });

const hsJwt = { alg: 'HS256', secret: SECRET, user_claim: 'sub', leeway: '5s' };
const secrets = [SECRET]; // tokens are added as they are made: none may appear in stderr
const ctx = useSluices({
  echo: (up, db) => dialectConfig(up, db, { auth: { jwt: hsJwt }, dialects: { aichat: { model: 'echo', system_prompt: SYS } } }),
  chunks: (up, db) => dialectConfig(up, db, { auth: { jwt: hsJwt }, dialects: { aichat: { model: 'chunks:12:15', auth: 'jwt' } } }),
  slow: (up, db) => dialectConfig(up, db, { auth: { jwt: hsJwt }, dialects: { aichat: { model: 'chunks:200:20' } } }),
  drop: (up, db) => dialectConfig(up, db, { auth: { jwt: hsJwt }, dialects: { aichat: { model: 'drop-mid:3' } } }),
  rs: (up, db) => dialectConfig(up, db, { auth: { jwt: { alg: 'RS256', public_key: pem(rsa), user_claim: 'sub', leeway: '5s' } }, dialects: { aichat: { model: 'echo' } } }),
  es: (up, db) => dialectConfig(up, db, { auth: { jwt: { alg: 'ES256', public_key: pem(ec), user_claim: 'sub', leeway: '5s' } }, dialects: { aichat: { model: 'echo' } } }),
  noexp: (up, db) => dialectConfig(up, db, { auth: { jwt: { ...hsJwt, require_exp: false } }, dialects: { aichat: { model: 'echo' } } }),
}, { secrets });

const POST_PATH = '/api/ai-chat/stream';
const GET_PATH = '/api/ai-chat/stream-sse';

/* A token; every one made is a secret stopAndCheck looks for in stderr. */
function token(claims = {}, opts = { alg: 'HS256', key: SECRET }) {
  const t = signJwt({ sub: 'user-alice', iat: nowS(), exp: nowS() + 600, ...claims }, opts);
  secrets.push(t);
  return t;
}
const bearer = (t) => ({ authorization: `Bearer ${t}` });
const post = (sl, body, headers) => openStream(`${sl.url}${POST_PATH}`, body, { headers });
const getURL = (sl, q) => `${sl.url}${GET_PATH}?${new URLSearchParams(q)}`;
const get = (sl, q, headers = {}) => openSSE(getURL(sl, q), { headers });
const pieces = (msg, n) => Array.from({ length: n }, (_, i) => `${msg}#${i} `);

/* A good seed 003 stream: {content, done:false} events, then {done:true}; an id on each. */
function assertAichatStream(s, label = 'aichat stream') {
  assert.equal(s.status, 200, `${label}: ${s.status} ${s.text().slice(0, 300)}`);
  assertStreamHeaders(s.headers);
  const evs = payloads(s, label);
  assert.ok(evs.length >= 1, `${label}: no events`);
  assert.deepEqual(evs.at(-1), { done: true }, `${label}: the last event must be {"done":true}`);
  const contents = evs.slice(0, -1);
  for (const e of contents) {
    assert.equal(typeof e.content, 'string', `${label}: ${JSON.stringify(e)}`);
    assert.deepEqual(e, { content: e.content, done: false }, `${label}: a content event is exactly {content, done:false}`);
  }
  const ids = s.dataEvents().map((e) => e.id);
  assert.ok(ids.every((id) => typeof id === 'string' && id.length > 0), `${label}: every event needs an id: ${JSON.stringify(ids)}`);
  assert.equal(new Set(ids).size, ids.length, `${label}: event ids must differ: ${JSON.stringify(ids)}`);
  assert.equal(s.ended, true);
  return { contents: contents.map((e) => e.content).filter((c) => c !== ''), text: contents.map((e) => e.content).join(''), ids };
}

/* A NestJS HttpException body. */
function assertNest(r, status, error, label) {
  const j = assertJSON(r, status, label);
  assert.equal(j.statusCode, status, `${label}: statusCode ${JSON.stringify(j)}`);
  assert.equal(j.error, error, `${label}: error ${JSON.stringify(j)}`);
  assert.equal(typeof j.message, 'string', `${label}: message ${JSON.stringify(j)}`);
  assert.ok(j.message.length > 0);
  return j;
}

describe('aichat: POST /api/ai-chat/stream', { timeout: 60_000 }, () => {
  test('{content, done:false} per token with an id each, then {done:true}', async () => {
    const msg = uid('ai-post');
    const s = await post(ctx.sl.chunks, { message: msg }, bearer(token())).finished();
    const { contents } = assertAichatStream(s);
    assert.deepEqual(contents, pieces(msg, 12));
  });

  test('the upstream gets [system_prompt, ...history, message], the provider key, no client token', async () => {
    const msg = uid('ai-hist');
    const history = [{ role: 'user', content: 'Previous message' }, { role: 'assistant', content: 'Previous response' }];
    const t = token();
    const s = await post(ctx.sl.echo, { message: msg, history }, bearer(t)).finished();
    const seen = echoed(assertAichatStream(s).text);
    assert.equal(seen.body.model, 'echo');
    assert.deepEqual(seen.body.messages, [{ role: 'system', content: SYS }, ...history, { role: 'user', content: msg }]);
    assert.ok(!('max_tokens' in seen.body), 'max_tokens sent though not configured');
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.ok(!JSON.stringify(seen).includes(t), 'the client JWT went upstream');
  });

  test('sessionId, workspaceId, projectId and currentOrganizationId are accepted', async () => {
    const msg = uid('ai-ids');
    const s = await post(ctx.sl.chunks, {
      message: msg, history: [], sessionId: uid('session'), workspaceId: 'workspace-123', projectId: 'project-123', currentOrganizationId: 'org-123',
    }, bearer(token())).finished();
    assert.deepEqual(assertAichatStream(s).contents, pieces(msg, 12));
  });

  test('the access log line says dialect aichat, with the tokens', async () => {
    const rid = uid('rid');
    const s = await post(ctx.sl.chunks, { message: 'logged' }, { ...bearer(token()), 'x-request-id': rid }).finished();
    assertAichatStream(s);
    const l = await logLine(ctx.sl.chunks, rid);
    assert.equal(l.dialect, 'aichat');
    assert.equal(l.status, 200);
    assert.equal(l.completion_tokens, 12, 'the upstream reported 12 completion tokens');
    assert.ok(l.prompt_tokens > 0);
    assert.equal(l.cancelled, false);
  });
});

describe('aichat: GET /api/ai-chat/stream-sse', { timeout: 60_000 }, () => {
  test('access_token as a query parameter: the same events as the POST', async () => {
    const msg = uid('ai-get');
    const s = await get(ctx.sl.chunks, { message: msg, sessionId: uid('s'), access_token: token() }).finished();
    assert.deepEqual(assertAichatStream(s).contents, pieces(msg, 12));
  });

  test('a Bearer header works on the GET too', async () => {
    const msg = uid('ai-get-bearer');
    const s = await get(ctx.sl.chunks, { message: msg }, bearer(token())).finished();
    assert.deepEqual(assertAichatStream(s).contents, pieces(msg, 12));
  });

  test('history as a JSON-encoded query parameter reaches the upstream before the message', async () => {
    const msg = uid('ai-get-hist');
    const history = [{ role: 'user', content: 'è già tardi?' }, { role: 'assistant', content: 'Sì & no = 42%' }];
    const s = await get(ctx.sl.echo, { message: msg, history: JSON.stringify(history), access_token: token() }).finished();
    const seen = echoed(assertAichatStream(s).text);
    assert.deepEqual(seen.body.messages, [{ role: 'system', content: SYS }, ...history, { role: 'user', content: msg }]);
  });

  test('a reconnect carrying Last-Event-ID gets 204 and nothing goes upstream', async () => {
    const msg = uid('ai-reconnect');
    const before = ctx.up.count();
    const r = await request(ctx.sl.chunks.url, {
      path: `${GET_PATH}?${new URLSearchParams({ message: msg, access_token: token() })}`,
      headers: { accept: 'text/event-stream', 'last-event-id': '7' },
    });
    assert.equal(r.status, 204, `reconnect: ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(r.text, '');
    assertNothingUpstream(ctx.up, msg, before);
  });

  test('a real EventSource gets the answer once, and its reconnect is stopped by a 204', async () => {
    const msg = uid('ai-es');
    const fetches = [];
    const recFetch = async (url, init) => {
      const f = { url: String(url), lastEventId: init?.headers?.['Last-Event-ID'] ?? null, status: null };
      fetches.push(f);
      const res = await fetch(url, init);
      f.status = res.status;
      return res;
    };
    const es = new EventSource(getURL(ctx.sl.chunks, { message: msg, access_token: token() }), { fetch: recFetch });
    const got = [];
    let lastId = null;
    const closed = new Promise((resolve) => {
      es.onmessage = (ev) => { got.push(JSON.parse(ev.data)); lastId = ev.lastEventId; };
      es.onerror = (ev) => { if (es.readyState === EventSource.CLOSED) resolve(ev); };
    });
    try {
      // The server ends the stream after {"done":true}; EventSource reconnects (3 s default, or
      // the server's retry:) with Last-Event-ID and must get 204, which closes it for good.
      const ev = await within(closed, 8000, `the EventSource to close (readyState ${es.readyState}, fetches ${JSON.stringify(fetches)}, ${got.length} events)`);
      assert.equal(ev.code, 204, `the EventSource was closed by ${ev.code} (${ev.message})`);
    } finally {
      es.close();
    }
    assert.deepEqual(got.at(-1), { done: true });
    assert.deepEqual(got.slice(0, -1).map((e) => e.content).filter((c) => c !== ''), pieces(msg, 12));
    assert.equal(fetches.length, 2, `one stream and one reconnect: ${JSON.stringify(fetches)}`);
    assert.equal(fetches[0].status, 200);
    assert.equal(fetches[1].lastEventId, lastId, 'the reconnect carries the last event id');
    assert.equal(fetches[1].status, 204);
    assert.equal(ctx.up.requests.filter((r) => lastUser(r.body) === msg).length, 1, 'the completion ran once');
  });
});

describe('aichat: JWT', { timeout: 60_000 }, () => {
  const refused = {
    'no token': () => null,
    'a bad signature': () => token({}, { alg: 'HS256', key: 'another-secret-0123456789abcdef' }),
    'an expired token (beyond the 5 s leeway)': () => token({ exp: nowS() - 60 }),
    'nbf in the future (beyond the leeway)': () => token({ nbf: nowS() + 60 }),
    'no exp (auth.jwt.require_exp is true by default)': () => token({ exp: undefined }),
    'alg none': () => token({}, { alg: 'none' }),
    'a header alg other than the configured one (HS384)': () => token({}, { alg: 'HS256', key: SECRET, header: { alg: 'HS384' } }),
    'no user claim (sub)': () => token({ sub: undefined }),
    'not a JWT': () => 'not-a-jwt',
    'a JWT with two parts': () => token().split('.').slice(0, 2).join('.'),
  };
  for (const [name, make] of Object.entries(refused)) {
    test(`${name} → 401 on POST and GET, nothing upstream`, async () => {
      const t = make();
      const tag = uid('ai-denied');
      const before = ctx.up.count();
      const r1 = await postJSON(ctx.sl.echo, POST_PATH, { message: tag }, t === null ? {} : bearer(t));
      assertNest(r1, 401, 'Unauthorized', `POST with ${name}`);
      const q = { message: tag, ...(t === null ? {} : { access_token: t }) };
      const r2 = await request(ctx.sl.echo.url, { path: `${GET_PATH}?${new URLSearchParams(q)}`, headers: { accept: 'text/event-stream' } });
      assertNest(r2, 401, 'Unauthorized', `GET with ${name}`);
      if (t !== null) {
        const r3 = await request(ctx.sl.echo.url, { path: `${GET_PATH}?${new URLSearchParams({ message: tag })}`, headers: { accept: 'text/event-stream', ...bearer(t) } });
        assertNest(r3, 401, 'Unauthorized', `GET (Bearer) with ${name}`);
      }
      assertNothingUpstream(ctx.up, tag, before);
    });
  }

  test('a token without exp: 401 "token has no exp"; with require_exp: false it is accepted', async () => {
    const t = token({ exp: undefined });
    const tag = uid('ai-noexp');
    const r = await postJSON(ctx.sl.echo, POST_PATH, { message: tag }, bearer(t));
    assert.match(assertNest(r, 401, 'Unauthorized', 'no exp').message, /token has no exp/);
    const s = await post(ctx.sl.noexp, { message: tag }, bearer(t)).finished();
    assert.equal(lastUser(echoed(assertAichatStream(s, 'require_exp: false').text).body), tag);
    // An exp that is there is still checked.
    const old = await postJSON(ctx.sl.noexp, POST_PATH, { message: tag }, bearer(token({ exp: nowS() - 60 })));
    assertNest(old, 401, 'Unauthorized', 'expired, require_exp: false');
  });

  test('exp and nbf within the leeway are accepted', async () => {
    for (const claims of [{ exp: nowS() - 2 }, { nbf: nowS() + 2 }]) {
      const msg = uid('ai-leeway');
      const s = await post(ctx.sl.echo, { message: msg }, bearer(token(claims))).finished();
      assert.equal(lastUser(echoed(assertAichatStream(s, JSON.stringify(claims)).text).body), msg);
    }
  });

  test('RS256: a token of the configured key passes; HS256 signed with the public key, alg none, another key, ES256 do not', async () => {
    const ok = token({}, { alg: 'RS256', key: rsa.privateKey });
    const s = await post(ctx.sl.rs, { message: uid('ai-rs') }, bearer(ok)).finished();
    assertAichatStream(s, 'RS256');
    const bad = {
      'HS256 with the public PEM as secret': token({}, { alg: 'HS256', key: pem(rsa) }),
      'alg none': token({}, { alg: 'none' }),
      'another RSA key': token({}, { alg: 'RS256', key: rsaOther.privateKey }),
      'an ES256 token': token({}, { alg: 'ES256', key: ec.privateKey }),
    };
    for (const [name, t] of Object.entries(bad)) {
      const tag = uid('ai-rs-denied');
      const before = ctx.up.count();
      assertNest(await postJSON(ctx.sl.rs, POST_PATH, { message: tag }, bearer(t)), 401, 'Unauthorized', `RS256 sluice, ${name}`);
      assertNothingUpstream(ctx.up, tag, before);
    }
  });

  test('ES256: a token of the configured key passes; another key, RS256, HS256 with the public key do not', async () => {
    const ok = token({}, { alg: 'ES256', key: ec.privateKey });
    const s = await get(ctx.sl.es, { message: uid('ai-es256'), access_token: ok }).finished();
    assertAichatStream(s, 'ES256');
    const bad = {
      'another EC key': token({}, { alg: 'ES256', key: ecOther.privateKey }),
      'an RS256 token': token({}, { alg: 'RS256', key: rsa.privateKey }),
      'HS256 with the public PEM as secret': token({}, { alg: 'HS256', key: pem(ec) }),
    };
    for (const [name, t] of Object.entries(bad)) {
      const tag = uid('ai-es-denied');
      const before = ctx.up.count();
      assertNest(await postJSON(ctx.sl.es, POST_PATH, { message: tag }, bearer(t)), 401, 'Unauthorized', `ES256 sluice, ${name}`);
      assertNothingUpstream(ctx.up, tag, before);
    }
  });
});

describe('aichat: errors', { timeout: 60_000 }, () => {
  test('an upstream drop mid-stream: the content, then {"error","done":true}, no {"done":true}', async () => {
    const msg = uid('ai-drop');
    const s = await post(ctx.sl.drop, { message: msg }, bearer(token())).finished();
    assert.equal(s.status, 200);
    assertStreamHeaders(s.headers);
    const evs = payloads(s, 'dropped aichat stream');
    assert.deepEqual(evs.filter((e) => typeof e.content === 'string' && e.content !== '').map((e) => e.content), pieces(msg, 3));
    const last = evs.at(-1);
    assert.equal(typeof last.error, 'string', `the last event must be the error: ${JSON.stringify(last)}`);
    assert.ok(last.error.length > 0);
    assert.equal(last.done, true);
    assert.equal(evs.filter((e) => e.done === true).length, 1, 'only the error event says done');
    assert.equal(evs.filter((e) => 'error' in e).length, 1);
  });

  const badPost = {
    'no message': '{"history": []}',
    'invalid JSON': '{"message": "x"',
    'history not an array (object)': '{"message": "x", "history": {"role": "user"}}',
    'history not an array (string)': '{"message": "x", "history": "[]"}',
    'a JSON array body': '[{"message": "x"}]',
  };
  for (const [name, body] of Object.entries(badPost)) {
    test(`POST with ${name} → 400 Bad Request`, async () => {
      const before = ctx.up.count();
      assertNest(await postJSON(ctx.sl.echo, POST_PATH, body, bearer(token())), 400, 'Bad Request', name);
      assert.equal(ctx.up.count(), before);
    });
  }

  test('GET without message, or with history that is not a JSON array → 400 Bad Request', async () => {
    const before = ctx.up.count();
    for (const q of [{}, { message: 'x', history: 'not json' }, { message: 'x', history: '{"role":"user"}' }]) {
      const r = await request(ctx.sl.echo.url, { path: `${GET_PATH}?${new URLSearchParams({ ...q, access_token: token() })}`, headers: { accept: 'text/event-stream' } });
      assertNest(r, 400, 'Bad Request', `GET ${JSON.stringify(q)}`);
    }
    assert.equal(ctx.up.count(), before);
  });
});

describe('aichat: a client that leaves cancels the upstream', { timeout: 60_000 }, () => {
  test('POST mid-stream: the upstream is closed at once, the log says cancelled', async () => {
    const msg = uid('ai-gone');
    const rid = uid('rid');
    const s = post(ctx.sl.slow, { message: msg }, { ...bearer(token()), 'x-request-id': rid });
    await s.waitFor((x) => x.events.filter((e) => e.json?.content).length >= 3, 3000, 'three content events');
    s.destroy();
    await assertUpstreamCancelled(ctx.up, msg, s.destroyedAt);
    const l = await logLine(ctx.sl.slow, rid);
    assert.equal(l.dialect, 'aichat');
    assert.equal(l.cancelled, true);
  });

  test('an EventSource closed mid-stream: the upstream is closed at once', async () => {
    const msg = uid('ai-es-gone');
    const es = new EventSource(getURL(ctx.sl.slow, { message: msg, access_token: token() }));
    let n = 0;
    let goneAt = null;
    try {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${n} events in 3 s`)), 3000);
        es.onmessage = () => { if (++n === 3) { clearTimeout(timer); resolve(); } };
      });
    } finally {
      goneAt = performance.now();
      es.close();
    }
    await assertUpstreamCancelled(ctx.up, msg, goneAt);
  });
});

ctx.testCleanExit();
