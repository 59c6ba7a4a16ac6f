// A request the router cannot route (unknown path: 404; known path, other method: 405 with an
// Allow line) is answered in the error shape of the dialect mounted where the path falls: the
// seed dialects under their prefixes in their framework's own words (Django's {"error"},
// FastAPI's {"detail"}, NestJS's {"statusCode","message","error"}), the OpenAI dialect and
// paths under no dialect's prefix in OpenAI's {"error":{...}}.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from './lib/raw-http.mjs';
import { useSluice, baseConfig } from './lib/sluice.mjs';
import { assertErrorBody } from './lib/checks.mjs';

const ctx = useSluice(async () => ({
  ...baseConfig({}),
  dialects: {
    chat: { prefix: '/seed000' },
    monoai: { prefix: '/seed002' },
    aichat: { prefix: '/seed003' },
  },
}), { upstream: false });

const call = (method, path) => request(ctx.sl.url, { method, path, ...(method === 'POST' ? { body: {} } : {}) });

function assertJSON(r, status) {
  assert.equal(r.status, status, `${r.status} ${r.text}`);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/i);
  assert.ok(r.json && typeof r.json === 'object', `not JSON: ${r.text}`);
  return r.json;
}

describe('route errors, each in the shape of the door it came through', () => {
  test('seed 000 (Django): {"error"} for 404 and 405', async () => {
    assert.deepEqual(assertJSON(await call('POST', '/seed000/nope'), 404), { error: 'not found' });
    const r = await call('GET', '/seed000/api/chat/');
    assert.deepEqual(assertJSON(r, 405), { error: 'method not allowed' });
    assert.equal(r.headers.allow, 'POST');
  });

  test('seed 002 (FastAPI): {"detail"} worded as FastAPI words it', async () => {
    const nf = assertJSON(await call('GET', '/seed002/nope'), 404);
    assert.equal(nf.detail, 'Not Found');
    const r = await call('GET', '/seed002/model');
    assert.equal(assertJSON(r, 405).detail, 'Method Not Allowed');
    assert.equal(r.headers.allow, 'POST');
  });

  test('seed 003 (NestJS): statusCode, "Cannot GET /path", error', async () => {
    assert.deepEqual(assertJSON(await call('GET', '/seed003/nope'), 404),
      { statusCode: 404, message: 'Cannot GET /seed003/nope', error: 'Not Found' });
    const r = await call('DELETE', '/seed003/api/ai-chat/stream');
    assert.deepEqual(assertJSON(r, 405),
      { statusCode: 405, message: 'Cannot DELETE /seed003/api/ai-chat/stream', error: 'Method Not Allowed' });
    assert.equal(r.headers.allow, 'POST');
  });

  test('OpenAI paths and paths under no prefix: OpenAI error bodies from the error table', async () => {
    assertErrorBody(await call('GET', '/v1/nope'), 404, { type: 'invalid_request_error', code: 'unknown_url' });
    assertErrorBody(await call('GET', '/seed0000/nope'), 404, { code: 'unknown_url' }); // not under /seed000
    const r = await call('GET', '/v1/chat/completions');
    assertErrorBody(r, 405, { type: 'invalid_request_error', code: 'method_not_allowed' });
    assert.equal(r.headers.allow, 'POST');
  });

  test('a routed path still reaches its handler under the prefix', async () => {
    const r = await call('POST', '/seed002/model');
    assert.notEqual(r.status, 404, r.text);
    assert.notEqual(r.status, 405, r.text);
  });

  ctx.testCleanExit();
});
