// Conversation sessions (seed 000 session_id, seed 003 sessionId), kept by the store thread in
// SQLite: a known session sends its earlier turns upstream (user and assistant, oldest first,
// at most history_turns turns) before the new message; an unknown id starts a new session with a
// new id; a session belongs to its owner (API key name, JWT sub) and is neither read nor written
// by anyone else; history survives a restart. Every assertion is on what reached the provider
// (the fake upstream's `echo` model answers with the request it received). Each turn waits for
// its access-log line before the next one, so its history write is queued before the next read.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { openStream } from './lib/sse.mjs';
import { startSluice, stopAndCheck } from './lib/sluice.mjs';
import {
  useSluices, dialectConfig, uid, echoed, postJSON, payloads, signJwt, nowS, logLine, assertJSON,
} from './lib/dialects.mjs';

const SYS = 'SESSION-SYS: remember the conversation.';
const KA = 'sk-session-key-a-111';
const KB = 'sk-session-key-b-222';
const SECRET = 'sessions-hs256-secret-0123456789';
const jwtCfg = { alg: 'HS256', secret: SECRET, user_claim: 'sub', leeway: '5s' };
const ctx = useSluices({
  chat: (up, db) => dialectConfig(up, db, { dialects: { chat: { model: 'echo', system_prompt: SYS, history_turns: 2, auth: 'none' } } }),
  keys: (up, db) => dialectConfig(up, db, {
    auth: { keys: [{ name: 'a', key: KA }, { name: 'b', key: KB }] },
    dialects: { chat: { model: 'echo', auth: 'key' } },
  }),
  aichat: (up, db) => dialectConfig(up, db, { auth: { jwt: jwtCfg }, dialects: { aichat: { model: 'echo' } } }),
}, { secrets: [KA, KB, SECRET] });

const sys = { role: 'system', content: SYS };
const user = (content) => ({ role: 'user', content });
const assistant = (content) => ({ role: 'assistant', content });

/*
 * One seed 000 turn (JSON endpoint, or the SSE one with stream: true). Waits for the turn's
 * access-log line. Returns the session id answered, the answer text and the messages the
 * upstream received.
 */
async function chatTurn(sl, message, { sessionId, headers = {}, stream = false } = {}) {
  const rid = uid('rid');
  const body = { message, ...(sessionId === undefined ? {} : { session_id: sessionId }) };
  let sid;
  let answer;
  if (stream) {
    const s = await openStream(`${sl.url}/api/chat/stream/`, body, { headers: { ...headers, 'x-request-id': rid } }).finished();
    assert.equal(s.status, 200, `stream turn: ${s.status} ${s.text().slice(0, 300)}`);
    const evs = payloads(s, 'chat stream');
    assert.equal(evs[0]?.type, 'start', `stream turn: ${s.text().slice(0, 300)}`);
    assert.equal(evs.at(-1)?.type, 'end', `stream turn: ${s.text().slice(-300)}`);
    sid = evs[0].session_id;
    answer = evs.at(-1).complete_response;
  } else {
    const j = assertJSON(await postJSON(sl, '/api/chat/', body, { ...headers, 'x-request-id': rid }), 200, 'chat turn');
    sid = j.session_id;
    answer = j.response;
  }
  assert.equal(typeof sid, 'string');
  assert.ok(sid.length > 0, 'empty session id');
  await logLine(sl, rid);
  return { sid, answer, messages: echoed(answer).body.messages };
}

/* One seed 003 turn for user sub. */
async function aichatTurn(sl, sub, message, extra = {}) {
  const rid = uid('rid');
  const t = signJwt({ sub, iat: nowS(), exp: nowS() + 600 }, { alg: 'HS256', key: SECRET });
  const s = await openStream(`${sl.url}/api/ai-chat/stream`, { message, ...extra },
    { headers: { authorization: `Bearer ${t}`, 'x-request-id': rid } }).finished();
  assert.equal(s.status, 200, `aichat turn: ${s.status} ${s.text().slice(0, 300)}`);
  const evs = payloads(s, 'aichat stream');
  assert.deepEqual(evs.at(-1), { done: true }, `aichat turn: ${s.text().slice(-300)}`);
  const answer = evs.slice(0, -1).map((e) => e.content).join('');
  await logLine(sl, rid);
  return { answer, messages: echoed(answer).body.messages };
}

describe('chat sessions (seed 000)', { timeout: 60_000 }, () => {
  test('a session sends its earlier turns upstream, oldest first, and keeps its id', async () => {
    const [m1, m2, m3] = [uid('s1'), uid('s2'), uid('s3')];
    const t1 = await chatTurn(ctx.sl.chat, m1);
    assert.deepEqual(t1.messages, [sys, user(m1)], 'a new session has no history');
    const t2 = await chatTurn(ctx.sl.chat, m2, { sessionId: t1.sid });
    assert.equal(t2.sid, t1.sid, 'a known session keeps its id');
    assert.deepEqual(t2.messages, [sys, user(m1), assistant(t1.answer), user(m2)]);
    const t3 = await chatTurn(ctx.sl.chat, m3, { sessionId: t1.sid });
    assert.equal(t3.sid, t1.sid);
    assert.deepEqual(t3.messages, [sys, user(m1), assistant(t1.answer), user(m2), assistant(t2.answer), user(m3)]);
  });

  test('history is bounded by history_turns (2): only the last two turns go upstream', async () => {
    const ms = [uid('b1'), uid('b2'), uid('b3'), uid('b4')];
    const t = [await chatTurn(ctx.sl.chat, ms[0])];
    for (const m of ms.slice(1)) t.push(await chatTurn(ctx.sl.chat, m, { sessionId: t[0].sid }));
    assert.deepEqual(t[3].messages, [sys, user(ms[1]), assistant(t[1].answer), user(ms[2]), assistant(t[2].answer), user(ms[3])]);
  });

  test('the streaming and the JSON endpoint share sessions', async () => {
    const [m1, m2, m3] = [uid('x1'), uid('x2'), uid('x3')];
    const t1 = await chatTurn(ctx.sl.chat, m1, { stream: true });
    const t2 = await chatTurn(ctx.sl.chat, m2, { sessionId: t1.sid });
    assert.equal(t2.sid, t1.sid);
    assert.deepEqual(t2.messages, [sys, user(m1), assistant(t1.answer), user(m2)], 'the streamed turn is in the history');
    const t3 = await chatTurn(ctx.sl.chat, m3, { sessionId: t1.sid, stream: true });
    assert.equal(t3.sid, t1.sid, 'the start event names the session continued');
    assert.deepEqual(t3.messages, [sys, user(m1), assistant(t1.answer), user(m2), assistant(t2.answer), user(m3)]);
  });

  test('an unknown session_id starts a new session, with a new id and no history', async () => {
    const unknown = uid('no-such-session');
    const [m1, m2] = [uid('u1'), uid('u2')];
    for (const stream of [false, true]) {
      const t1 = await chatTurn(ctx.sl.chat, m1, { sessionId: unknown, stream });
      assert.notEqual(t1.sid, unknown, 'an unknown id must not be adopted');
      assert.deepEqual(t1.messages, [sys, user(m1)]);
      const t2 = await chatTurn(ctx.sl.chat, m2, { sessionId: t1.sid });
      assert.deepEqual(t2.messages, [sys, user(m1), assistant(t1.answer), user(m2)], 'the new id works');
    }
  });

  test('two sessions used in turn keep their own histories', async () => {
    const a1 = await chatTurn(ctx.sl.chat, uid('A1'));
    const b1 = await chatTurn(ctx.sl.chat, uid('B1'));
    assert.notEqual(a1.sid, b1.sid);
    const mA2 = uid('A2');
    const mB2 = uid('B2');
    const a2 = await chatTurn(ctx.sl.chat, mA2, { sessionId: a1.sid });
    const b2 = await chatTurn(ctx.sl.chat, mB2, { sessionId: b1.sid, stream: true });
    assert.deepEqual(a2.messages, [sys, a1.messages[1], assistant(a1.answer), user(mA2)]);
    assert.deepEqual(b2.messages, [sys, b1.messages[1], assistant(b1.answer), user(mB2)]);
  });
});

describe('sessions belong to their owner', { timeout: 60_000 }, () => {
  const ka = { authorization: `Bearer ${KA}` };
  const kb = { authorization: `Bearer ${KB}` };

  test('chat with auth: key refuses a request without a key (401), nothing upstream', async () => {
    const tag = uid('no-key');
    const before = ctx.up.count();
    const r = await postJSON(ctx.sl.keys, '/api/chat/', { message: tag });
    assert.equal(r.status, 401, `${r.status} ${r.text.slice(0, 200)}`);
    const r2 = await postJSON(ctx.sl.keys, '/api/chat/', { message: tag }, { authorization: 'Bearer sk-wrong' });
    assert.equal(r2.status, 401);
    assert.equal(ctx.up.count(), before);
  });

  test('a session made with key a is neither read nor written with key b', async () => {
    const [m1, mb, m3] = [uid('ka1'), uid('kb1'), uid('ka2')];
    const a1 = await chatTurn(ctx.sl.keys, m1, { headers: ka });
    assert.deepEqual(a1.messages, [user(m1)]);
    assert.ok(!JSON.stringify(echoed(a1.answer).headers).includes(KA), 'the client key went upstream');
    const b1 = await chatTurn(ctx.sl.keys, mb, { headers: kb, sessionId: a1.sid });
    assert.notEqual(b1.sid, a1.sid, "key b must get a new session, not key a's");
    assert.deepEqual(b1.messages, [user(mb)], "key a's history leaked to key b");
    const a2 = await chatTurn(ctx.sl.keys, m3, { headers: ka, sessionId: a1.sid });
    assert.equal(a2.sid, a1.sid);
    assert.deepEqual(a2.messages, [user(m1), assistant(a1.answer), user(m3)], "key b's turn was written into key a's session");
    // and b's own new session works for b
    const mb2 = uid('kb2');
    const b2 = await chatTurn(ctx.sl.keys, mb2, { headers: kb, sessionId: b1.sid, stream: true });
    assert.equal(b2.sid, b1.sid);
    assert.deepEqual(b2.messages, [user(mb), assistant(b1.answer), user(mb2)]);
  });

  test('aichat sessionId is per user (JWT sub): another user with the same id gets no history', async () => {
    const sessionId = uid('shared-session');
    const [m1, m2, mb, m3] = [uid('al1'), uid('al2'), uid('bob1'), uid('al3')];
    const t1 = await aichatTurn(ctx.sl.aichat, 'alice', m1, { sessionId });
    assert.deepEqual(t1.messages, [user(m1)]);
    const t2 = await aichatTurn(ctx.sl.aichat, 'alice', m2, { sessionId });
    assert.deepEqual(t2.messages, [user(m1), assistant(t1.answer), user(m2)], "alice's session history");
    const tb = await aichatTurn(ctx.sl.aichat, 'bob', mb, { sessionId });
    assert.deepEqual(tb.messages, [user(mb)], "alice's history leaked to bob");
    const t3 = await aichatTurn(ctx.sl.aichat, 'alice', m3, { sessionId });
    assert.deepEqual(t3.messages, [user(m1), assistant(t1.answer), user(m2), assistant(t2.answer), user(m3)],
      "bob's turn was written into alice's session");
  });

  test('aichat without sessionId keeps nothing between requests', async () => {
    const [m1, m2] = [uid('ns1'), uid('ns2')];
    const t1 = await aichatTurn(ctx.sl.aichat, 'carol', m1);
    assert.deepEqual(t1.messages, [user(m1)]);
    const t2 = await aichatTurn(ctx.sl.aichat, 'carol', m2);
    assert.deepEqual(t2.messages, [user(m2)]);
  });
});

describe('sessions are stored', { timeout: 60_000 }, () => {
  test('history survives a restart on the same SQLite file', async () => {
    const db = path.join(ctx.dir, 'restart.db');
    const config = dialectConfig(ctx.up, db, { dialects: { chat: { model: 'echo', system_prompt: SYS } } });
    const [m1, m2] = [uid('r1'), uid('r2')];
    let sl = await startSluice({ config });
    let t1;
    try {
      t1 = await chatTurn(sl, m1);
    } finally {
      await stopAndCheck(sl);
    }
    sl = await startSluice({ config });
    try {
      const t2 = await chatTurn(sl, m2, { sessionId: t1.sid });
      assert.equal(t2.sid, t1.sid, 'the session must still be known after a restart');
      assert.deepEqual(t2.messages, [sys, user(m1), assistant(t1.answer), user(m2)]);
    } finally {
      await stopAndCheck(sl);
    }
  });
});

ctx.testCleanExit();
