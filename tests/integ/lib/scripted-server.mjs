// The scripted HTTP server every fake upstream runs on (fake-upstream, fake-azure,
// fake-anthropic): each answer is a list of steps, replayed with real sockets and real
// timing, and every request is recorded for the tests to inspect.
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/*
 * An HTTP server whose answers are lists of steps. handle(rec) runs once the request body has
 * arrived and returns the steps: {kind: 'sleep', ms} | {kind: 'head', status, headers} |
 * {kind: 'write', data} | {kind: 'end'} | {kind: 'hang'} | {kind: 'destroy'}.
 *
 * Record (one per request):
 *   seq, t (performance.now() when the head arrived), method, url, path, query (object),
 *   headers, rawBody (Buffer), body (parsed JSON or null), bodyComplete, status (answered),
 *   headersSentAt, bytesWritten, finished (the whole answer was written), finishedAt,
 *   dropped (destroyed on purpose), closed, closedAt, closedEarly (the peer closed before the
 *   answer was complete), plus whatever handle() adds (scenario, stream, ...).
 */
export async function startScriptedServer(handle) {
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const requests = [];
  const changed = () => events.emit('change');

  const server = http.createServer({ keepAliveTimeout: 10000, noDelay: true }, (req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    const rec = {
      seq: requests.length, t: performance.now(), method: req.method, url: req.url,
      path: u.pathname, query: Object.fromEntries(u.searchParams), headers: req.headers,
      rawBody: Buffer.alloc(0), body: null, bodyComplete: false, status: null,
      headersSentAt: null, bytesWritten: 0, finished: false, finishedAt: null, dropped: false,
      closed: false, closedAt: null, closedEarly: false,
    };
    requests.push(rec);
    const ac = new AbortController();
    const parts = [];
    res.on('close', () => {
      rec.closed = true;
      rec.closedAt = performance.now();
      rec.closedEarly = !rec.finished && !rec.dropped;
      ac.abort();
      changed();
    });
    req.on('data', (d) => { parts.push(d); rec.rawBody = Buffer.concat(parts); changed(); });
    req.on('end', () => {
      rec.bodyComplete = true;
      try { rec.body = JSON.parse(rec.rawBody.toString('utf8')); } catch { rec.body = null; }
      let steps;
      try {
        steps = handle(rec);
      } catch (e) {
        const text = JSON.stringify({ error: { code: 'FakeBug', message: String(e?.stack ?? e) } });
        steps = [{ kind: 'head', status: 500, headers: { 'content-type': 'application/json' } },
          { kind: 'write', data: text }, { kind: 'end' }];
      }
      changed();
      run(rec, res, steps, ac.signal).catch(() => {}).finally(changed);
    });
  });

  async function run(rec, res, steps, signal) {
    for (const step of steps) {
      if (signal.aborted) return;
      switch (step.kind) {
        case 'sleep':
          await sleep(step.ms, undefined, { signal });
          break;
        case 'head':
          rec.status = step.status;
          res.writeHead(step.status, step.headers);
          res.flushHeaders();
          rec.headersSentAt = performance.now();
          break;
        case 'write':
          await new Promise((resolve) => {
            const done = () => { signal.removeEventListener('abort', done); resolve(); };
            signal.addEventListener('abort', done);
            res.write(step.data, done);
          });
          rec.bytesWritten += Buffer.byteLength(step.data);
          changed();
          break;
        case 'end':
          await new Promise((resolve) => res.end(resolve));
          rec.finished = true;
          rec.finishedAt = performance.now();
          changed();
          break;
        case 'hang':
          return;
        case 'destroy':
          rec.dropped = true;
          res.socket?.destroy();
          return;
        default:
          throw new Error(`unknown step ${step.kind}`);
      }
    }
  }

  let connections = 0; /* TCP connections accepted: shows whether the client reuses them */
  server.on('connection', () => { connections++; });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;

  function waitFor(pred, timeoutMs = 3000, label = 'condition') {
    return new Promise((resolve, reject) => {
      const check = () => {
        let v;
        try { v = pred(requests); } catch (e) { finish(); reject(e); return true; }
        if (v) { finish(); resolve(v); return true; }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`fake server on ${port}: timed out after ${timeoutMs} ms waiting for ${label}` +
          ` (${requests.length} requests: ${requests.map((r) => `${r.method} ${r.url} ${r.scenario?.name ?? ''}` +
            `${r.status ? ` →${r.status}` : ''}${r.closed ? (r.closedEarly ? ' closed-early' : ' closed') : ''}` +
            `${r.finished ? ' finished' : ''}`).join(', ')})`));
      }, timeoutMs);
      const finish = () => { clearTimeout(timer); events.off('change', check); };
      if (!check()) events.on('change', check);
    });
  }

  return {
    port,
    requests,
    count: () => requests.length,
    connections: () => connections,
    last: () => requests[requests.length - 1],
    /* Requests sent with X-Request-Id rid. */
    withRequestId: (rid) => requests.filter((r) => r.headers['x-request-id'] === rid),
    /* Resolves with pred(requests)'s first truthy value; rejects after timeoutMs. */
    waitFor,
    /* The first fully arrived request (from index `from` on) satisfying pred. */
    waitForRequest(pred, timeoutMs = 3000, from = 0, label = 'a request') {
      return waitFor((rs) => rs.slice(from).find((r) => r.bodyComplete && pred(r)), timeoutMs, label);
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
