// The built-in upstream HTTP/1.1 client (src/upstream/h1.c, used for plain http:// upstreams on
// numeric addresses): sequential requests reuse one upstream connection, a pooled connection
// the upstream closed is dropped or retried transparently, and a client that leaves closes the
// upstream socket at once. Run with SLUICE_UPSTREAM_CLIENT=curl the same behaviour holds.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCountingUpstream } from './lib/counting-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { pollUntil } from './lib/poll.mjs';
import { assertChunkStream } from './lib/checks.mjs';
import { startSluice, stopAndCheck, baseConfig, chat } from './lib/sluice.mjs';

let up;
let sl;
before(async () => {
  up = await startCountingUpstream();
  sl = await startSluice({ config: baseConfig({ upstreamPort: up.port, workers: 1 }) });
});
after(async () => {
  if (sl && !sl.exit) { sl.proc.kill('SIGKILL'); await sl.exited; }
  await up?.close();
});

const post = (body) => fetch(`${sl.url}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
});

describe('upstream connections', { timeout: 60_000 }, () => {
  test('20 sequential requests, streamed or not, go over one upstream connection', async () => {
    const c0 = up.st.connections;
    for (let i = 0; i < 20; i++) {
      const r = await post(chat(i % 2 ? 'stream' : 'ok', `seq-${i}`, { stream: i % 2 === 1 }));
      assert.equal(r.status, 200);
      const text = await r.text();
      if (i % 2) assert.equal(assertChunkStream(text, { label: `stream ${i}` }).text, 'x0 x1 x2 x3 x4 ');
      else assert.equal(JSON.parse(text).choices[0].message.content, 'hi');
    }
    assert.equal(up.st.connections - c0, 1, `${up.st.connections - c0} upstream connections for 20 requests`);
  });

  test('a pooled connection the upstream closed is dropped; the next request succeeds', async () => {
    assert.equal((await post(chat('ok', 'before-drop'))).status, 200);
    const closed0 = up.st.closed;
    up.dropAll();
    await pollUntil(() => up.st.closed > closed0, { timeoutMs: 2000, intervalMs: 10, what: 'the upstream to close its sockets' });
    const r = await post(chat('ok', 'after-drop'));
    assert.equal(r.status, 200, await r.text());
  });

  test('a reused connection that fails before answering is retried on a fresh one', async () => {
    assert.equal((await post(chat('ok', 'warm'))).status, 200);
    const c0 = up.st.connections;
    const r = await post(chat('drop-reused', 'retried'));
    assert.equal(r.status, 200, await r.text());
    assert.equal(up.st.connections - c0, 1, 'one fresh connection for the retry');
  });

  test('a client leaving mid-stream closes the upstream socket at once', async () => {
    up.st.holdClosedAt = null;
    const s = openStream(`${sl.url}/v1/chat/completions`, chat('hold', 'leave', { stream: true }));
    await s.waitFor((x) => x.status === 200 && x.dataEvents().length >= 1, 3000, 'the first chunk');
    s.destroy();
    await pollUntil(() => up.st.holdClosedAt !== null, { timeoutMs: 1500, intervalMs: 10, what: 'the upstream socket to close' });
    const ms = up.st.holdClosedAt - s.destroyedAt;
    assert.ok(ms < 500, `upstream closed ${ms.toFixed(0)} ms after the client left`);
    // and sluice keeps serving on a pooled or fresh connection
    assert.equal((await post(chat('ok', 'after-leave'))).status, 200);
  });
});

test('SIGTERM: sluice exits 0, no sanitizer report', async () => {
  await stopAndCheck(sl);
});
