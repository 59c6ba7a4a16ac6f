// A configured key's `models` globs (auth.keys[].models) travel with each request it
// authenticates: through the OpenAI door a matching model passes and another is a 403
// model_not_allowed with nothing sent upstream; a key without the list may use every model. A
// MonoAI WebSocket keeps the key's list for the whole session: prompt after prompt on one socket
// the same verdict, allowed and refused alike (each prompt's exchange owns its own copy).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertErrorBody } from './lib/checks.mjs';
import { useSluices, dialectConfig, openWS } from './lib/dialects.mjs';

const NARROW = 'sk-narrow-models-1111';
const WIDE = 'sk-wide-models-2222';
const ctx = useSluices({
  main: (up, db) => dialectConfig(up, db, {
    auth: { keys: [{ name: 'narrow', key: NARROW, models: 'mock-a*,mock-mono' }, { name: 'wide', key: WIDE }] },
    dialects: { monoai: { model: 'mock-mono', auth: 'key', agents: { other: { model: 'mock-zzz' } } } },
  }),
}, { secrets: [NARROW, WIDE] });

async function post(key, model) {
  const r = await fetch(`${ctx.sl.main.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, text, json, headers: Object.fromEntries(r.headers) };
}

describe('a key\'s model list', { timeout: 60_000 }, () => {
  test('OpenAI door: mock-a1 passes, mock-b is 403 model_not_allowed; the key without a list passes both', async () => {
    const n = ctx.up.count();
    const ok = await post(NARROW, 'mock-a1');
    assert.equal(ok.status, 200, ok.text.slice(0, 300));
    assertErrorBody(await post(NARROW, 'mock-b'), 403, { code: 'model_not_allowed' });
    for (const m of ['mock-a1', 'mock-b']) assert.equal((await post(WIDE, m)).status, 200, m);
    assert.equal(ctx.up.count(), n, 'mock models only: nothing reached the upstream');
  });

  test('MonoAI WebSocket: the session keeps the list across prompts', async () => {
    const url = (p) => `ws://127.0.0.1:${ctx.sl.main.port}${p}`;
    const allowed = await openWS(url('/model/ws'), { headers: { authorization: `Bearer ${NARROW}` } });
    try {
      for (let i = 0; i < 3; i++) {
        const x = await allowed.exchange({ prompt: `allowed ${i}` });
        assert.equal(x.error, null, `prompt ${i}: ${JSON.stringify(x.error)}`);
        assert.ok(x.complete && x.text.length > 0, `prompt ${i} answered`);
      }
    } finally {
      await allowed.close();
    }
    const refused = await openWS(url('/agent/other/ws'), { headers: { authorization: `Bearer ${NARROW}` } });
    try {
      for (let i = 0; i < 3; i++) {
        const x = await refused.exchange({ prompt: `refused ${i}` });
        assert.ok(x.error, `prompt ${i}: refused, got ${JSON.stringify(x.msgs).slice(0, 200)}`);
        assert.match(JSON.stringify(x.error), /may not use the model/, `prompt ${i}`);
      }
    } finally {
      await refused.close();
    }
  });

  ctx.testCleanExit();
});
