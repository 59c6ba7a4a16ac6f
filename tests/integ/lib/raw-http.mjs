// A tiny HTTP/1.1 client over a raw TCP socket, for what node:http will not do: pipelining,
// many requests on one known connection, garbage, byte-at-a-time writes, oversized uploads.
// Also request() for ordinary one-shot requests (node:http, fresh connection each time).
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

/* Formats one request; a string or object body gets Content-Length unless told otherwise. */
export function formatRequest({ method = 'GET', path = '/', headers = {}, body } = {}) {
  let payload = body;
  if (payload !== undefined && typeof payload !== 'string' && !Buffer.isBuffer(payload)) payload = JSON.stringify(payload);
  const h = { host: '127.0.0.1', ...headers };
  const lower = Object.keys(h).map((k) => k.toLowerCase());
  if (payload !== undefined && !lower.includes('content-length') && !lower.includes('transfer-encoding')) {
    h['content-length'] = Buffer.byteLength(payload);
  }
  if (payload !== undefined && !lower.includes('content-type')) h['content-type'] = 'application/json';
  const head = `${method} ${path} HTTP/1.1\r\n` + Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n';
  return payload === undefined ? Buffer.from(head) : Buffer.concat([Buffer.from(head), Buffer.from(payload)]);
}

export class RawClient {
  static connect(port, host = '127.0.0.1', timeoutMs = 3000) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host, noDelay: true });
      const timer = setTimeout(() => { sock.destroy(); reject(new Error(`connect to ${host}:${port} timed out`)); }, timeoutMs);
      sock.once('connect', () => { clearTimeout(timer); resolve(new RawClient(sock)); });
      sock.once('error', (e) => { clearTimeout(timer); reject(e); });
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.parts = []; // unread bytes, concatenated lazily (big bodies arrive in many reads)
    this.unread = 0;
    this.received = 0;
    this.hint = null; // what readResponse still needs before a full parse is worth trying
    this.closed = false;
    this.closedAt = null;
    this.error = null;
    this.waiters = new Set();
    sock.on('data', (d) => { this.parts.push(d); this.unread += d.length; this.received += d.length; this.wake(); });
    sock.on('error', (e) => { this.error ??= e; this.wake(); });
    sock.on('close', () => { this.closed = true; this.closedAt = performance.now(); this.wake(); });
  }

  get buf() {
    if (this.parts.length !== 1) this.parts = [Buffer.concat(this.parts)];
    return this.parts[0];
  }

  set buf(b) { this.parts = [b]; this.unread = b.length; }

  tail(n) {
    const last = this.parts[this.parts.length - 1];
    return last && last.length >= n ? last.subarray(last.length - n) : this.buf.subarray(Math.max(0, this.unread - n));
  }

  wake() { for (const w of [...this.waiters]) w(); }

  /* Resolves once pred() holds (re-checked on data and close); rejects after timeoutMs. */
  until(pred, timeoutMs, label) {
    return new Promise((resolve, reject) => {
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { done(); reject(e); return; }
        if (v !== undefined && v !== false && v !== null) { done(); resolve(v); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`raw client: timed out after ${timeoutMs} ms waiting for ${label} (got ${this.buf.length} unread bytes${this.closed ? ', closed' : ''}: ${JSON.stringify(this.buf.subarray(0, 200).toString('latin1'))})`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  write(data) {
    return new Promise((resolve) => {
      if (this.sock.destroyed) { resolve(false); return; }
      this.sock.write(data, (err) => resolve(!err));
    });
  }

  /* Writes data one byte at a time with gapMs between bytes (stops early if the socket dies). */
  async trickle(data, gapMs) {
    const b = Buffer.from(data);
    for (let i = 0; i < b.length; i++) {
      if (this.sock.destroyed || this.closed) return false;
      this.sock.write(b.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, gapMs));
    }
    return true;
  }

  /* Reads the next complete response (1xx interim responses included) off the connection. */
  readResponse(timeoutMs = 5000) {
    this.hint = null;
    return this.until(() => {
      if (!this.closed && this.hint) {
        if (this.hint.len !== undefined && this.unread < this.hint.len) return undefined;
        // A chunked body ends in 0\r\n\r\n: at the tail, or followed by the next pipelined
        // response in the same read. Checking only the newest read keeps big bodies linear.
        if (this.hint.chunked && !this.tail(4).equals(Buffer.from('\r\n\r\n'))
            && this.parts[this.parts.length - 1].indexOf('0\r\n\r\n') < 0) return undefined;
      }
      const r = parseResponse(this.buf, this.closed);
      if (r === null && !this.closed) {
        const head = parseHead(this.buf);
        if (head) this.hint = head.chunked ? { chunked: true } : head.len !== undefined ? { len: head.start + head.len } : null;
      }
      if (r === null) {
        if (this.closed) throw new Error(`connection closed before a complete response (${this.buf.length} bytes: ${JSON.stringify(this.buf.subarray(0, 200).toString('latin1'))})`);
        return undefined;
      }
      this.buf = this.buf.subarray(r.consumed);
      this.hint = null;
      return r;
    }, timeoutMs, 'a response');
  }

  /* Resolves with the time the peer closed the connection. */
  waitClose(timeoutMs = 5000) {
    return this.until(() => (this.closed ? this.closedAt : undefined), timeoutMs, 'the connection to close');
  }

  pause() { this.sock.pause(); }
  resume() { this.sock.resume(); }
  destroy() { this.sock.destroy(); }
  end() { this.sock.end(); }
}

/* The framing of the response head at the front of buf, or null while the head is incomplete. */
function parseHead(buf) {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const head = buf.subarray(0, headEnd).toString('latin1');
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return { start: headEnd + 4, chunked: /\r\ntransfer-encoding:[^\r]*chunked/i.test(head), len: cl ? Number(cl[1]) : undefined };
}

/* Parses one response from the front of buf; null when it is not complete yet. */
export function parseResponse(buf, closed = false) {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
  const status = Number(m[2]);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    const k = l.slice(0, i).trim().toLowerCase();
    const v = l.slice(i + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  const start = headEnd + 4;
  const base = { version: m[1], status, reason: m[3] ?? '', headers, head: lines.join('\r\n') };
  if ((status >= 100 && status < 200) || status === 204 || status === 304) {
    return { ...base, body: Buffer.alloc(0), consumed: start };
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts = [];
    let p = start;
    for (;;) {
      const le = buf.indexOf('\r\n', p);
      if (le < 0) return null;
      const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0], 16);
      if (Number.isNaN(size)) throw new Error(`bad chunk size at ${p}`);
      if (size === 0) {
        // trailers end with an empty line
        let q = le + 2;
        for (;;) {
          const te = buf.indexOf('\r\n', q);
          if (te < 0) return null;
          if (te === q) return { ...base, body: Buffer.concat(parts), consumed: te + 2, chunks: parts.length };
          q = te + 2;
        }
      }
      if (buf.length < le + 2 + size + 2) return null;
      parts.push(buf.subarray(le + 2, le + 2 + size));
      p = le + 2 + size + 2;
    }
  }
  if (headers['content-length'] !== undefined) {
    const len = Number(headers['content-length']);
    if (buf.length < start + len) return null;
    return { ...base, body: buf.subarray(start, start + len), consumed: start + len };
  }
  if (!closed) return null; // body delimited by close
  return { ...base, body: buf.subarray(start), consumed: buf.length };
}

/*
 * One request on a fresh connection (node:http). Returns {status, headers, text, json, t}.
 * Never rejects on HTTP errors; rejects on socket errors or after timeoutMs.
 */
export function request(baseUrl, { method = 'GET', path = '/', headers = {}, body, timeoutMs = 10000 } = {}) {
  const u = new URL(path, baseUrl);
  let payload = body;
  if (payload !== undefined && typeof payload !== 'string' && !Buffer.isBuffer(payload)) payload = JSON.stringify(payload);
  const h = { ...headers };
  if (payload !== undefined) {
    h['content-type'] ??= 'application/json';
    h['content-length'] ??= Buffer.byteLength(payload);
  }
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: h, agent: false });
    const timer = setTimeout(() => { req.destroy(new Error(`${method} ${path}: no complete answer within ${timeoutMs} ms`)); }, timeoutMs);
    req.on('response', (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(parts).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json, ms: performance.now() - t0 });
      });
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.end(payload);
  });
}

/* A port on 127.0.0.1 with nothing listening on it (bound, then released). */
export function closedPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/* Resolves true when a TCP connect to port is refused, false when it is accepted. */
export function connectRefused(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => { sock.destroy(); resolve(false); }, timeoutMs);
    sock.once('connect', () => { clearTimeout(timer); sock.destroy(); resolve(false); });
    sock.once('error', (e) => { clearTimeout(timer); resolve(e.code === 'ECONNREFUSED'); });
  });
}
