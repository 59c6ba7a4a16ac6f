// WebSocket read backpressure: a client that sends frames which each get a reply, and reads
// none of the replies, makes sluice stop reading its input (limits.stream_buffer is the
// high-water mark) instead of queueing replies without bound; once the client reads, every reply
// arrives, in order. The frames are tiny (6-byte empty text messages, each answered with an
// {"error"} of ~60 bytes), so one 64 KiB read holds ~10000 of them: the input is fed in pieces.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { OP, clientFrame, openRawWS, parseFrames } from './lib/raw-ws.mjs';
import { useSluices, dialectConfig } from './lib/dialects.mjs';
import { pollUntilSteady } from './lib/poll.mjs';

const MiB = 1024 * 1024;
const FRAMES_PER_CHUNK = 10_000;
/* 8 MiB of frames: ~1.4 M replies, ~80 MiB of them. Far more than the kernel holds for a reader
 * that does not read (its receive buffer does not grow while nothing is read; sluice's send
 * buffer is at most tcp_wmem's maximum, 4 MiB here), so without backpressure they pile up in
 * sluice. */
const CHUNKS = 140;

/* Under ASan, freed memory waits in a quarantine of up to 256 MiB: RSS would measure how much
 * this file's million replies churned, not what sluice holds. A small one leaves the latter. */
if (process.env.SLUICE_SANITIZED) {
  process.env.ASAN_OPTIONS = [process.env.ASAN_OPTIONS, 'quarantine_size_mb=4'].filter(Boolean).join(':');
}

const ctx = useSluices({
  main: (up, db) => dialectConfig(up, db, {
    dialects: { monoai: { model: 'mock-mono', auth: 'none' } },
  }),
});

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

/* CPU time sluice has used, in clock ticks (utime + stime). */
function cpuTicks(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
}

/* Resolves once sluice has used no CPU for quietMs (it has done all it will do), or after
 * timeoutMs. */
function quiet(pid, quietMs, timeoutMs) {
  return pollUntilSteady(() => cpuTicks(pid), { quietMs, timeoutMs, what: `sluice (pid ${pid}) to go idle` });
}

/* FRAMES_PER_CHUNK empty text frames, then a ping carrying the chunk's number: its pong tells
 * where in the stream of replies the client is, so order and loss show. */
function chunk(i) {
  const empty = clientFrame(OP.text, Buffer.alloc(0), Buffer.from([0x37, 0xfa, 0x21, 0x3d]));
  return Buffer.concat([Buffer.concat(Array(FRAMES_PER_CHUNK).fill(empty)), clientFrame(OP.ping, `chunk ${i}`)]);
}

describe('WebSocket read backpressure', { timeout: 60_000 }, () => {
  test('a client that sends and never reads is paused; reading again gets every reply in order', async () => {
    const sl = ctx.sl.main;
    const rc = await openRawWS(sl.port, '/model/ws');
    rc.pause();
    try {
      const rssBefore = rssBytes(sl.pid);
      const t0 = performance.now();
      for (let i = 0; i < CHUNKS; i++) rc.sock.write(chunk(i)); // node buffers what the kernel refuses
      await quiet(sl.pid, 600, 15_000);
      const grown = rssBytes(sl.pid) - rssBefore;
      const allowed = (process.env.SLUICE_SANITIZED ? 48 : 30) * MiB; // ASan: shadow memory
      assert.ok(grown < allowed, `sluice grew by ${(grown / MiB).toFixed(1)} MiB holding the replies of a client that reads nothing`);

      // Now read everything: between pongs, exactly FRAMES_PER_CHUNK replies, all the same error.
      let texts = 0;
      let pongs = 0;
      let first = null;
      let bad = null;
      let pending = Buffer.alloc(0);
      const onFrame = (op, payload) => {
        if (op === OP.text) {
          texts++;
          first ??= Buffer.from(payload);
          if (!bad && !payload.equals(first)) bad = `reply ${texts} differs: ${payload.toString('utf8').slice(0, 200)}`;
        } else if (op === OP.pong) {
          const want = `chunk ${pongs}`;
          if (!bad && payload.toString('utf8') !== want) bad = `pong ${pongs} is ${JSON.stringify(payload.toString('utf8'))}, want ${JSON.stringify(want)}`;
          if (!bad && texts !== (pongs + 1) * FRAMES_PER_CHUNK) bad = `${texts} replies before pong ${pongs}, want ${(pongs + 1) * FRAMES_PER_CHUNK}`;
          pongs++;
        } else if (!bad) {
          bad = `unexpected frame opcode ${op}: ${payload.toString('utf8').slice(0, 200)}`;
        }
      };
      // RawClient's own buffer is bypassed: millions of frames are parsed as they come.
      const leftover = rc.buf;
      rc.sock.removeAllListeners('data');
      const done = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`after 30 s: ${texts} replies, ${pongs} pongs`)), 30_000);
        const feed = (d) => {
          pending = pending.length ? Buffer.concat([pending, d]) : d;
          pending = pending.subarray(parseFrames(pending, 0, onFrame));
          if (bad || pongs === CHUNKS) { clearTimeout(timer); resolve(); }
        };
        rc.sock.on('data', feed);
        rc.sock.once('close', () => { clearTimeout(timer); reject(new Error(`closed after ${texts} replies, ${pongs} pongs`)); });
        if (leftover.length) feed(leftover);
      });
      rc.resume();
      await done;
      assert.equal(bad, null, bad);
      assert.equal(texts, CHUNKS * FRAMES_PER_CHUNK, 'one reply per frame');
      assert.match(first.toString('utf8'), /^\{"error":"invalid JSON/, 'the reply is the dialect\'s error');
      const ms = performance.now() - t0;
      assert.ok(ms < 45_000, `took ${ms.toFixed(0)} ms`);
    } finally {
      rc.destroy();
    }
  });
});

ctx.testCleanExit();
