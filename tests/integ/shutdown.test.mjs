// SIGTERM: sluice stops accepting, lets in-flight streams finish (bounded by timeouts.drain),
// and exits 0 (under ASan: with nothing leaked). Each test starts its own sluice.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { startFakeUpstream, expectedClientStream } from './lib/fake-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { RawClient, formatRequest, connectRefused } from './lib/raw-http.mjs';
import { startSluice, stopAndCheck, baseConfig, chat } from './lib/sluice.mjs';
import { assertErrorEnding } from './lib/checks.mjs';
import { pollUntil } from './lib/poll.mjs';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let up;
const started = [];
before(async () => { up = await startFakeUpstream(); });
after(async () => {
  for (const sl of started) if (!sl.exit) { sl.proc.kill('SIGKILL'); await sl.exited; }
  await up?.close();
});

async function start(timeouts = {}) {
  const sl = await startSluice({ config: baseConfig({ upstreamPort: up.port, timeouts }) });
  started.push(sl);
  return sl;
}

/* Polls (bounded) until a connect to port is refused. */
async function refusedWithin(port, ms) {
  const refused = await pollUntil(() => connectRefused(port, 300), { timeoutMs: ms, intervalMs: 25, what: `connections to ${port} refused`, returnLast: true });
  return refused ? performance.now() : null;
}

/* Waits (bounded) for the process to exit; resolves with the time it did. */
async function exitedWithin(sl, ms) {
  let timer;
  const r = await Promise.race([sl.exited.then(() => performance.now()), new Promise((res) => { timer = setTimeout(() => res(null), ms); })]);
  clearTimeout(timer);
  return r;
}

describe('SIGTERM', { timeout: 60_000 }, () => {
  test('mid-stream: the stream completes with [DONE], new connections are refused, exit 0', async () => {
    const sl = await start();
    const body = chat('chunks:10:100', 'drain-me', { stream: true });
    const s = openStream(`${sl.url}/v1/chat/completions`, body);
    await s.waitFor((x) => x.events.some((e) => e.json?.choices?.[0]?.delta?.content), 3000, 'the first content chunk');
    sl.proc.kill('SIGTERM');
    const refusedAt = await refusedWithin(sl.port, 1500);
    assert.ok(refusedAt !== null, 'sluice still accepts connections 1.5 s after SIGTERM');
    await s.finished(5000);
    assert.ok(refusedAt < s.closedAt, 'new connections must be refused while the stream is still running');
    assert.equal(s.status, 200);
    assert.equal(s.body(), expectedClientStream(body), 'the in-flight stream must finish intact');
    assert.ok(s.text().endsWith('data: [DONE]\n\n'));
    const exitAt = await exitedWithin(sl, 3000);
    assert.ok(exitAt !== null, 'sluice did not exit within 3 s after its last stream ended');
    await stopAndCheck(sl);
  });

  test('a stream longer than timeouts.drain is cut after drain, without [DONE], exit 0', async () => {
    const sl = await start({ drain: '1s' });
    const tag = 'too-long-to-drain';
    const s = openStream(`${sl.url}/v1/chat/completions`, chat('chunks:100:100', tag, { stream: true }));
    await s.waitFor((x) => x.events.some((e) => e.json?.choices?.[0]?.delta?.content), 3000, 'the first content chunk');
    const termAt = performance.now();
    sl.proc.kill('SIGTERM');
    const exitAt = await exitedWithin(sl, 4000);
    assert.ok(exitAt !== null, 'sluice did not exit within 4 s of SIGTERM (drain 1s)');
    assert.ok(exitAt - termAt >= 800, `exited ${exitAt - termAt} ms after SIGTERM, before drain (1s) was over`);
    await s.finished(2000);
    assert.ok(!s.text().includes('data: [DONE]'), 'a stream cut by shutdown must not end with [DONE]');
    const rec = await up.waitFor((rs) => rs.find((r) => r.body?.messages?.[0]?.content === tag && r.closed), 2000, 'upstream closed');
    assert.equal(rec.closedEarly, true);
    await stopAndCheck(sl);
  });

  test('streams cut at the drain deadline get the dialect\'s error event; the usage rows and the access log say 503, not 499', async () => {
    const db = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-drain-')), 'u.db');
    const cfg = baseConfig({ upstreamPort: up.port, timeouts: { drain: '700ms' } });
    cfg.store = { sqlite: db };
    cfg.dialects = { chat: { model: 'chunks:100:100', auth: 'none' } };
    const sl = await startSluice({ config: cfg });
    started.push(sl);
    const tag = 'cut-at-drain';
    const s = openStream(`${sl.url}/v1/chat/completions`, chat('chunks:100:100', tag, { stream: true }), { headers: { 'x-request-id': 'cut-oai' } });
    const seed = openStream(`${sl.url}/api/chat/stream/`, { message: 'cut-seed' }, { headers: { 'x-request-id': 'cut-seed' } });
    await s.waitFor((x) => x.events.some((e) => e.json?.choices?.[0]?.delta?.content), 3000, 'the first content chunk');
    await seed.waitFor((x) => x.events.some((e) => e.json?.type === 'chunk'), 3000, 'the seed stream\'s first chunk');
    sl.proc.kill('SIGTERM');
    await s.finished(4000);
    await seed.finished(4000);
    assertErrorEnding(s, 'the cut stream');
    const last = s.events.filter((e) => e.type === 'data').at(-1).json;
    assert.equal(last.error.code, 'server_shutting_down');
    const seedLast = seed.events.filter((e) => e.type === 'data').at(-1).json;
    assert.equal(seedLast.type, 'error', `the seed dialect's own error event: ${JSON.stringify(seedLast)}`);
    assert.ok(await exitedWithin(sl, 6000) !== null, 'sluice did not exit after the cut');
    const r = await stopAndCheck(sl);
    assert.equal(r.code, 0);
    const lines = sl.accessLog();
    for (const rid of ['cut-oai', 'cut-seed']) {
      const line = lines.find((l) => l.request_id === rid);
      assert.ok(line, `the access-log line of ${rid}`);
      assert.equal(line.status, 200, 'the HTTP status that went out');
      assert.equal(line.final_status, 503, `${rid}: the exchange's outcome`);
      assert.equal(line.cancelled, false, 'the server cut it, the client did not leave');
    }
    const q = spawnSync('sqlite3', [db, "SELECT request_id, status, cancelled FROM usage WHERE request_id LIKE 'cut-%' ORDER BY request_id"], { encoding: 'utf8', timeout: 5000 });
    assert.equal(q.status, 0, q.stderr);
    assert.equal(q.stdout.trim(), 'cut-oai|503|0\ncut-seed|503|0', 'the usage rows agree with the access log');
  });

  test('an idle keep-alive connection does not hold up the exit', async () => {
    const sl = await start();
    const rc = await RawClient.connect(sl.port);
    await rc.write(formatRequest({ method: 'GET', path: '/v1/models' }));
    assert.equal((await rc.readResponse(3000)).status, 200);
    const termAt = performance.now();
    sl.proc.kill('SIGTERM');
    const exitAt = await exitedWithin(sl, 4000);
    rc.destroy();
    assert.ok(exitAt !== null, 'an idle keep-alive connection kept sluice alive 4 s after SIGTERM');
    assert.ok(exitAt - termAt < 2500, `exit took ${exitAt - termAt} ms`);
    await stopAndCheck(sl);
  });

  test('with nothing in flight: exit 0 at once', async () => {
    const sl = await start();
    const termAt = performance.now();
    const r = await stopAndCheck(sl);
    assert.ok(performance.now() - termAt < 2000, 'exit took more than 2 s');
    assert.equal(r.code, 0);
  });
});
