// Assertions shared by the test files: the OpenAI error shape, SSE response headers, the shape
// of an OpenAI chat.completion.chunk stream, and the "honest ending" of a stream that failed
// after it started.
import assert from 'node:assert/strict';
import { parseSSE } from './sse.mjs';

/* An HTTP error answer: status, JSON content type, {"error":{message,type,param,code}}. */
export function assertErrorBody(r, status, { type, code } = {}) {
  const what = `${r.status} ${JSON.stringify(r.headers?.['content-type'])} ${String(r.text ?? '').slice(0, 300)}`;
  assert.equal(r.status, status, `expected HTTP ${status}, got ${what}`);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/i, `error content-type: ${what}`);
  assert.ok(r.json && typeof r.json.error === 'object' && r.json.error !== null, `no {"error":{...}} object: ${what}`);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string', `error.message: ${what}`);
  assert.ok(e.message.length > 0, 'error.message is empty');
  for (const k of ['type', 'param', 'code']) assert.ok(k in e, `error.${k} missing: ${what}`);
  assert.equal(typeof e.type, 'string', `error.type: ${what}`);
  if (type !== undefined) assert.equal(e.type, type, `error.type: ${what}`);
  if (code !== undefined) assert.equal(e.code, code, `error.code: ${what}`);
  return e;
}

/* The headers every SSE answer must carry (DESIGN §3.1). */
export function assertStreamHeaders(headers) {
  assert.match(headers['content-type'] ?? '', /^text\/event-stream/i, 'content-type');
  assert.match(headers['cache-control'] ?? '', /no-cache/i, 'cache-control');
  assert.equal(headers['x-accel-buffering'], 'no', 'x-accel-buffering');
  assert.equal(headers['content-length'], undefined, 'an SSE answer has no content-length');
  assert.match(headers['transfer-encoding'] ?? '', /chunked/i, 'transfer-encoding chunked');
}

/*
 * A stream that failed after it started: it ends with one `data: {"error":{...}}` event (message,
 * type, code), and carries neither `data: [DONE]` nor finish_reason "stop".
 */
export function assertErrorEnding(s, label = 'stream') {
  const text = s.text();
  assert.ok(!text.includes('data: [DONE]'), `${label}: [DONE] after a failure:\n${text.slice(-500)}`);
  const datas = s.events.filter((e) => e.type === 'data');
  assert.ok(datas.length > 0, `${label}: no data events at all`);
  const last = datas.at(-1);
  assert.ok(last.json && typeof last.json.error === 'object' && last.json.error !== null,
    `${label}: the last event is not an error event: ${last.data}`);
  const e = last.json.error;
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0, 'error.message is empty');
  assert.equal(typeof e.type, 'string', 'error.type');
  assert.ok('code' in e, 'error.code missing');
  for (const d of datas) {
    assert.ok(!(d.json?.choices ?? []).some((c) => c.finish_reason === 'stop'), `${label}: finish_reason stop after a failure`);
  }
  assert.equal(datas.filter((d) => d.json?.error).length, 1, `${label}: more than one error event`);
  return e;
}

/* Body of a stream with leading ": keepalive" comments removed, and how many there were. */
export function stripKeepalives(text) {
  const m = /^(?::[^\n]*\n\n)*/.exec(text);
  const head = m[0];
  return { count: head ? head.split('\n\n').length - 1 : 0, rest: text.slice(head.length) };
}

const pickUsage = (u) => u && { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens };
const isFinish = (r) => r !== null && r !== undefined;

/*
 * Parsed chat.completion.chunk objects (from an SSE body or an SDK's iterator) as a strict
 * client checks them: each has a non-empty id (one for the whole stream), object
 * "chat.completion.chunk", an integer created, a string model (=== `model` when given) and a
 * choices array; a choice chunk holds exactly one choice with index 0, a delta object and a
 * finish_reason key, and no usage; the first delta carries role "assistant"; exactly one
 * finish_reason, on the last choice chunk, === `finish`; `choices: []` only on the usage
 * chunk, which comes last, and only when `usage` is expected (true: any consistent usage; an
 * object: these prompt/completion/total numbers; false: none may come); tool-call deltas have
 * an index, the first of each call its id, type and name, the later ones neither, and indexes
 * count from 0. Returns { chunks, text (the content deltas joined), toolCalls [{id, name,
 * arguments}], usage (or null) }.
 */
export function assertChunks(chunks, { finish = 'stop', usage = false, model, label = 'chunk stream' } = {}) {
  const at = (c) => `${label}: ${JSON.stringify(c)}`;
  assert.ok(Array.isArray(chunks) && chunks.length > 0, `${label}: no chunks`);
  for (const c of chunks) {
    assert.ok(c && typeof c === 'object' && !Array.isArray(c), `${label}: not a JSON object: ${JSON.stringify(c)}`);
    assert.ok(!c.error, `${label}: error chunk ${JSON.stringify(c)}`);
    assert.equal(c.object, 'chat.completion.chunk', `object: ${at(c)}`);
    assert.ok(typeof c.id === 'string' && c.id.length > 0, `id: ${at(c)}`);
    assert.ok(Number.isInteger(c.created), `created: ${at(c)}`);
    assert.equal(typeof c.model, 'string', `model: ${at(c)}`);
    if (model !== undefined) assert.equal(c.model, model, `model: ${at(c)}`);
    assert.ok(Array.isArray(c.choices), `choices must be an array (empty for the usage chunk): ${at(c)}`);
  }
  const ids = [...new Set(chunks.map((c) => c.id))];
  assert.equal(ids.length, 1, `${label}: one id for the whole stream, got ${JSON.stringify(ids)}`);

  const empty = chunks.filter((c) => c.choices.length === 0);
  let gotUsage = null;
  if (usage) {
    assert.equal(empty.length, 1, `${label}: expected one usage chunk (choices: []), got ${empty.length}`);
    assert.equal(chunks.at(-1), empty[0], `${label}: the usage chunk comes last, before [DONE]`);
    gotUsage = empty[0].usage;
    assert.ok(gotUsage && typeof gotUsage === 'object', `usage chunk without usage: ${at(empty[0])}`);
    for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
      assert.ok(Number.isInteger(gotUsage[k]) && gotUsage[k] >= 0, `usage.${k}: ${at(empty[0])}`);
    }
    assert.equal(gotUsage.total_tokens, gotUsage.prompt_tokens + gotUsage.completion_tokens, `usage total != prompt + completion: ${at(empty[0])}`);
    if (typeof usage === 'object') assert.deepEqual(pickUsage(gotUsage), pickUsage(usage), `${label}: usage`);
  } else {
    assert.equal(empty.length, 0, `${label}: a chunk with choices: [] nobody asked for: ${JSON.stringify(empty[0])}`);
  }

  const withChoices = chunks.filter((c) => c.choices.length > 0);
  assert.ok(withChoices.length > 0, `${label}: no chunk with a choice`);
  for (const c of withChoices) {
    assert.equal(c.choices.length, 1, `one choice per chunk: ${at(c)}`);
    const ch = c.choices[0];
    assert.equal(ch.index, 0, `every choice carries its index: ${at(c)}`);
    assert.ok(ch.delta && typeof ch.delta === 'object', `delta: ${at(c)}`);
    assert.ok('finish_reason' in ch, `finish_reason key (null until the end): ${at(c)}`);
    assert.ok(!c.usage, `usage on a choice chunk: ${at(c)}`);
  }
  assert.equal(withChoices[0].choices[0].delta.role, 'assistant', `${label}: the first delta carries role "assistant": ${at(withChoices[0])}`);
  const finishes = withChoices.filter((c) => isFinish(c.choices[0].finish_reason));
  assert.equal(finishes.length, 1, `${label}: exactly one finish_reason, got ${finishes.length}`);
  assert.equal(finishes[0], withChoices.at(-1), `${label}: finish_reason is on the last choice chunk`);
  assert.equal(finishes[0].choices[0].finish_reason, finish, `${label}: finish_reason`);

  const text = withChoices.map((c) => c.choices[0].delta.content ?? '').join('');
  const toolCalls = [];
  for (const c of withChoices) {
    for (const tc of c.choices[0].delta.tool_calls ?? []) {
      assert.ok(Number.isInteger(tc.index), `tool call delta without index: ${at(c)}`);
      if (!toolCalls[tc.index]) {
        assert.equal(typeof tc.id, 'string', `the first delta of tool call ${tc.index} has its id: ${at(c)}`);
        assert.equal(tc.type, 'function', `tool call type: ${at(c)}`);
        assert.equal(typeof tc.function?.name, 'string', `the first delta of tool call ${tc.index} has its name: ${at(c)}`);
        toolCalls[tc.index] = { id: tc.id, name: tc.function.name, arguments: tc.function.arguments ?? '' };
      } else {
        assert.equal(tc.id ?? tc.function?.name ?? undefined, undefined, `a later delta of tool call ${tc.index} repeats id/name: ${at(c)}`);
        toolCalls[tc.index].arguments += tc.function?.arguments ?? '';
      }
    }
  }
  assert.equal(toolCalls.length, toolCalls.filter(Boolean).length, `${label}: tool call indexes must count from 0 without holes: ${JSON.stringify(toolCalls)}`);
  return { chunks, text, toolCalls, usage: gotUsage };
}

/*
 * An OpenAI streaming answer as a strict client reads it: `s` is an openStream() result (then
 * also: status 200, the SSE headers unless headers: false, a clean end) or a whole SSE body
 * (string). Its events: `data:` only, no `event:` names, every one JSON but the last, which is
 * `[DONE]` (once); comments only ": keepalive". Then assertChunks (options passed on).
 */
export function assertChunkStream(s, { headers = true, ...opts } = {}) {
  const label = opts.label ?? 'chunk stream';
  let events;
  let text;
  if (typeof s === 'string') {
    text = s;
    events = parseSSE(s);
  } else {
    text = s.text();
    assert.equal(s.status, 200, `${label}: status ${s.status}: ${text.slice(0, 300)}`);
    if (headers) assertStreamHeaders(s.headers);
    assert.equal(s.ended, true, `${label}: the response did not end cleanly`);
    events = s.events;
  }
  const comments = events.filter((e) => e.type === 'comment');
  assert.ok(comments.every((c) => c.data === 'keepalive'), `${label}: comments other than ": keepalive": ${JSON.stringify(comments.map((c) => c.data))}`);
  const datas = events.filter((e) => e.type === 'data');
  assert.ok(datas.length > 0, `${label}: no data events: ${text.slice(0, 300)}`);
  assert.equal(datas.at(-1).data, '[DONE]', `${label}: the last event must be data: [DONE]:\n${text.slice(-300)}`);
  assert.equal(datas.filter((d) => d.data === '[DONE]').length, 1, `${label}: one [DONE]`);
  assert.ok(datas.every((d) => d.event === null), `${label}: an OpenAI stream has no \`event:\` names: ${text.slice(0, 300)}`);
  const chunks = datas.slice(0, -1).map((d) => {
    let json = d.json;
    if (json === undefined) { try { json = JSON.parse(d.data); } catch { json = undefined; } }
    assert.ok(json && typeof json === 'object', `${label}: not a JSON chunk: ${d.data}`);
    return json;
  });
  return assertChunks(chunks, { ...opts, label });
}
