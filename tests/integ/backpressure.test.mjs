// Backpressure (DESIGN §3.3): a client that stops reading makes sluice pause the upstream
// instead of buffering without bound; when it reads again every byte arrives, exactly; and the
// paused stream holds nobody else up.
import { describe, test } from 'node:test';
import fs from 'node:fs';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { expectedClientStream } from './lib/fake-upstream.mjs';
import { openStream, withoutKeepalives } from './lib/sse.mjs';
import { RawClient, formatRequest } from './lib/raw-http.mjs';
import { useSluice, chat } from './lib/sluice.mjs';

const ctx = useSluice();
const MiB = 1024 * 1024;

/* sluice's resident memory: what backpressure must keep bounded. */
function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}
/* Loopback receive buffers autotune up to net.ipv4.tcp_rmem's maximum (32 MiB on some
 * machines), on the client's socket and on sluice's upstream socket: the kernel alone may hold
 * that much of a stream nobody reads. The stream must be larger than all of it. */
const KERNEL_SLACK = Number(fs.readFileSync('/proc/sys/net/ipv4/tcp_rmem', 'utf8').split(/\s+/)[2]) * 2
  + Number(fs.readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').split(/\s+/)[2]) * 2;

/* Resolves once get() has not changed for quietMs; rejects after timeoutMs. */
function settled(get, quietMs, timeoutMs, label) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let last = get();
    let since = t0;
    const timer = setInterval(() => {
      const v = get();
      const now = performance.now();
      if (v !== last) { last = v; since = now; }
      if (now - since >= quietMs) { clearInterval(timer); resolve(v); }
      else if (now - t0 > timeoutMs) { clearInterval(timer); reject(new Error(`${label} still changing after ${timeoutMs} ms (at ${v})`)); }
    }, 25);
  });
}

describe('backpressure', { timeout: 60_000 }, () => {
  test('a client that stops reading pauses the upstream; reading again delivers every byte', async () => {
    const total = KERNEL_SLACK + 32 * MiB;
    const rssBefore = rssBytes(ctx.sl.pid);
    const body = chat(`big:${total}`, 'bp', { stream: true });
    const rc = await RawClient.connect(ctx.sl.port);
    rc.pause(); // read nothing: the kernel buffers fill, then sluice's, then it must pause curl
    try {
      await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', body }));
      const rec = await ctx.up.waitForRequest((r) => r.body?.messages?.[0]?.content === 'bp', 3000);
      await ctx.up.waitFor(() => rec.bytesWritten > 0, 3000, 'the upstream to start writing');
      const stalledAt = await settled(() => rec.bytesWritten, 400, 10000, 'the upstream write position');
      // What sits between the upstream and the client: socket buffers on both sides plus
      // sluice's own high-water mark (256 KiB) — and sluice's memory must not hold the rest.
      assert.equal(rec.finished, false, 'the upstream wrote the whole stream to a client that reads nothing');
      assert.ok(stalledAt < KERNEL_SLACK + 16 * MiB, `the upstream got ${(stalledAt / MiB).toFixed(1)} MiB out to a client that reads nothing`);
      const grown = rssBytes(ctx.sl.pid) - rssBefore;
      // ASan keeps freed memory in quarantine and adds shadow memory: a looser bound there.
      const allowed = (process.env.SLUICE_SANITIZED ? 96 : 24) * MiB;
      assert.ok(grown < allowed, `sluice grew by ${(grown / MiB).toFixed(1)} MiB holding a paused stream`);

      // Meanwhile, other streams flow normally.
      const other = chat('chunks:5', 'bp-other', { stream: true });
      const s = await openStream(`${ctx.sl.url}/v1/chat/completions`, other).finished(3000);
      assert.equal(s.body(), expectedClientStream(other));
      assert.equal(rec.bytesWritten, stalledAt, 'the paused transfer moved while the client still read nothing');

      rc.resume();
      const res = await rc.readResponse(30000);
      assert.equal(res.status, 200);
      const want = expectedClientStream(body);
      const got = withoutKeepalives(res.body);
      assert.equal(got.length, Buffer.byteLength(want), 'byte count after resuming');
      assert.ok(got.equals(Buffer.from(want)), 'bytes differ after resuming');
      assert.equal(rec.finished, true);
    } finally {
      rc.destroy();
    }
  });

  test('a reader that keeps pausing still gets a byte-exact stream', async () => {
    const body = chat(`big:${4 * MiB}`, 'bp-stutter', { stream: true });
    const rc = await RawClient.connect(ctx.sl.port);
    try {
      await rc.write(formatRequest({ method: 'POST', path: '/v1/chat/completions', body }));
      const stutter = setInterval(() => { if (rc.sock.isPaused()) rc.resume(); else rc.pause(); }, 20);
      let res;
      try {
        res = await rc.readResponse(20000);
      } finally {
        clearInterval(stutter);
        rc.resume();
      }
      assert.equal(res.status, 200);
      assert.ok(withoutKeepalives(res.body).equals(Buffer.from(expectedClientStream(body))), 'bytes differ');
    } finally {
      rc.destroy();
    }
  });
});

ctx.testCleanExit();
