// sluice-client.js: a small, dependency-free client for sluice's streaming endpoints.
//
//   import { streamChat, useAIStream } from '/sluice-client.js';
//
// - createSSEParser(onEvent): incremental Server-Sent Events parser (\n, \r\n, \r line ends,
//   multi-line data, comments, events split across reads).
// - readEvents(response): async iterator over a fetch Response's SSE events.
// - parseChunk(data): one event's data → {content?, done?, error?}, whichever dialect sent it:
//   OpenAI chunks (choices[0].delta.content, [DONE], {"error":{...}}), seed 003's
//   {"content","done"} / {"error","done":true}, seed 000's {"type":"chunk"|"end"|"error"}.
// - streamChat({url, body, apiKey, headers, signal, onChunk, fetch}): POSTs body, streams the
//   answer, resolves with the full text; rejects with a SluiceError on an HTTP or in-stream error.
// - useAIStream(options, React): the React hook of seed 003 (text, isStreaming, error,
//   isComplete, startStream, stopStream, reset). React is a parameter (default:
//   globalThis.React), so this file needs no bundler and no import of 'react'.

/* ---------------- SSE ---------------- */

export function createSSEParser(onEvent) {
  let buf = '';
  let data = null;
  let event = '';
  let id = '';
  let first = true;
  const line = (l) => {
    if (l === '') {
      if (data !== null) onEvent({ event: event || 'message', data, id });
      data = null;
      event = '';
      return;
    }
    if (l[0] === ':') return; /* comment, e.g. ": keepalive" */
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') data = data === null ? value : `${data}\n${value}`;
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
  };
  return (text) => {
    buf += text;
    if (first && buf.length) {
      first = false;
      if (buf[0] === '\uFEFF') buf = buf.slice(1);
    }
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const ch = buf.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      if (ch === 13 && i + 1 === buf.length) break; /* maybe the first half of \r\n: wait */
      line(buf.slice(start, i));
      if (ch === 13 && buf.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    buf = buf.slice(start);
  };
}

/* Yields each SSE event of a fetch Response (bytes decoded as UTF-8 across reads). */
export async function* readEvents(response) {
  const queue = [];
  const feed = createSSEParser((ev) => queue.push(ev));
  const reader = response.body.getReader();
  const decoder = new TextDecoder('utf-8');
  try {
    for (;;) {
      const { value, done } = await reader.read();
      feed(done ? decoder.decode() : decoder.decode(value, { stream: true }));
      while (queue.length) yield queue.shift();
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/* ---------------- events ---------------- */

export class SluiceError extends Error {
  constructor(message, { status = 0, type = null, code = null, inStream = false } = {}) {
    super(message);
    this.name = 'SluiceError';
    this.status = status;
    this.type = type;
    this.code = code;
    this.inStream = inStream;
  }
}

/* One event's data, whatever the dialect, as {content?, done?, error?: {message, type, code}}. */
export function parseChunk(data) {
  if (data === '[DONE]') return { done: true };
  let j;
  try { j = JSON.parse(data); } catch { return {}; }
  if (!j || typeof j !== 'object') return {};
  if (j.error !== undefined && j.error !== null && j.error !== false) {
    const e = j.error;
    return typeof e === 'string'
      ? { error: { message: e, type: null, code: null }, done: true }
      : { error: { message: e.message ?? 'stream error', type: e.type ?? null, code: e.code ?? null }, done: true };
  }
  if (Array.isArray(j.choices)) { /* OpenAI chunk; [DONE] ends the stream */
    const c = j.choices[0]?.delta?.content;
    return typeof c === 'string' && c ? { content: c } : {};
  }
  if (j.type === 'chunk') return { content: j.content ?? '' };
  if (j.type === 'end' || j.type === 'complete') return { done: true };
  if (j.type === 'error') return { error: { message: String(j.error ?? 'stream error'), type: null, code: null }, done: true };
  const out = {};
  if (typeof j.content === 'string' && j.content) out.content = j.content;
  if (j.done === true) out.done = true;
  return out;
}

async function errorOf(res) {
  const text = await res.text().catch(() => '');
  let message = text.trim() || res.statusText || `HTTP ${res.status}`;
  let type = null;
  let code = null;
  try {
    const j = JSON.parse(text);
    if (j?.error && typeof j.error === 'object') {
      message = j.error.message ?? message;
      type = j.error.type ?? null;
      code = j.error.code ?? null;
    } else if (typeof j?.message === 'string') message = j.message;
    else if (typeof j?.error === 'string') message = j.error;
  } catch { /* not JSON: the text */ }
  return new SluiceError(message, { status: res.status, type, code });
}

/*
 * POSTs body to url and streams the answer. A body for an OpenAI-style endpoint
 * (".../chat/completions") gets stream: true unless it says otherwise. onChunk(delta, text) runs
 * per content delta. Resolves with the whole text once the stream ended properly; a stream
 * that stops without its end event rejects (the answer is incomplete).
 */
export async function streamChat({ url = '/v1/chat/completions', body, apiKey, headers = {}, signal, onChunk,
  fetch: fetchFn = globalThis.fetch } = {}) {
  const payload = /\/chat\/completions$/.test(url) && body && body.stream === undefined ? { ...body, stream: true } : body;
  const h = { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...headers };
  if (apiKey) h.Authorization = `Bearer ${apiKey}`;
  const res = await fetchFn(url, { method: 'POST', headers: h, body: JSON.stringify(payload ?? {}), signal });
  if (!res.ok) throw await errorOf(res);
  let text = '';
  for await (const ev of readEvents(res)) {
    const c = parseChunk(ev.data);
    if (c.error) throw new SluiceError(c.error.message, { type: c.error.type, code: c.error.code, inStream: true });
    if (c.content) {
      text += c.content;
      onChunk?.(c.content, text);
    }
    if (c.done) return text;
  }
  throw new SluiceError('the stream ended before the answer was complete', { inStream: true });
}

/* ---------------- React ---------------- */

const IDLE = Object.freeze({ text: '', isStreaming: false, error: null, isComplete: false });

/*
 * const { text, isStreaming, error, isComplete, startStream, stopStream, reset } =
 *   useAIStream({ endpoint, apiKey | token, headers, onChunk, onComplete, onError }, React);
 *
 * startStream(request) POSTs request (default endpoint: seed 003's /api/ai-chat/stream, body
 * {message, history, sessionId, ...}; for /v1/chat/completions pass an OpenAI body) and
 * resolves with the text once done. stopStream() aborts the request (sluice then cancels the
 * upstream); a stopped stream keeps its text and is neither an error nor complete. A new
 * startStream() stops the previous one. Unmounting stops the stream. error is a string.
 */
export function useAIStream(options = {}, React = globalThis.React) {
  if (!React?.useState) throw new TypeError('useAIStream(options, React): pass React (or set globalThis.React)');
  const { useState, useRef, useCallback, useEffect } = React;
  const [state, setState] = useState(IDLE);
  const active = useRef(null); /* AbortController of the stream in flight */
  const opts = useRef(options);
  opts.current = options;

  const stopStream = useCallback(() => {
    const c = active.current;
    if (!c) return;
    active.current = null;
    c.abort();
    setState((s) => ({ ...s, isStreaming: false }));
  }, []);

  const reset = useCallback(() => {
    const c = active.current;
    active.current = null;
    c?.abort();
    setState(IDLE);
  }, []);

  const startStream = useCallback(async (request) => {
    active.current?.abort();
    const ctrl = new AbortController();
    active.current = ctrl;
    setState({ text: '', isStreaming: true, error: null, isComplete: false });
    const o = opts.current;
    const mine = () => active.current === ctrl; /* false once stopped, reset or superseded */
    try {
      const text = await streamChat({
        url: o.endpoint ?? '/api/ai-chat/stream',
        body: request,
        apiKey: o.apiKey ?? o.token,
        headers: o.headers,
        fetch: o.fetch,
        signal: ctrl.signal,
        onChunk: (chunk, all) => {
          if (!mine()) return;
          setState((s) => ({ ...s, text: all }));
          opts.current.onChunk?.(chunk);
        },
      });
      if (!mine()) return text;
      active.current = null;
      setState({ text, isStreaming: false, error: null, isComplete: true });
      opts.current.onComplete?.(text);
      return text;
    } catch (e) {
      if (!mine()) return undefined; /* stopped on purpose: not an error */
      active.current = null;
      const message = e?.message ?? String(e);
      setState((s) => ({ ...s, isStreaming: false, error: message }));
      opts.current.onError?.(message);
      return undefined;
    }
  }, []);

  useEffect(() => () => { active.current?.abort(); active.current = null; }, []);

  return { ...state, startStream, stopStream, reset };
}
