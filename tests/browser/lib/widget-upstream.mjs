// A scripted OpenAI-compatible upstream for the widget's tests: unlike the shared fake upstream
// (tests/integ/lib/fake-upstream.mjs, one behaviour per model name) it answers each request
// with the next step of a script, so "429 with Retry-After: 1, then an answer" or "the
// streaming request breaks, the plain one works" can be played. Every request is logged with
// its arrival time, body and whether sluice closed it before the answer was finished.
//
// A step is { status, retryAfter } (an OpenAI error body), { drop: 'before-head' } (socket
// destroyed: a client retries that at once on a reused connection), { drop: 'garbage' } (bytes
// that are not HTTP, then closed: a network error), { drop: 'after-role' } (streaming: headers and the role chunk, then destroyed),
// { hang: true } (no answer until the peer closes), or an answer: { pieces: [...], gap: ms
// between pieces, dropAfter: destroy the socket after that many pieces,
// eol: the SSE line ending, split: write the stream in pieces of that many
// bytes }, { notSSE: true } (a streaming request gets a 200 HTML page). Any step may start with
// { delay: ms }.
// The script may also be a function (rec, i) → step. When it runs out, steps are answers.
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

export const defaultPieces = (body) => {
  const last = [...(body?.messages ?? [])].reverse().find((m) => m.role === 'user')?.content ?? 'hello';
  return Array.from({ length: 5 }, (_, i) => `${last}#${i} `);
};

const chunk = (body, delta, finish = null, eol = '\n') => `data: ${JSON.stringify({
  id: 'chatcmpl-widget', object: 'chat.completion.chunk', created: 1700000000, model: body.model,
  choices: [{ index: 0, delta, finish_reason: finish }],
})}${eol}${eol}`;

/* cors: answer preflights and allow every origin, so a page can call this server directly. */
export async function startScriptedUpstream({ cors = false } = {}) {
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const requests = [];
  let script = [];
  let played = 0;
  const changed = () => events.emit('change');

  const server = http.createServer({ noDelay: true }, (req, res) => {
    if (cors) {
      res.setHeader('access-control-allow-origin', '*');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'access-control-allow-methods': 'POST',
          'access-control-allow-headers': req.headers['access-control-request-headers'] ?? '' });
        res.end();
        return;
      }
    }
    const rec = { seq: requests.length, t: performance.now(), body: null, stream: false,
      finished: false, closed: false, closedEarly: false, closedAt: null };
    requests.push(rec);
    const ac = new AbortController();
    res.on('close', () => {
      rec.closed = true;
      rec.closedAt = performance.now();
      rec.closedEarly = !rec.finished && !rec.dropped;
      ac.abort();
      changed();
    });
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      try { rec.body = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { rec.body = null; }
      rec.stream = rec.body?.stream === true;
      const i = played++;
      const step = (typeof script === 'function' ? script(rec, i) : script[i]) ?? {};
      rec.step = step;
      changed();
      play(rec, res, step, ac.signal).catch(() => {}).finally(changed);
    });
  });

  async function play(rec, res, step, signal) {
    const body = rec.body ?? {};
    if (step.delay) await sleep(step.delay, undefined, { signal });
    if (step.hang) return;
    if (step.drop === 'before-head') { rec.dropped = true; res.socket.destroy(); return; }
    if (step.drop === 'garbage') { rec.dropped = true; res.socket.end('garbage, not HTTP\r\n\r\n'); return; }
    if (step.status) {
      const text = JSON.stringify({ error: { message: `scripted ${step.status}`, type: 'server_error', param: null, code: null } });
      const h = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
      if (step.retryAfter !== undefined) h['retry-after'] = String(step.retryAfter);
      res.writeHead(step.status, h);
      res.end(text, () => { rec.finished = true; changed(); });
      return;
    }
    if (step.notSSE && rec.stream) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>a proxy page, not an event stream</html>', () => { rec.finished = true; changed(); });
      return;
    }
    const pieces = step.pieces ?? defaultPieces(body);
    if (!rec.stream) {
      const text = JSON.stringify({ id: 'chatcmpl-widget', object: 'chat.completion', created: 1700000000,
        model: body.model, choices: [{ index: 0, message: { role: 'assistant', content: pieces.join('') }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: pieces.length, total_tokens: 5 + pieces.length } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text, () => { rec.finished = true; changed(); });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const eol = step.eol ?? '\n';
    const write1 = (b) => new Promise((resolve) => res.write(b, resolve));
    const write = async (s) => {
      if (!step.split) return write1(s);
      /* Cut every `split` bytes, after every \r (so a \r\n is split in two) and after the
       * first byte of every multi-byte character; 3 ms apart, so the reads come apart too. */
      const b = Buffer.from(s);
      const cuts = new Set();
      for (let i = 1; i < b.length; i++) {
        if (i % step.split === 0 || b[i - 1] === 0x0d || b[i - 1] >= 0xc0) cuts.add(i);
      }
      let prev = 0;
      for (const c of [...cuts, b.length]) {
        await write1(b.subarray(prev, c));
        prev = c;
        await sleep(3, undefined, { signal });
      }
    };
    await write(chunk(body, { role: 'assistant', content: '' }, null, eol));
    if (step.drop === 'after-role') { rec.dropped = true; res.socket.destroy(); return; }
    for (const [i, p] of pieces.entries()) {
      if (i === step.dropAfter) { rec.dropped = true; res.socket.destroy(); return; }
      if (step.gap) await sleep(step.gap, undefined, { signal });
      await write(chunk(body, { content: p }, null, eol));
    }
    await write(chunk(body, {}, 'stop', eol));
    await write(`data: [DONE]${eol}${eol}`);
    await new Promise((resolve) => res.end(resolve));
    rec.finished = true;
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });

  return {
    port: server.address().port,
    requests,
    /* Plays `s` (steps or a function) from the next request on; the log is kept. */
    script(s) { script = s; played = 0; return requests.length; },
    /* Resolves with pred(requests)'s first truthy value, re-checked on every change. */
    waitFor(pred, timeoutMs = 5000, label = 'a condition') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const v = pred(requests);
          if (v) { done(); resolve(v); }
          return v;
        };
        const timer = setTimeout(() => { done(); reject(new Error(`scripted upstream: timed out waiting for ${label} (${requests.length} requests)`)); }, timeoutMs);
        const done = () => { clearTimeout(timer); events.off('change', check); };
        if (!check()) events.on('change', check);
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
