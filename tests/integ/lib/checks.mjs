// Assertions shared by the test files: the OpenAI error shape, SSE response headers, and the
// "honest ending" of a stream that failed after it started.
import assert from 'node:assert/strict';

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
