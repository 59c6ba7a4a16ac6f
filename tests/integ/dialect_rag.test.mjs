// The rag dialect (seed 004, the RAG service): POST /api/chat answers JSON {answer, sources,
// timings, streaming, usage}; POST /api/chat/stream answers SSE phase events (cache,
// retrieval, rerank), sources, chunks, phase generation, end — or an error event and no end.
// The corpus is a temp directory of .md/.txt files indexed into SQLite FTS5 by the store
// thread; the `echo` upstream shows what reached the model (the retrieved passages). User text
// never becomes FTS5 syntax; a stream refused before output falls back to a whole answer
// (the dialect asks for it: no fallback_to_non_stream on the target); a changed file is indexed
// again after SIGHUP.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { completionFor } from './lib/fake-upstream.mjs';
import { startScriptedServer } from './lib/scripted-server.mjs';
import { openStream } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { assertErrorBody, assertStreamHeaders } from './lib/checks.mjs';
import { UPSTREAM_KEY } from './lib/sluice.mjs';
import { useSluices, dialectConfig, uid, echoed, postJSON, logLine, assertUsage, assertJSON, lastUser, pollUntil } from './lib/dialects.mjs';

const FILES = {
  'install.md': '# Installing sluice\n\nRun make run to build the gateway and start it on port 8080.\n\n'
    + 'The embedded default answers every model with the mock provider.\n',
  'sub/riego.md': '# Riego de tomates\n\nLos tomates necesitan riego profundo dos veces por semana. '
    + 'Si se riegan demasiado, las raíces se pudren.\n',
  'penguins.txt': 'Penguins live in Antarctica and eat krill and small fish.\n',
  'ignored.json': '{"penguins": "not indexed: not .md or .txt"}\n',
  '.hidden.md': '# Hidden\n\npenguins hidden file\n',
};

/* A corpus directory of its own for each sluice (the reindex test changes its files). */
function corpus(db) {
  const dir = `${db}.corpus`;
  for (const [name, text] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/* An OpenAI-compatible upstream that refuses every streaming call (500) and answers whole. */
let refuser;
after(async () => { await refuser?.close(); });
async function startRefuser() {
  return startScriptedServer((rec) => {
    const json = (st, obj) => {
      const text = JSON.stringify(obj);
      return [{ kind: 'head', status: st, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
        { kind: 'write', data: text }, { kind: 'end' }];
    };
    if (rec.body?.stream === true) return json(500, { error: { message: 'streaming is broken here', type: 'server_error', param: null, code: null } });
    return json(200, completionFor(rec.body));
  });
}

const rag = (db, extra) => ({ rag: { corpus: corpus(db), auth: 'none', ...extra } });
const ctx = useSluices({
  echo: (up, db) => dialectConfig(up, db, { dialects: { ...rag(db, { model: 'echo' }), chat: { model: 'mock-chat', auth: 'none' } } }),
  mock: (up, db) => dialectConfig(up, db, { dialects: rag(db, { model: 'mock-rag', cache_ttl: '1m' }) }),
  fail: (up, db) => dialectConfig(up, db, { dialects: rag(db, { model: 'status-500' }) }),
  reidx: (up, db) => dialectConfig(up, db, { dialects: rag(db, { model: 'echo', top_k: 2 }) }),
  ns: async (up, db) => {
    refuser = await startRefuser();
    return dialectConfig(up, db, {
      dialects: rag(db, { model: 'ns-rag' }),
      providers: { refuser: { type: 'openai', base_url: `http://127.0.0.1:${refuser.port}/v1`, api_key: UPSTREAM_KEY, breaker: { failures: 0 } } },
      // No fallback_to_non_stream on the target: the rag dialect asks for it itself.
      models: { 'ns-rag': [{ provider: 'refuser' }] },
    });
  },
});

const JSON_PATH = '/api/chat';
const STREAM_PATH = '/api/chat/stream';
const PHASES = ['cache', 'retrieval', 'rerank', 'generation'];
const ask = (sl, body, headers = {}) => postJSON(sl, JSON_PATH, body, headers);
const stream = (sl, body, headers = {}) => openStream(`${sl.url}${STREAM_PATH}`, body, { headers }).finished(10000);

function assertTimings(t, label = 'timings') {
  assert.deepEqual(Object.keys(t).sort(), ['cache_ms', 'generation_ms', 'rerank_ms', 'retrieval_ms', 'total_ms'], label);
  for (const [k, v] of Object.entries(t)) assert.ok(typeof v === 'number' && v >= 0, `${label}.${k}: ${v}`);
  assert.ok(t.total_ms >= t.generation_ms, `${label}: total ${t.total_ms} < generation ${t.generation_ms}`);
}

function assertSources(sources, label = 'sources') {
  assert.ok(Array.isArray(sources), `${label}: ${JSON.stringify(sources)}`);
  for (const s of sources) {
    assert.deepEqual(Object.keys(s).sort(), ['id', 'path', 'score', 'snippet', 'title'], `${label}: ${JSON.stringify(s)}`);
    assert.equal(typeof s.id, 'number');
    assert.equal(typeof s.score, 'number');
    assert.ok(s.score > 0 && s.score <= 1, `score ${s.score}`);
    assert.equal(typeof s.snippet, 'string');
  }
  for (let i = 1; i < sources.length; i++) assert.ok(sources[i - 1].score >= sources[i].score, `${label}: ranked best first`);
  return sources;
}

/* Every event of a rag SSE answer, checked at the byte level: each one is exactly
 * `data: <compact JSON>\n\n`, nothing else in between (keepalive comments aside). */
function ragEvents(s, label = 'rag stream') {
  assert.equal(s.status, 200, `${label}: ${s.status} ${s.text().slice(0, 300)}`);
  assertStreamHeaders(s.headers);
  const body = s.body().replace(/^(: keepalive\n\n)+/g, '');
  const frames = body.split('\n\n');
  assert.equal(frames.pop(), '', `${label}: the body must end with a blank line: ${JSON.stringify(body.slice(-80))}`);
  return frames.filter((f) => f !== ': keepalive').map((f) => {
    assert.match(f, /^data: \{"type":"(phase|sources|chunk|end|error)"/, `${label}: frame ${JSON.stringify(f.slice(0, 120))}`);
    return JSON.parse(f.slice(6));
  });
}

describe('rag dialect: POST /api/chat (JSON)', { timeout: 60_000 }, () => {
  test('answers {answer, sources, timings, streaming, usage}; the right passage ranks first', async () => {
    const j = assertJSON(await ask(ctx.sl.mock, { question: `How do I install the gateway with make? ${uid('q')}` }), 200);
    assert.equal(typeof j.answer, 'string');
    assert.ok(j.answer.length > 0);
    assertSources(j.sources);
    assert.equal(j.sources[0].path, 'install.md');
    assert.equal(j.sources[0].title, 'Installing sluice');
    assertTimings(j.timings);
    assert.ok(j.timings.generation_ms > 0, 'the mock takes time to answer');
    assert.equal(j.streaming, false);
    assertUsage(j.usage);
    assert.ok(!j.sources.some((s) => s.path.includes('hidden') || s.path.endsWith('.json')), 'hidden and non-text files are not indexed');
  });

  test('the retrieved passages reach the upstream in the prompt, with the question', async () => {
    const q = 'What do penguins eat?';
    const j = assertJSON(await ask(ctx.sl.echo, { question: q }), 200);
    const seen = echoed(j.answer);
    assert.equal(seen.body.model, 'echo');
    assert.equal(seen.body.messages[0].role, 'system');
    const user = lastUser(seen.body);
    assert.match(user, /^Passages:\n\n\[1\] penguins \(penguins\.txt\)\nPenguins live in Antarctica and eat krill and small fish\./);
    assert.ok(user.endsWith(`Question: ${q}`), user);
    assert.equal(j.sources[0].path, 'penguins.txt');
  });

  test('"message" and "query" are accepted as the question; Spanish with accents finds its passage', async () => {
    const a = assertJSON(await ask(ctx.sl.echo, { message: '¿Cómo RIEGO los tomates?' }), 200);
    assert.equal(a.sources[0].path, 'sub/riego.md');
    assert.equal(a.sources[0].title, 'Riego de tomates');
    const b = assertJSON(await ask(ctx.sl.echo, { query: 'cuando se riegan los tomates' }), 200);
    assert.equal(b.sources[0].path, 'sub/riego.md');
  });

  test('FTS5 syntax in a question is searched as words, never an error', async () => {
    for (const q of ['"penguins* NEAR( krill -x:y', 'krill AND OR NOT "', 'title:penguins ^krill {a} (b', '"*:-(', '***', 'NEAR(']) {
      const j = assertJSON(await ask(ctx.sl.echo, { question: q }), 200, JSON.stringify(q));
      assertSources(j.sources, q);
      if (/krill|penguins/.test(q)) assert.equal(j.sources[0].path, 'penguins.txt', q);
      else assert.equal(j.sources.length, 0, q);
    }
  });

  test('no match: answered with no sources, and the prompt says so', async () => {
    const j = assertJSON(await ask(ctx.sl.echo, { question: 'xylophone zebra quartet' }), 200);
    assert.deepEqual(j.sources, []);
    const user = lastUser(echoed(j.answer).body);
    assert.match(user, /^No passage of the documents matches this question/);
    assert.ok(user.endsWith('Question: xylophone zebra quartet'));
  });

  test('top_k limits the sources', async () => {
    const j = assertJSON(await ask(ctx.sl.echo, { question: 'penguins tomates gateway', top_k: 1 }), 200);
    assert.equal(j.sources.length, 1);
    const all = assertJSON(await ask(ctx.sl.echo, { question: 'penguins tomates gateway' }), 200);
    assert.equal(all.sources.length, 3);
  });

  test('bad JSON, a missing question, a bad top_k: 400 with an OpenAI-shaped error', async () => {
    const bad = await request(ctx.sl.echo.url, { method: 'POST', path: JSON_PATH, body: '{"question": ', headers: { 'content-type': 'application/json' } });
    assert.match(assertErrorBody(bad, 400, { type: 'invalid_request_error' }).message, /invalid JSON/);
    assertErrorBody(await ask(ctx.sl.echo, { prompt: 'wrong field' }), 400, { type: 'invalid_request_error' });
    assertErrorBody(await ask(ctx.sl.echo, { question: '' }), 400);
    assertErrorBody(await ask(ctx.sl.echo, { question: 42 }), 400);
    assertErrorBody(await ask(ctx.sl.echo, { question: 'penguins', top_k: 0 }), 400);
    assertErrorBody(await ask(ctx.sl.echo, [1, 2]), 400);
    const s = await stream(ctx.sl.echo, '{oops');
    assert.equal(s.status, 400);
    assert.equal(JSON.parse(s.text()).error.type, 'invalid_request_error');
  });

  test('seed 000\'s /api/chat/ (trailing slash) is still the chat dialect beside it', async () => {
    const chat = assertJSON(await ask(ctx.sl.echo, { message: 'hi' }, {}), 200);
    assert.ok('sources' in chat, 'no slash: rag');
    const r = await postJSON(ctx.sl.echo, '/api/chat/', { message: 'hi' });
    const j = assertJSON(r, 200);
    assert.equal(typeof j.response, 'string');
    assert.equal(typeof j.session_id, 'string');
    assert.ok(!('sources' in j));
  });

  test('an upstream failure: the upstream\'s status and an OpenAI error body', async () => {
    assertErrorBody(await ask(ctx.sl.fail, { question: 'penguins' }), 500);
  });

  test('the access log says dialect rag, model and tokens', async () => {
    const rid = uid('rid');
    const j = assertJSON(await ask(ctx.sl.echo, { question: 'krill' }, { 'x-request-id': rid }), 200);
    const l = await logLine(ctx.sl.echo, rid);
    assert.equal(l.dialect, 'rag');
    assert.equal(l.path, JSON_PATH);
    assert.equal(l.model, 'echo');
    assert.equal(l.prompt_tokens, j.usage.prompt_tokens);
  });

  test('cache_ttl: the same question again is answered from the cache, without the upstream', async () => {
    const q = `Where do penguins live? ${uid('c')}`;
    const first = assertJSON(await ask(ctx.sl.mock, { question: q }), 200);
    assert.ok(!first.cached);
    const rid = uid('rid');
    const again = await pollUntil(async () => assertJSON(await ask(ctx.sl.mock, { question: `  ${q.toUpperCase()} ` }, { 'x-request-id': rid }), 200),
      { until: (j) => j.cached === true, timeoutMs: 3000, what: 'a cached answer', returnLast: true });
    assert.equal(again.cached, true);
    assert.equal(again.answer, first.answer);
    assert.deepEqual(again.sources, first.sources);
    assert.equal(again.timings.generation_ms, 0);
    const s = ragEvents(await stream(ctx.sl.mock, { question: q }));
    assert.deepEqual(s.map((e) => e.type), ['phase', 'sources', 'chunk', 'end']);
    assert.equal(s[3].answer, first.answer);
    assert.equal(s[3].cached, true);
  });
});

describe('rag dialect: POST /api/chat/stream (SSE)', { timeout: 60_000 }, () => {
  test('phases cache, retrieval, rerank; sources; chunks; phase generation; end with the answer', async () => {
    const evs = ragEvents(await stream(ctx.sl.mock, { question: `install the gateway ${uid('s')}` }));
    const types = evs.map((e) => (e.type === 'phase' ? `phase:${e.phase}` : e.type));
    assert.deepEqual(types.slice(0, 4), ['phase:cache', 'phase:retrieval', 'phase:rerank', 'sources']);
    assert.deepEqual(types.slice(-2), ['phase:generation', 'end']);
    const chunks = evs.slice(4, -2);
    assert.equal(chunks.length, 20, 'the mock sends 20 tokens: 20 chunk events');
    assert.ok(chunks.every((c) => c.type === 'chunk' && typeof c.content === 'string' && Object.keys(c).length === 2));
    for (const p of evs.filter((e) => e.type === 'phase')) {
      assert.deepEqual(Object.keys(p), ['type', 'phase', 'ms']);
      assert.ok(PHASES.includes(p.phase) && p.ms >= 0);
    }
    assertSources(evs[3].sources);
    assert.equal(evs[3].sources[0].path, 'install.md');
    const end = evs.at(-1);
    assert.equal(end.answer, chunks.map((c) => c.content).join(''));
    assertTimings(end.timings);
    assert.equal(end.timings.generation_ms, evs.at(-2).ms);
    assertUsage(end.usage);
    assert.equal(end.streaming, true);
  });

  test('a question with FTS5 syntax streams normally', async () => {
    const evs = ragEvents(await stream(ctx.sl.echo, { question: '"krill* NEAR( -penguins: ' }));
    assert.equal(evs.at(-1).type, 'end');
    assert.equal(evs.find((e) => e.type === 'sources').sources[0].path, 'penguins.txt');
  });

  test('streaming refused before any output: retried whole, the SSE client still gets its answer', async () => {
    const rid = uid('ns');
    const evs = ragEvents(await stream(ctx.sl.ns, { question: 'penguins krill' }, { 'x-request-id': rid }));
    const calls = refuser.requests.filter((r) => r.headers['x-request-id'] === rid);
    assert.deepEqual(calls.map((r) => r.body?.stream === true), [true, false], 'a streaming call, then a whole one');
    assert.equal(evs.filter((e) => e.type === 'error').length, 0, JSON.stringify(evs));
    const end = evs.at(-1);
    assert.equal(end.type, 'end');
    assert.equal(end.answer, completionFor(calls[1].body).choices[0].message.content);
    assert.equal(end.answer, evs.filter((e) => e.type === 'chunk').map((c) => c.content).join(''));
    assert.equal(evs.find((e) => e.type === 'sources').sources[0].path, 'penguins.txt');
  });

  test('an upstream failure: an error event last, and no end', async () => {
    const evs = ragEvents(await stream(ctx.sl.fail, { question: 'penguins' }));
    assert.deepEqual(evs.slice(0, 4).map((e) => e.type), ['phase', 'phase', 'phase', 'sources']);
    assert.equal(evs.filter((e) => e.type === 'end').length, 0);
    const err = evs.at(-1);
    assert.equal(err.type, 'error');
    assert.equal(typeof err.error, 'string');
    assert.ok(err.error.length > 0);
  });
});

describe('rag dialect: the corpus index', { timeout: 60_000 }, () => {
  test('a changed file is indexed again after SIGHUP', async () => {
    const sl = ctx.sl.reidx;
    const before = assertJSON(await ask(sl, { question: 'walrus' }), 200);
    assert.equal(before.sources.length, 0);
    const dir = fs.readdirSync(ctx.dir).find((n) => n.startsWith('reidx.db.corpus'));
    fs.writeFileSync(path.join(ctx.dir, dir, 'penguins.txt'), 'Penguins and the walrus share the ice.\n');
    fs.writeFileSync(path.join(ctx.dir, dir, 'walrus.md'), '# Walrus\n\nA walrus has tusks.\n');
    fs.rmSync(path.join(ctx.dir, dir, 'sub'), { recursive: true });
    process.kill(sl.pid, 'SIGHUP');
    const after = await pollUntil(async () => assertJSON(await ask(sl, { question: 'walrus tusks' }), 200),
      { until: (j) => j.sources.length === 2, timeoutMs: 5000, what: 'the new text in the index', returnLast: true });
    assert.deepEqual(after.sources.map((s) => s.path), ['walrus.md', 'penguins.txt']);
    const gone = assertJSON(await ask(sl, { question: 'tomates riego' }), 200);
    assert.equal(gone.sources.length, 0, 'a removed file leaves the index');
    assert.match(lastUser(echoed(after.answer).body), /\[2\] penguins \(penguins\.txt\)\nPenguins and the walrus share the ice\./);
  });
});

ctx.testCleanExit();
