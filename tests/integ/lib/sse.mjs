// SSE over real HTTP: an incremental parser (\n, \r\n and \r line ends, multi-line data,
// comments) and a streaming client that records each event with its arrival time.
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';

/* Incremental SSE parser: feed() text, get complete events back. */
export class SSEParser {
  constructor() {
    this.buf = '';
    this.data = null;
    this.event = null;
    this.id = null;
  }

  feed(text) {
    this.buf += text;
    const out = [];
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.buf);
      if (!m) break;
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (m[0] === '\r' && m.index === this.buf.length - 1) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      if (line === '') {
        if (this.data !== null) out.push({ type: 'data', data: this.data, event: this.event, id: this.id });
        this.data = null;
        this.event = null;
        continue;
      }
      if (line.startsWith(':')) {
        out.push({ type: 'comment', data: line.slice(1).replace(/^ /, '') });
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') this.data = this.data === null ? value : `${this.data}\n${value}`;
      else if (field === 'event') this.event = value;
      else if (field === 'id') this.id = value;
    }
    return out;
  }
}

/* Length of the SSE comment blocks (": ...\n\n") at the front of buf. */
export function leadingComments(buf) {
  return /^(?::[^\n]*\n\n)*/.exec(buf.toString('latin1'))[0].length;
}

/* buf without its leading SSE comment blocks. */
export function withoutKeepalives(buf) {
  return buf.subarray(leadingComments(buf));
}

/* Parses a whole SSE body into events (no timing); an unterminated last event is dropped. */
export function parseSSE(text) {
  return new SSEParser().feed(text);
}

/* The JSON payloads of the data events, [DONE] excluded. */
export function dataPayloads(events) {
  return events.filter((e) => e.type === 'data' && e.data !== '[DONE]').map((e) => JSON.parse(e.data));
}

/*
 * POSTs `body` (JSON) and reads the answer as it arrives, on a fresh connection.
 * The returned object fills in as bytes come:
 *   status, headers, headersAt, events [{type, data, json?, t}], raw() (Buffer of the body),
 *   chunkTimes (arrival time of each body read), ended (clean end of the response body),
 *   aborted (the connection ended before the body did), error, closedAt.
 * Times are performance.now() values (the same clock as the fake upstream's log).
 * `done` resolves when the response is over, whatever the reason; waitFor(pred) waits on
 * the stream's own state; destroy() closes the connection as a leaving client would.
 */
export function openStream(url, body, { headers = {}, method = 'POST' } = {}) {
  const u = new URL(url);
  const em = new EventEmitter();
  em.setMaxListeners(0);
  const parser = new SSEParser();
  const decoder = new TextDecoder('utf-8');
  const parts = [];
  const s = {
    t0: performance.now(), status: null, headers: null, headersAt: null, events: [],
    chunkTimes: [], ended: false, aborted: false, error: null, closedAt: null, destroyedAt: null,
    raw: () => Buffer.concat(parts),
    text: () => Buffer.concat(parts).toString('utf8'),
    /* The body without the ": keepalive" comments a loaded server may send before the first
     * event (DESIGN §3.7): what byte-exact comparisons use. */
    rawBody: () => { const r = Buffer.concat(parts); return r.subarray(leadingComments(r)); },
    body: () => s.rawBody().toString('utf8'),
    dataEvents: () => s.events.filter((e) => e.type === 'data'),
    comments: () => s.events.filter((e) => e.type === 'comment'),
  };
  /* body undefined: no body at all (a GET, as a browser EventSource sends it). */
  let payload;
  const h = { accept: 'text/event-stream', ...headers };
  if (body !== undefined) {
    payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    h['content-type'] ??= 'application/json';
    h['content-length'] = Buffer.byteLength(payload);
  }
  const req = http.request({
    host: u.hostname, port: u.port, path: u.pathname + u.search, method, agent: false, headers: h,
  });
  s.req = req;
  let finish;
  s.done = new Promise((resolve) => { finish = () => { s.closedAt ??= performance.now(); em.emit('change'); resolve(s); }; });
  req.on('response', (res) => {
    s.res = res;
    s.status = res.statusCode;
    s.headers = res.headers;
    s.headersAt = performance.now();
    em.emit('change');
    res.on('data', (d) => {
      const t = performance.now();
      parts.push(d);
      s.chunkTimes.push(t);
      for (const ev of parser.feed(decoder.decode(d, { stream: true }))) {
        ev.t = t;
        if (ev.type === 'data' && ev.data !== '[DONE]') {
          try { ev.json = JSON.parse(ev.data); } catch { ev.json = undefined; }
        }
        s.events.push(ev);
      }
      em.emit('change');
    });
    res.on('end', () => { s.ended = true; });
    res.on('aborted', () => { s.aborted = true; });
    res.on('error', (e) => { s.error ??= e; s.aborted = true; });
    res.on('close', finish);
  });
  req.on('error', (e) => { s.error ??= e; finish(); });
  req.end(payload);

  s.waitFor = (pred, timeoutMs = 3000, label = 'stream condition') => new Promise((resolve, reject) => {
    const check = () => {
      const v = pred(s);
      if (v) { done(); resolve(v); return true; }
      if (s.closedAt !== null) { done(); reject(new Error(`stream closed before ${label} (status ${s.status}, ${s.events.length} events, error ${s.error?.code ?? s.error})`)); return true; }
      return false;
    };
    const timer = setTimeout(() => { done(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label} (status ${s.status}, ${s.events.length} events)`)); }, timeoutMs);
    const done = () => { clearTimeout(timer); em.off('change', check); };
    if (!check()) em.on('change', check);
  });
  s.destroy = () => { s.destroyedAt ??= performance.now(); req.destroy(); };
  /* Waits (bounded) for the response to be over; on timeout closes it and rejects. */
  s.finished = async (timeoutMs = 8000) => {
    try {
      await s.waitFor((x) => x.closedAt !== null, timeoutMs, 'the end of the response');
    } catch (e) {
      s.destroy();
      await s.done;
      throw e;
    }
    return s;
  };
  return s;
}

/* Bounds a promise: rejects with `label` after ms. */
export function within(promise, ms, label) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms); }),
  ]);
}
