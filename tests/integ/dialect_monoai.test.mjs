// The monoai dialect over HTTP (seed 002, FastAPI): POST /model and /model/stream answer JSON
// {response, usage} (SSE chunk … complete only when the client sends Accept: text/event-stream);
// /agent/{name}[/stream] apply a configured preset (system prompt, model, params) and list the
// upstream calls in `iterations`; unknown agents are 404 and bad input 400 with FastAPI's
// {"detail"}; POST /validate-user and an allow-list gate user ids (403 before anything goes
// upstream); GET /rate-limit/stats[/{user_id}] totals usage per user from the store. WebSocket:
// dialect_monoai_ws.test.mjs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { usageFor } from './lib/fake-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { request, RawClient, formatRequest } from './lib/raw-http.mjs';
import { assertStreamHeaders } from './lib/checks.mjs';
import {
  useSluices, dialectConfig, uid, echoed, mockAnswer, postJSON, payloads, assertNothingUpstream,
  assertUpstreamCancelled, logLine, assertUsage, assertJSON, lastUser, pollUntil,
} from './lib/dialects.mjs';

const AGENT_SYS = 'You are the support agent of ACME. Reply in one line.';
const agents = {
  support: { model: 'echo', system_prompt: AGENT_SYS, params: { temperature: 0.2, max_tokens: 321 } },
  mocky: { model: 'mock-agent' },
  slow: { model: 'chunks:200:20' },
  hang: { model: 'hang' },
  drop: { model: 'drop-mid:3' },
};
const ctx = useSluices({
  main: (up, db) => dialectConfig(up, db, { dialects: { monoai: { model: 'mock-mono', auth: 'none', agents } } }),
  guarded: (up, db) => dialectConfig(up, db, {
    dialects: { monoai: { model: 'echo', users: { allow: ['u1', 'u2'] }, agents: { support: { model: 'echo' } } } },
  }),
  prefixed: (up, db) => dialectConfig(up, db, { dialects: { monoai: { prefix: '/seed002', model: 'echo' } } }),
});

let reference;
const answer = async () => (reference ??= await mockAnswer(ctx.sl.main));
const sse = (sl, path, body, headers = {}) => openStream(`${sl.url}${path}`, body, { headers: { accept: 'text/event-stream', ...headers } });

/* A FastAPI-style error body: {"detail": "<non-empty>"} (and sluice's "error" beside it). */
function assertDetail(r, status, label) {
  const j = assertJSON(r, status, label);
  assert.equal(typeof j.detail, 'string', `${label}: {"detail": "..."} expected, got ${r.text}`);
  assert.ok(j.detail.length > 0, `${label}: empty detail`);
  return j;
}

/* {response, usage} of /model. */
function assertModelAnswer(j, label = '/model') {
  assert.equal(typeof j.response, 'string', `${label}: ${JSON.stringify(j).slice(0, 300)}`);
  assertUsage(j.usage, `${label} usage`);
  return j;
}

/* {prompt, response, iterations: [one call], usage} of /agent/{name}. */
function assertAgentAnswer(j, prompt, { model, provider }, label = 'agent') {
  assert.equal(j.prompt, prompt, `${label}: prompt`);
  assert.equal(typeof j.response, 'string');
  assertUsage(j.usage, `${label} usage`);
  assert.ok(Array.isArray(j.iterations), `${label}: iterations must be an array: ${JSON.stringify(j).slice(0, 300)}`);
  assert.equal(j.iterations.length, 1, 'one upstream call: one iteration');
  const it = j.iterations[0];
  assert.equal(it.model, model, 'iteration model');
  assert.equal(it.provider, provider, 'iteration provider');
  assert.equal(it.finish_reason, 'stop', 'iteration finish_reason');
  assert.deepEqual(assertUsage(it.usage, 'iteration usage'), j.usage, 'one iteration: its usage is the total');
  assert.equal(typeof it.ttft_ms, 'number');
  assert.ok(it.ttft_ms >= 0, `ttft_ms ${it.ttft_ms}`);
  return j;
}

/* The seed 002 SSE stream: chunk events, then one complete (no error). */
function assertMonoStream(s, label = 'monoai stream') {
  assert.equal(s.status, 200, `${label}: ${s.status} ${s.text().slice(0, 300)}`);
  assertStreamHeaders(s.headers);
  const evs = payloads(s, label);
  assert.ok(evs.length >= 1, `${label}: no events`);
  const last = evs.at(-1);
  assert.equal(last.type, 'complete', `${label}: the last event must be complete: ${JSON.stringify(last).slice(0, 300)}`);
  const chunks = evs.slice(0, -1);
  for (const c of chunks) {
    assert.equal(c.type, 'chunk', `${label}: only chunk events before complete: ${JSON.stringify(c).slice(0, 300)}`);
    assert.equal(typeof c.content, 'string');
  }
  const text = chunks.map((c) => c.content).join('');
  assert.ok(last.result && typeof last.result === 'object', `${label}: complete without result`);
  assert.equal(last.result.response, text, 'result.response must be the chunks joined');
  assertUsage(last.result.usage, `${label} result.usage`);
  assert.equal(s.ended, true);
  return { chunks, text, result: last.result };
}

describe('monoai: /model and /model/stream', { timeout: 60_000 }, () => {
  test('POST /model answers {response, usage} with the full answer', async () => {
    const j = assertModelAnswer(assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'Ciao mondo' }), 200));
    assert.equal(j.response, await answer());
    assert.equal(j.usage.completion_tokens, 20);
  });

  test('POST /model/stream answers the same JSON by default, and with Accept: application/json', async () => {
    for (const headers of [{}, { accept: 'application/json' }]) {
      const r = await postJSON(ctx.sl.main, '/model/stream', { prompt: 'Ciao mondo streaming' }, headers);
      const j = assertModelAnswer(assertJSON(r, 200, `/model/stream with ${JSON.stringify(headers)}`));
      assert.equal(j.response, await answer());
      assert.equal(j.usage.completion_tokens, 20);
    }
  });

  test('POST /model/stream with Accept: text/event-stream streams chunk … complete', async () => {
    const s = await sse(ctx.sl.main, '/model/stream', { prompt: 'sse please' }).finished();
    const { chunks, text, result } = assertMonoStream(s);
    assert.equal(chunks.length, 20, 'one chunk event per mock token');
    assert.equal(text, await answer());
    assert.equal(result.usage.completion_tokens, 20);
  });

  test('the upstream gets just the prompt as a user message (no system prompt, no max_tokens)', async () => {
    const prompt = uid('mono-echo');
    const j = assertJSON(await postJSON(ctx.sl.prefixed, '/seed002/model', { prompt, user_id: 'someone' }), 200);
    const seen = echoed(j.response);
    assert.equal(seen.body.model, 'echo');
    assert.deepEqual(seen.body.messages, [{ role: 'user', content: prompt }]);
    assert.ok(!('max_tokens' in seen.body), `max_tokens sent though not configured: ${seen.body.max_tokens}`);
    assert.ok(!('temperature' in seen.body), 'temperature sent though not configured');
    assert.deepEqual(j.usage, usageFor(seen.body, 1));
  });

  test('the access log line says dialect monoai, with the tokens of the answer', async () => {
    const rid = uid('rid');
    const j = assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'logged' }, { 'x-request-id': rid }), 200);
    const l = await logLine(ctx.sl.main, rid);
    assert.equal(l.dialect, 'monoai');
    assert.equal(l.status, 200);
    assert.equal(l.path, '/model');
    assert.equal(l.prompt_tokens, j.usage.prompt_tokens);
    assert.equal(l.completion_tokens, j.usage.completion_tokens);
  });
});

describe('monoai: agents', { timeout: 60_000 }, () => {
  test('POST /agent/support: the preset system prompt and params reach the upstream; iterations lists the call', async () => {
    const prompt = uid('agent-echo');
    const j = assertJSON(await postJSON(ctx.sl.main, '/agent/support', { prompt }), 200);
    assertAgentAnswer(j, prompt, { model: 'echo', provider: 'fake' });
    const seen = echoed(j.response);
    assert.equal(seen.body.model, 'echo');
    assert.deepEqual(seen.body.messages, [{ role: 'system', content: AGENT_SYS }, { role: 'user', content: prompt }]);
    assert.equal(seen.body.temperature, 0.2);
    assert.equal(seen.body.max_tokens, 321);
    assert.deepEqual(j.usage, usageFor(seen.body, 1), 'usage is what the upstream reported');
  });

  test('POST /agent/support/stream answers the same JSON by default', async () => {
    const prompt = uid('agent-stream-json');
    const j = assertJSON(await postJSON(ctx.sl.main, '/agent/support/stream', { prompt }), 200);
    assertAgentAnswer(j, prompt, { model: 'echo', provider: 'fake' });
    assert.equal(echoed(j.response).body.temperature, 0.2);
  });

  test('POST /agent/mocky/stream with Accept: text/event-stream: chunks, then complete with prompt and iterations', async () => {
    const prompt = uid('agent-sse');
    const s = await sse(ctx.sl.main, '/agent/mocky/stream', { prompt }).finished();
    const { chunks, result } = assertMonoStream(s);
    assert.equal(chunks.length, 20);
    assert.equal(result.response, await answer());
    assertAgentAnswer(result, prompt, { model: 'mock-agent', provider: 'mock' }, 'complete.result');
  });

  test('an unknown agent is 404 {"detail"} (and "error"); nothing goes upstream', async () => {
    const tag = uid('no-agent');
    const before = ctx.up.count();
    for (const p of ['/agent/nope', '/agent/nope/stream']) {
      const j = assertDetail(await postJSON(ctx.sl.main, p, { prompt: tag }), 404, p);
      assert.ok('error' in j, `${p}: "error" missing beside "detail": ${JSON.stringify(j)}`);
      const r = await postJSON(ctx.sl.main, p, { prompt: tag }, { accept: 'text/event-stream' });
      assertDetail(r, 404, `${p} (SSE asked)`);
    }
    assertNothingUpstream(ctx.up, tag, before);
  });

  test('an upstream drop mid-stream: the chunks, then {"error"}, no complete', async () => {
    const prompt = uid('agent-drop');
    const s = await sse(ctx.sl.main, '/agent/drop/stream', { prompt }).finished();
    assert.equal(s.status, 200);
    const evs = payloads(s, 'dropped agent stream');
    assert.deepEqual(evs.filter((e) => e.type === 'chunk' && e.content !== '').map((e) => e.content), [`${prompt}#0 `, `${prompt}#1 `, `${prompt}#2 `]);
    assert.equal(evs.filter((e) => e.type === 'complete').length, 0, 'complete after a drop');
    const last = evs.at(-1);
    assert.equal(typeof last.error, 'string', `the last event must be {"error"}: ${JSON.stringify(last)}`);
    assert.ok(last.error.length > 0);
    assert.equal(evs.filter((e) => 'error' in e).length, 1);
  });

  test('an upstream drop on the JSON endpoint: a 5xx with "detail", no partial response', async () => {
    const r = await postJSON(ctx.sl.main, '/agent/drop', { prompt: uid('agent-drop-json') });
    assert.ok(r.status >= 500 && r.status <= 599, `status ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(typeof r.json?.detail, 'string', `{"detail"} expected: ${r.text}`);
    assert.ok(!('response' in r.json), 'a partial answer was returned as if complete');
  });
});

describe('monoai: bad input is 400 with "detail" and nothing goes upstream', { timeout: 60_000 }, () => {
  const cases = {
    'invalid JSON': '{"prompt": "x"',
    'a JSON array': '["x"]',
    'no prompt': '{"user_id": "u1"}',
    'a null prompt': '{"prompt": null}',
  };
  for (const [name, body] of Object.entries(cases)) {
    test(`${name} → 400 on /model, /model/stream and /agent/support`, async () => {
      const before = ctx.up.count();
      for (const p of ['/model', '/model/stream', '/agent/support', '/agent/support/stream']) {
        const j = assertDetail(await postJSON(ctx.sl.main, p, body), 400, `${p} with ${name}`);
        assert.ok('error' in j, `${p}: "error" missing beside "detail"`);
      }
      const r = await postJSON(ctx.sl.main, '/model/stream', body, { accept: 'text/event-stream' });
      assertDetail(r, 400, `/model/stream (SSE asked) with ${name}`);
      assert.equal(ctx.up.count(), before, 'a bad request reached the upstream');
    });
  }
});

describe('monoai: user validation', { timeout: 60_000 }, () => {
  test('without a users config every user id is valid', async () => {
    const r = await postJSON(ctx.sl.main, '/validate-user', { user_id: 'anyone-42' });
    assert.deepEqual(assertJSON(r, 200), { valid: true, user_id: 'anyone-42', normalized: null });
    const j = assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'hi', user_id: 'anyone-42' }), 200);
    assert.equal(j.response, await answer());
  });

  test('with users.allow: u1 is valid, u9 is not', async () => {
    assert.deepEqual(assertJSON(await postJSON(ctx.sl.guarded, '/validate-user', { user_id: 'u1' }), 200),
      { valid: true, user_id: 'u1', normalized: null });
    const j = assertJSON(await postJSON(ctx.sl.guarded, '/validate-user', { user_id: 'u9' }), 200);
    assert.equal(j.valid, false, `u9 is not in the allow-list: ${JSON.stringify(j)}`);
  });

  test('a user outside the allow-list gets 403 {"detail"} everywhere, and nothing goes upstream', async () => {
    const tag = uid('u9-denied');
    const before = ctx.up.count();
    for (const p of ['/model', '/model/stream', '/agent/support', '/agent/support/stream']) {
      assertDetail(await postJSON(ctx.sl.guarded, p, { prompt: tag, user_id: 'u9' }), 403, `${p} as u9`);
    }
    assertDetail(await postJSON(ctx.sl.guarded, '/model/stream', { prompt: tag, user_id: 'u9' }, { accept: 'text/event-stream' }), 403, 'SSE as u9');
    assertNothingUpstream(ctx.up, tag, before);
  });

  test('a user in the allow-list is served', async () => {
    const prompt = uid('u1-ok');
    const j = assertJSON(await postJSON(ctx.sl.guarded, '/model', { prompt, user_id: 'u1' }), 200);
    assert.equal(lastUser(echoed(j.response).body), prompt);
    const a = assertJSON(await postJSON(ctx.sl.guarded, '/agent/support', { prompt, user_id: 'u2' }), 200);
    assertAgentAnswer(a, prompt, { model: 'echo', provider: 'fake' });
  });
});

describe('monoai: /rate-limit/stats', { timeout: 60_000 }, () => {
  const statsOf = async (sl, user) => assertJSON(await request(sl.url, { path: `/rate-limit/stats/${encodeURIComponent(user)}` }), 200, `stats of ${user}`);

  test('three requests by one user: requests 3 and the token sums the answers reported', async () => {
    const user = uid('stats-u1');
    const usages = [];
    usages.push(assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'one', user_id: user }), 200).usage);
    usages.push(assertJSON(await postJSON(ctx.sl.main, '/model/stream', { prompt: 'two two', user_id: user }), 200).usage);
    const s = await sse(ctx.sl.main, '/model/stream', { prompt: 'three three three', user_id: user }).finished();
    usages.push(assertMonoStream(s).result.usage);
    // someone else's request must not count
    assertJSON(await postJSON(ctx.sl.main, '/model', { prompt: 'other', user_id: `${user}-other` }), 200);
    const sum = (k) => usages.reduce((a, u) => a + u[k], 0);
    // Usage records are written by the store thread: poll (bounded) until all three are in.
    const last = await pollUntil(() => statsOf(ctx.sl.main, user), { until: (x) => x.requests >= 3, timeoutMs: 3000, what: `3 requests in the stats of ${user}`, returnLast: true });
    assert.equal(last.user_id, user);
    assert.equal(last.requests, 3, `stats after 3 requests: ${JSON.stringify(last)}`);
    assert.equal(last.prompt_tokens, sum('prompt_tokens'));
    assert.equal(last.completion_tokens, sum('completion_tokens'));
    assert.equal(last.completion_tokens, 60);
    assert.equal(last.total_tokens, sum('total_tokens'));
    assert.ok(last.last_request !== null && last.last_request !== undefined, 'last_request must be set');

    const all = assertJSON(await request(ctx.sl.main.url, { path: '/rate-limit/stats' }), 200, 'all stats');
    assert.ok(Array.isArray(all.users), `{"users": [...]} expected: ${JSON.stringify(all).slice(0, 300)}`);
    const mine = all.users.find((u) => u.user_id === user);
    assert.ok(mine, `${user} missing from /rate-limit/stats`);
    assert.deepEqual(mine, last, 'the list and the per-user endpoint agree');
    for (const u of all.users) {
      for (const k of ['user_id', 'requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'last_request']) {
        assert.ok(k in u, `users[].${k} missing: ${JSON.stringify(u)}`);
      }
    }
  });

  test('an unknown user has zeros and last_request null', async () => {
    const user = uid('never-seen');
    assert.deepEqual(await statsOf(ctx.sl.main, user), {
      user_id: user, requests: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, last_request: null,
    });
  });
});

describe('monoai: a client that leaves cancels the upstream', { timeout: 60_000 }, () => {
  test('SSE mid-stream: the upstream is closed at once', async () => {
    const prompt = uid('mono-gone');
    const s = sse(ctx.sl.main, '/agent/slow/stream', { prompt });
    await s.waitFor((x) => x.events.filter((e) => e.json?.type === 'chunk').length >= 3, 3000, 'three chunks');
    s.destroy();
    await assertUpstreamCancelled(ctx.up, prompt, s.destroyedAt);
  });

  test('while waiting for the JSON answer: the upstream is closed at once', async () => {
    for (const p of ['/agent/hang', '/agent/hang/stream']) {
      const prompt = uid('mono-gone-json');
      const rc = await RawClient.connect(ctx.sl.main.port);
      await rc.write(formatRequest({ method: 'POST', path: p, body: { prompt } }));
      await ctx.up.waitForRequest((r) => lastUser(r.body) === prompt, 3000);
      const goneAt = performance.now();
      rc.destroy();
      await assertUpstreamCancelled(ctx.up, prompt, goneAt, p);
    }
  });
});

describe('monoai: mounting', { timeout: 60_000 }, () => {
  test('prefix /seed002 mounts every endpoint under it, and not at the root', async () => {
    const sl = ctx.sl.prefixed;
    assertJSON(await postJSON(sl, '/seed002/model/stream', { prompt: 'p' }), 200);
    assert.deepEqual(assertJSON(await postJSON(sl, '/seed002/validate-user', { user_id: 'x' }), 200), { valid: true, user_id: 'x', normalized: null });
    assert.ok(Array.isArray(assertJSON(await request(sl.url, { path: '/seed002/rate-limit/stats' }), 200).users));
    for (const p of ['/model', '/model/stream', '/validate-user']) {
      const r = await postJSON(sl, p, { prompt: 'p', user_id: 'x' });
      assert.equal(r.status, 404, `${p} without the prefix: ${r.status}`);
    }
    assert.equal((await request(sl.url, { path: '/rate-limit/stats' })).status, 404);
  });
});

ctx.testCleanExit();
