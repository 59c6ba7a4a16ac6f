// WebSocket keepalive (timeouts.ws_ping, timeouts.ws_idle): sluice pings a client that has been
// silent for ws_ping; a client that sends no whole frame (a pong counts) within ws_idle is sent
// close 1001 and, if it does not answer, dropped shortly after. A client that answers pings (the
// `ws` package, like every browser) stays; an answer being streamed is never cut; and idle
// sockets holding the connection limit are reaped, so new clients get in.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { request } from './lib/raw-http.mjs';
import { OP, clientFrame, openRawWS } from './lib/raw-ws.mjs';
import { useSluices, dialectConfig, openWS } from './lib/dialects.mjs';

const PING_MS = 200;
const IDLE_MS = 600;
const MAX_CONNS = 4;
/* sluice's wait for the close handshake before it drops the socket (conn.c WS_CLOSE_WAIT_MS). */
const CLOSE_WAIT_MS = 2000;

const ctx = useSluices({
  main: (up, db) => dialectConfig(up, db, {
    timeouts: { ws_ping: `${PING_MS}ms`, ws_idle: `${IDLE_MS}ms` },
    limits: { max_connections: MAX_CONNS },
    dialects: {
      monoai: {
        model: 'mock-mono',
        auth: 'none',
        agents: { slow: { model: 'chunks:40:50' } }, // 2 s of chunks: longer than ws_idle
      },
    },
  }),
});

const port = () => ctx.sl.main.port;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* The close code of a close frame's payload (1005 when it has none). */
const closeCode = (payload) => (payload.length >= 2 ? payload.readUInt16BE(0) : 1005);

/* Collects every frame of a raw socket as it arrives, with its time, until the socket closes. */
function record(rc) {
  const log = [];
  const take = () => { for (const f of rc.frames()) log.push({ ...f, t: performance.now() }); };
  rc.sock.on('data', () => setImmediate(take));
  return log;
}

describe('WebSocket keepalive', { timeout: 60_000 }, () => {
  test('a client that answers pings stays open across many idle periods, and still works', async () => {
    const c = await openWS(`ws://127.0.0.1:${port()}/model/ws`);
    let pings = 0;
    c.ws.on('ping', () => { pings++; });
    try {
      await sleep(IDLE_MS * 4);
      assert.equal(c.closed, null, `closed while answering pings: ${JSON.stringify(c.closed)}`);
      assert.ok(pings >= 4, `only ${pings} ping(s) in ${IDLE_MS * 4} ms of silence (ws_ping ${PING_MS} ms)`);
      const x = await c.exchange({ prompt: 'still there?' });
      assert.equal(x.error, null, JSON.stringify(x.error));
      assert.ok(x.complete, 'no complete after the idle stretch');
    } finally {
      await c.close();
    }
  });

  test('a client that never answers is pinged, sent 1001, then dropped', async () => {
    const rc = await openRawWS(port(), '/model/ws');
    const t0 = performance.now();
    const log = record(rc);
    try {
      const closedAt = await rc.waitClose(IDLE_MS + CLOSE_WAIT_MS + 3000);
      rc.frames().forEach((f) => log.push({ ...f, t: performance.now() }));
      const pings = log.filter((f) => f.op === OP.ping);
      const closes = log.filter((f) => f.op === OP.close);
      assert.ok(pings.length >= 1, `no ping before the idle close: ${JSON.stringify(log.map((f) => f.op))}`);
      assert.equal(closes.length, 1, 'one close frame');
      assert.equal(closeCode(closes[0].payload), 1001, 'close code: going away');
      assert.equal(log.at(-1).op, OP.close, 'nothing after the close frame');
      const closeMs = closes[0].t - t0;
      assert.ok(closeMs >= IDLE_MS - 50 && closeMs < IDLE_MS + PING_MS + 1000, `close frame after ${closeMs.toFixed(0)} ms (ws_idle ${IDLE_MS})`);
      const dropMs = closedAt - t0;
      assert.ok(dropMs < IDLE_MS + CLOSE_WAIT_MS + 1500, `socket dropped after ${dropMs.toFixed(0)} ms`);
    } finally {
      rc.destroy();
    }
  });

  test('bytes that never make a whole frame do not keep a socket open', async () => {
    const rc = await openRawWS(port(), '/model/ws');
    const t0 = performance.now();
    // A 100-byte text frame, one byte every 100 ms: bytes keep flowing, no frame ends in time.
    const frame = clientFrame(OP.text, Buffer.alloc(100, 0x20));
    const dribble = rc.trickle(frame, 100);
    try {
      const closedAt = await rc.waitClose(IDLE_MS + CLOSE_WAIT_MS + 3000);
      assert.ok(closedAt - t0 < IDLE_MS + CLOSE_WAIT_MS + 1500, `dropped after ${(closedAt - t0).toFixed(0)} ms`);
    } finally {
      rc.destroy();
      await dribble;
    }
  });

  test('an answer streaming longer than ws_idle is not cut; the idle time starts at its end', async () => {
    const rc = await openRawWS(port(), '/agent/slow/ws');
    const log = record(rc);
    try {
      await rc.write(clientFrame(OP.text, JSON.stringify({ prompt: 'take your time' })));
      // From here on the client says nothing: no pongs, no close reply.
      await rc.waitClose(40 * 50 + IDLE_MS + CLOSE_WAIT_MS + 3000);
      rc.frames().forEach((f) => log.push({ ...f, t: performance.now() }));
      const texts = log.filter((f) => f.op === OP.text).map((f) => JSON.parse(f.payload.toString('utf8')));
      const complete = texts.findIndex((m) => m.type === 'complete');
      assert.ok(complete >= 0, `no complete message: ${JSON.stringify(texts.slice(-3))}`);
      assert.equal(texts.filter((m) => m.type === 'chunk').length, 40, 'every chunk');
      const tComplete = log.filter((f) => f.op === OP.text)[complete].t;
      const close = log.find((f) => f.op === OP.close);
      assert.ok(close, 'closed without a close frame');
      assert.equal(closeCode(close.payload), 1001);
      const after = close.t - tComplete;
      assert.ok(after >= IDLE_MS - 100, `close ${after.toFixed(0)} ms after the answer ended (ws_idle ${IDLE_MS})`);
    } finally {
      rc.destroy();
    }
  });

  test(`idle sockets holding max_connections (${MAX_CONNS}) are reaped: a new client is served`, async () => {
    const idle = [];
    try {
      for (let i = 0; i < MAX_CONNS; i++) idle.push(await openRawWS(port(), '/model/ws'));
      // The limit is reached: one more connection is closed at once.
      await assert.rejects(request(ctx.sl.main.url, { path: '/healthz', timeoutMs: 2000 }), 'a connection over the limit');
      const t0 = performance.now();
      await Promise.all(idle.map((rc) => rc.waitClose(IDLE_MS + CLOSE_WAIT_MS + 3000)));
      const ms = performance.now() - t0;
      assert.ok(ms < IDLE_MS + CLOSE_WAIT_MS + 1500, `idle sockets reaped after ${ms.toFixed(0)} ms`);
      const r = await request(ctx.sl.main.url, { path: '/healthz', timeoutMs: 2000 });
      assert.equal(r.status, 200, 'a new client is served once idle sockets are gone');
    } finally {
      for (const rc of idle) rc.destroy();
    }
  });
});

describe('WebSocket keepalive config', () => {
  test('ws_ping must be shorter than ws_idle', async () => {
    const { runSluiceSync, tempFile, baseConfig, toYAML } = await import('./lib/sluice.mjs');
    const cfg = baseConfig({ timeouts: { ws_ping: '2m', ws_idle: '1m' } });
    const file = tempFile('sluice.yaml', `${toYAML(cfg)}\n`);
    const r = runSluiceSync(['--check-config', file]);
    assert.notEqual(r.code, 0, 'a ping interval not shorter than the idle deadline is refused');
    assert.match(r.stderr + r.stdout, /ws_ping .*must be shorter than ws_idle/);
  });
});

ctx.testCleanExit();
