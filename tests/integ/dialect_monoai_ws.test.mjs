// The monoai dialect over WebSocket (seed 002): /model/ws and /agent/{name}/ws take one
// {"prompt","user_id"?} text message per answer and stream {"type":"chunk"} … {"type":"complete"}
// back, several prompts in sequence on one socket. Errors are {"error"} messages (bad JSON,
// missing prompt, a prompt while one is streaming); an unknown agent also closes with 1008, an
// oversized message with 1009. Ping gets pong, fragments are reassembled, closing mid-stream
// cancels the upstream at once. Clients: the `ws` npm package, and seed 002's own Python example
// (py/monoai_ws_example.py, Debian's python3-websockets).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { usageFor } from './lib/fake-upstream.mjs';
import { request } from './lib/raw-http.mjs';
import { INTEG_DIR } from './lib/sluice.mjs';
import {
  useSluices, dialectConfig, uid, echoed, mockAnswer, openWS, assertNothingUpstream,
  assertUpstreamCancelled, assertUsage, assertJSON, lastUser, pollUntil, upstreamWith,
} from './lib/dialects.mjs';

const AGENT_SYS = 'You are the WebSocket support agent.';
const ctx = useSluices({
  main: (up, db) => dialectConfig(up, db, {
    dialects: {
      monoai: {
        model: 'mock-mono',
        auth: 'none',
        agents: {
          support: { model: 'echo', system_prompt: AGENT_SYS, params: { temperature: 0.2 } },
          mocky: { model: 'mock-agent' },
          paced: { model: 'chunks:20:20' },
          slow: { model: 'chunks:200:20' },
          drop: { model: 'drop-mid:3' },
        },
      },
    },
  }),
});

const wsURL = (p) => `ws://127.0.0.1:${ctx.sl.main.port}${p}`;
let reference;
const answer = async () => (reference ??= await mockAnswer(ctx.sl.main));

/* Runs body with an open socket on p, closing it afterwards whatever happened. */
async function withWS(p, body) {
  const c = await openWS(wsURL(p));
  try {
    return await body(c);
  } finally {
    await c.close();
  }
}

/* A successful exchange: only chunk messages, then one complete whose response is their join. */
function assertComplete(x, label = 'exchange') {
  assert.equal(x.error, null, `${label}: error ${JSON.stringify(x.error)}`);
  assert.ok(x.complete, `${label}: no complete message`);
  for (const m of x.msgs.slice(0, -1)) {
    assert.equal(m?.type, 'chunk', `${label}: only chunks before complete: ${JSON.stringify(m).slice(0, 200)}`);
    assert.equal(typeof m.content, 'string');
  }
  const r = x.complete.result;
  assert.ok(r && typeof r === 'object', `${label}: complete without result`);
  assert.equal(r.response, x.text, `${label}: result.response must be the chunks joined`);
  assertUsage(r.usage, `${label} result.usage`);
  return r;
}

function assertError(x, label) {
  assert.ok(x.error, `${label}: expected an {"error"} message, got ${JSON.stringify(x.msgs).slice(0, 300)}`);
  assert.equal(typeof x.error.error, 'string');
  assert.ok(x.error.error.length > 0, `${label}: empty error`);
  assert.equal(x.complete, null);
}

describe('monoai WebSocket: streaming', { timeout: 60_000 }, () => {
  test('/model/ws: chunk messages, then complete with {response, usage}', async () => {
    await withWS('/model/ws', async (c) => {
      const x = await c.exchange({ prompt: 'Ciao WebSocket' });
      const r = assertComplete(x, '/model/ws');
      assert.equal(x.chunks.length, 20, 'one chunk message per mock token');
      assert.equal(r.response, await answer());
      assert.equal(r.usage.completion_tokens, 20);
    });
  });

  test('three prompts in sequence on one socket each get their whole answer', async () => {
    await withWS('/model/ws', async (c) => {
      for (let i = 0; i < 3; i++) {
        const r = assertComplete(await c.exchange({ prompt: `prompt ${i}`, user_id: 'seq-user' }), `prompt ${i}`);
        assert.equal(r.response, await answer());
      }
      assert.equal(c.closed, null, 'the socket stays open between prompts');
    });
  });

  test('/agent/support/ws: the preset reaches the upstream; complete.result has prompt and iterations', async () => {
    await withWS('/agent/support/ws', async (c) => {
      for (let i = 0; i < 2; i++) {
        const prompt = uid('ws-agent');
        const r = assertComplete(await c.exchange({ prompt }), '/agent/support/ws');
        assert.equal(r.prompt, prompt);
        const seen = echoed(r.response);
        assert.equal(seen.body.model, 'echo');
        assert.deepEqual(seen.body.messages, [{ role: 'system', content: AGENT_SYS }, { role: 'user', content: prompt }]);
        assert.equal(seen.body.temperature, 0.2);
        assert.deepEqual(r.usage, usageFor(seen.body, 1));
        assert.ok(Array.isArray(r.iterations) && r.iterations.length === 1, `iterations: ${JSON.stringify(r.iterations)}`);
        const it = r.iterations[0];
        assert.equal(it.model, 'echo');
        assert.equal(it.provider, 'fake');
        assert.equal(it.finish_reason, 'stop');
        assert.deepEqual(it.usage, r.usage);
        assert.equal(typeof it.ttft_ms, 'number');
      }
    });
  });

  test('an upstream drop mid-stream: the chunks, then {"error"}, and the socket still serves', async () => {
    await withWS('/agent/drop/ws', async (c) => {
      const prompt = uid('ws-drop');
      const x = await c.exchange({ prompt });
      assertError(x, 'dropped upstream');
      assert.deepEqual(x.chunks.map((m) => m.content).filter((t) => t !== ''), [`${prompt}#0 `, `${prompt}#1 `, `${prompt}#2 `]);
    });
  });

  test('a prompt with user_id counts in /rate-limit/stats like an HTTP one', async () => {
    const user = uid('ws-user');
    let usage;
    await withWS('/agent/mocky/ws', async (c) => {
      usage = assertComplete(await c.exchange({ prompt: 'count me', user_id: user })).usage;
    });
    const st = await pollUntil(async () => assertJSON(await request(ctx.sl.main.url, { path: `/rate-limit/stats/${user}` }), 200),
      { until: (s) => s.requests >= 1, timeoutMs: 3000, what: `the usage of ${user}`, returnLast: true });
    assert.equal(st.requests, 1, `stats: ${JSON.stringify(st)}`);
    assert.equal(st.prompt_tokens, usage.prompt_tokens);
    assert.equal(st.completion_tokens, usage.completion_tokens);
  });
});

describe('monoai WebSocket: errors', { timeout: 60_000 }, () => {
  test('bad JSON, a non-object and a missing prompt get {"error"}; the socket stays usable', async () => {
    const before = ctx.up.count();
    await withWS('/agent/support/ws', async (c) => {
      for (const bad of ['{"prompt": "x"', '["x"]', '{"user_id": "u1"}', '{"prompt": null}', 'hello']) {
        const x = await c.exchange(bad);
        assertError(x, `message ${bad}`);
        assert.equal(x.msgs.length, 1, `only the error message for ${bad}`);
      }
      assert.equal(c.closed, null, 'a bad message must not close the socket');
      assert.equal(ctx.up.count(), before, 'a bad message reached the upstream');
      const prompt = uid('after-errors');
      assert.equal(assertComplete(await c.exchange({ prompt })).prompt, prompt);
    });
  });

  test('an unknown agent: {"error"}, then close code 1008; nothing goes upstream', async () => {
    const tag = uid('ws-no-agent');
    const before = ctx.up.count();
    const c = await openWS(wsURL('/agent/nope/ws'));
    try {
      c.send({ prompt: tag }).catch(() => {}); // the server may already be closing
      await c.waitFor((x) => x.closed, 3000, 'the close');
      const errs = c.messages.filter((m) => m.json && typeof m.json.error === 'string');
      assert.equal(errs.length, 1, `one {"error"} message before the close: ${JSON.stringify(c.messages.map((m) => m.text))}`);
      assert.equal(c.closed.code, 1008, `close code: ${JSON.stringify(c.closed)}`);
      assertNothingUpstream(ctx.up, tag, before);
    } finally {
      await c.close();
    }
  });

  test('a prompt while another is streaming gets {"error"} (busy); the first one completes', async () => {
    await withWS('/agent/paced/ws', async (c) => {
      const first = uid('ws-first');
      const second = uid('ws-busy');
      const from = c.messages.length;
      await c.send({ prompt: first });
      await c.waitFor(() => c.messages.slice(from).some((m) => m.json?.type === 'chunk'), 3000, 'the first chunk');
      await c.send({ prompt: second });
      // The busy error is one message; the first answer goes on around it to its complete.
      const since = () => c.messages.slice(from).map((m) => m.json);
      await c.waitFor(() => since().some((m) => m?.type === 'complete') && since().some((m) => m && 'error' in m), 5000,
        'the busy error and the first complete');
      const msgs = since();
      assert.equal(msgs.filter((m) => m && 'error' in m).length, 1, `one busy error: ${JSON.stringify(msgs).slice(0, 400)}`);
      assert.equal(typeof msgs.find((m) => m && 'error' in m).error, 'string');
      const complete = msgs.find((m) => m?.type === 'complete');
      const chunks = msgs.filter((m) => m?.type === 'chunk').map((m) => m.content).filter((t) => t !== '');
      assert.deepEqual(chunks, Array.from({ length: 20 }, (_, i) => `${first}#${i} `), 'the first answer, whole and in order');
      assert.equal(complete.result.response, chunks.join(''));
      assert.equal(upstreamWith(ctx.up, second).length, 0, 'the refused prompt went upstream');
      const again = uid('ws-after-busy');
      const y = await c.exchange({ prompt: again });
      assertComplete(y, 'after busy');
      assert.ok(y.text.startsWith(`${again}#0 `), `the next answer is for the next prompt: ${y.text.slice(0, 100)}`);
    });
  });

  test('a message over the size limit (64 KiB) closes with 1009; nothing goes upstream', async () => {
    const tag = uid('ws-huge');
    const before = ctx.up.count();
    const c = await openWS(wsURL('/model/ws'));
    try {
      c.send(JSON.stringify({ prompt: `${tag} ${'x'.repeat(70 * 1024)}` })).catch(() => {});
      await c.waitFor((x) => x.closed, 3000, 'the close');
      assert.equal(c.closed.code, 1009, `close code: ${JSON.stringify(c.closed)}`);
      assertNothingUpstream(ctx.up, tag, before);
    } finally {
      await c.close();
    }
  });

  test('a message just under the limit is served', async () => {
    await withWS('/agent/mocky/ws', async (c) => {
      const r = assertComplete(await c.exchange({ prompt: 'y'.repeat(60 * 1024) }), '60 KiB prompt');
      assert.equal(r.response, await answer());
    });
  });
});

describe('monoai WebSocket: protocol', { timeout: 60_000 }, () => {
  test('ping gets a pong with the same payload, idle and mid-stream', async () => {
    await withWS('/agent/paced/ws', async (c) => {
      c.ws.ping(Buffer.from('idle-ping'));
      await c.waitFor(() => c.pongs.some((p) => p.toString() === 'idle-ping'), 2000, 'the pong');
      const from = c.messages.length;
      await c.send({ prompt: uid('ws-ping') });
      await c.waitFor(() => c.messages.slice(from).some((m) => m.json?.type === 'chunk'), 3000, 'a chunk');
      c.ws.ping(Buffer.from('busy-ping'));
      await c.waitFor(() => c.pongs.some((p) => p.toString() === 'busy-ping'), 2000, 'the pong mid-stream');
      assertComplete(await c.until(from, 5000));
    });
  });

  test('a fragmented message is reassembled (split inside a UTF-8 character too)', async () => {
    await withWS('/agent/support/ws', async (c) => {
      const prompt = `${uid('frag')} perché 世界 🌊`;
      const bytes = Buffer.from(JSON.stringify({ prompt }));
      const cut1 = bytes.indexOf(Buffer.from('ché')) + 3; // inside é (c3 a9)
      const cut2 = bytes.indexOf(Buffer.from('🌊')) + 2;
      assert.ok(cut1 > 3 && cut2 > cut1);
      const from = c.messages.length;
      await c.send(bytes.subarray(0, cut1), { fin: false, binary: false });
      await c.send(bytes.subarray(cut1, cut2), { fin: false, binary: false });
      await c.send(bytes.subarray(cut2), { fin: true, binary: false });
      const r = assertComplete(await c.until(from, 5000), 'fragmented prompt');
      assert.equal(r.prompt, prompt);
      assert.equal(lastUser(echoed(r.response).body), prompt);
    });
  });

  test('closing the socket mid-stream cancels the upstream at once', async () => {
    const c = await openWS(wsURL('/agent/slow/ws'));
    const prompt = uid('ws-close');
    await c.send({ prompt });
    await c.waitFor(() => c.messages.filter((m) => m.json?.type === 'chunk').length >= 3, 3000, 'three chunks');
    const goneAt = performance.now();
    c.ws.close(1000);
    await assertUpstreamCancelled(ctx.up, prompt, goneAt);
    await c.waitFor((x) => x.closed, 3000, 'the close handshake');
    assert.equal(c.closed.code, 1000);
  });

  test('a socket that just drops mid-stream (no close frame) cancels the upstream at once', async () => {
    const c = await openWS(wsURL('/agent/slow/ws'));
    const prompt = uid('ws-drop-client');
    await c.send({ prompt });
    await c.waitFor(() => c.messages.filter((m) => m.json?.type === 'chunk').length >= 3, 3000, 'three chunks');
    const goneAt = performance.now();
    c.ws.terminate();
    await assertUpstreamCancelled(ctx.up, prompt, goneAt);
  });

  test('a plain GET on /model/ws (no upgrade) does not start anything', async () => {
    const before = ctx.up.count();
    const r = await request(ctx.sl.main.url, { path: '/model/ws' });
    assert.ok(r.status >= 400 && r.status < 500, `GET /model/ws without Upgrade: ${r.status}`);
    assert.equal(ctx.up.count(), before);
  });
});

describe('seed 002 Python example (websockets)', { timeout: 60_000 }, () => {
  test('py/monoai_ws_example.py streams the answer from /model/ws and exits 0', async () => {
    const script = path.join(INTEG_DIR, 'py', 'monoai_ws_example.py');
    const r = await new Promise((resolve) => {
      execFile('/usr/bin/python3', [script, String(ctx.sl.main.port), 'Ciao WebSocket'],
        { timeout: 15000, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr }));
    });
    assert.equal(r.code, 0, `the example exited ${r.code}; stderr:\n${r.stderr}`);
    assert.equal(r.stdout, await answer(), 'the printed chunks must be the mock answer');
  });

  test('py/monoai_ws_example.py exits non-zero on an {"error"} (unknown agent)', async () => {
    const script = path.join(INTEG_DIR, 'py', 'monoai_ws_example.py');
    const r = await new Promise((resolve) => {
      execFile('/usr/bin/python3', [script, String(ctx.sl.main.port), 'hi', '/agent/nope/ws'],
        { timeout: 15000, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr }));
    });
    assert.notEqual(r.code, 0, `the example must fail on an error; stderr:\n${r.stderr}`);
    assert.equal(r.stdout, '');
  });
});

ctx.testCleanExit();
