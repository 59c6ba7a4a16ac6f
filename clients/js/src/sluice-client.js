// sluice-client.js: a small, dependency-free client for sluice's streaming endpoints, one ES
// module that a browser imports as is (sluice serves it at /sluice-client.js) and that node
// (>= 20) imports from the sluice-client npm package. Types: sluice-client.d.ts beside it.
//
//   import { streamChat, collectChat, useAIStream } from '/sluice-client.js';
//
// - createSSEParser(onEvent): incremental Server-Sent Events parser (\n, \r\n, \r line ends,
//   \r\n split across reads, comments, multi-line data, id/event/retry, BOM); feed.end() at EOF.
// - readEvents(response): async iterator over a fetch Response's SSE events (UTF-8 decoded
//   across reads, so a character split between two reads arrives whole).
// - decodeChunk(dialect, data): one event's data → {events, done, error} for the OpenAI dialect
//   (chat.completion.chunk, [DONE], {"error":{...}}) or seed 003's aichat dialect
//   ({"content","done"}, {"error","done":true}).
// - streamChat(options): an async iterator of ChatEvents ({type:'text'|'tool_call'|'finish'|
//   'usage'}); throws a SluiceError on an HTTP error or an in-stream error, after yielding what
//   came before. Leaving the loop early (break, return, throw) or aborting options.signal aborts
//   the request, and sluice cancels the upstream.
// - collectChat(options, onEvent?): the whole answer {text, toolCalls, finishReason, usage}.
// - useAIStream(options, React): the React hook of seed 003 (text, isStreaming, error,
//   isComplete, startStream, stopStream, reset). React is a parameter (default:
//   globalThis.React), so this file imports nothing and needs no bundler;
//   createUseAIStream(React) binds it once.

/* ---------------- SSE ---------------- */

/*
 * Returns feed(text): call it with each decoded piece of the stream, in order, and feed.end()
 * once the stream is over. onEvent({event, data, id, retry}) runs per dispatched event, as the
 * WHATWG EventSource algorithm defines it: id and retry persist across events, an event with no
 * data line is not dispatched, and an unterminated last event is dropped at the end.
 */
export function createSSEParser(onEvent) {
  let buf = '';
  let scanned = 0; /* buf[0, scanned) holds no line end: no need to look there again */
  let data = null;
  let event = '';
  let id = '';
  let retry = null;
  let first = true;
  const line = (l) => {
    if (l === '') {
      if (data !== null) onEvent({ event: event || 'message', data, id, retry });
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
    else if (field === 'retry' && /^[0-9]+$/.test(value)) retry = Number(value);
  };
  const scan = (atEnd) => {
    let start = 0;
    for (let i = scanned; i < buf.length; i++) {
      const ch = buf.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      /* A \r last in the buffer may be the first half of \r\n: wait for more, unless at EOF. */
      if (ch === 13 && i + 1 === buf.length && !atEnd) {
        buf = buf.slice(start);
        scanned = i - start;
        return;
      }
      line(buf.slice(start, i));
      if (ch === 13 && buf.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    buf = buf.slice(start);
    scanned = buf.length;
  };
  const feed = (text) => {
    if (!text) return;
    buf += text;
    if (first) {
      first = false;
      if (buf[0] === '\uFEFF') buf = buf.slice(1);
    }
    scan(false);
  };
  feed.end = () => {
    scan(true);
    buf = ''; /* an unterminated last line or event is dropped, as EventSource does */
    data = null;
    scanned = 0;
  };
  return feed;
}

/*
 * Yields each SSE event of a fetch Response, bytes decoded as UTF-8 across reads. Leaving the
 * loop early cancels the body.
 */
export async function* readEvents(response) {
  const queue = [];
  const feed = createSSEParser((ev) => queue.push(ev));
  const reader = response.body.getReader();
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true }); /* the parser drops the BOM */
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        feed(decoder.decode());
        feed.end();
      } else {
        feed(decoder.decode(value, { stream: true }));
      }
      while (queue.length) yield queue.shift();
      if (done) return;
    }
  } finally {
    if (!ended) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/* ---------------- errors ---------------- */

/*
 * An error answer from sluice. status: the HTTP status, or null when the error came inside the
 * stream (after a 200). type/code: OpenAI's error.type and error.code (for aichat's NestJS
 * errors, type is its "error" field, e.g. "Unauthorized"). retryAfter: seconds from a
 * Retry-After header, else null.
 */
export class SluiceError extends Error {
  constructor(message, { status = null, type = null, code = null, inStream = false, retryAfter = null } = {}) {
    super(message);
    this.name = 'SluiceError';
    this.status = status;
    this.type = type;
    this.code = code;
    this.inStream = inStream;
    this.retryAfter = retryAfter;
  }
}

async function errorOf(res) {
  const text = await res.text().catch(() => '');
  let message = text.trim() || res.statusText || `HTTP ${res.status}`;
  let type = null;
  let code = null;
  try {
    const j = JSON.parse(text);
    if (j?.error && typeof j.error === 'object') { /* OpenAI */
      message = j.error.message ?? message;
      type = j.error.type ?? null;
      code = j.error.code ?? null;
    } else if (typeof j?.message === 'string') { /* NestJS: {statusCode, message, error} */
      message = j.message;
      if (typeof j.error === 'string') type = j.error;
    } else if (typeof j?.error === 'string') message = j.error;
  } catch { /* not JSON: the text */ }
  const ra = res.headers.get('retry-after');
  const retryAfter = ra && /^\d+$/.test(ra.trim()) ? Number(ra.trim()) : null;
  return new SluiceError(message, { status: res.status, type, code, retryAfter });
}

/* ---------------- dialects ---------------- */

const DIALECTS = ['openai', 'aichat'];

function parseJSON(data) {
  try {
    const j = JSON.parse(data);
    return j && typeof j === 'object' ? j : null;
  } catch {
    return null;
  }
}

function decodeOpenAI(data) {
  const out = { events: [], done: false, error: null };
  if (data === '[DONE]') {
    out.done = true;
    return out;
  }
  const j = parseJSON(data);
  if (!j) return out;
  if (j.error) {
    const e = j.error;
    out.error = typeof e === 'object'
      ? { message: e.message ?? 'stream error', type: e.type ?? null, code: e.code ?? null }
      : { message: String(e), type: null, code: null };
    return out;
  }
  for (const c of Array.isArray(j.choices) ? j.choices : []) {
    const choice = c?.index ?? 0;
    const d = c?.delta ?? {};
    if (typeof d.content === 'string' && d.content) out.events.push({ type: 'text', text: d.content, choice });
    for (const tc of Array.isArray(d.tool_calls) ? d.tool_calls : []) {
      const ev = { type: 'tool_call', choice, index: tc?.index ?? 0, arguments: tc?.function?.arguments ?? '' };
      if (typeof tc?.id === 'string') ev.id = tc.id;
      if (typeof tc?.function?.name === 'string') ev.name = tc.function.name;
      out.events.push(ev);
    }
    if (typeof c?.finish_reason === 'string') out.events.push({ type: 'finish', reason: c.finish_reason, choice });
  }
  if (j.usage && typeof j.usage === 'object') out.events.push({ type: 'usage', usage: j.usage });
  return out;
}

function decodeAichat(data) {
  const out = { events: [], done: false, error: null };
  const j = parseJSON(data);
  if (!j) return out;
  if (j.error !== undefined && j.error !== null && j.error !== false) {
    out.error = { message: typeof j.error === 'string' ? j.error : (j.error.message ?? 'stream error'), type: null, code: null };
    return out;
  }
  if (typeof j.content === 'string' && j.content) out.events.push({ type: 'text', text: j.content, choice: 0 });
  if (j.done === true) out.done = true;
  return out;
}

/* One SSE event's data → {events: ChatEvent[], done, error: {message, type, code} | null}. */
export function decodeChunk(dialect, data) {
  if (dialect === 'openai') return decodeOpenAI(data);
  if (dialect === 'aichat') return decodeAichat(data);
  throw new TypeError(`sluice-client: unknown dialect ${JSON.stringify(dialect)} (openai or aichat)`);
}

/* The URL and JSON body of a streaming request for options (see streamChat). */
function requestOf(o) {
  const base = String(o.baseUrl ?? '').replace(/\/+$/, '');
  const defined = (obj) => Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
  if (o.dialect === 'aichat') {
    const body = o.body ?? defined({ message: o.message, history: o.history, sessionId: o.sessionId });
    return { url: o.url ?? `${base}/api/ai-chat/stream`, body };
  }
  const body = { ...(o.body ?? defined({ model: o.model, messages: [...(o.history ?? []), { role: 'user', content: o.message }] })) };
  body.stream = true;
  if (body.stream_options === undefined) body.stream_options = { include_usage: true };
  return { url: o.url ?? `${base}/v1/chat/completions`, body };
}

/* ---------------- streamChat ---------------- */

/*
 * for await (const ev of streamChat({dialect, baseUrl, body | message, apiKey | token, signal}))
 *
 * Nothing is sent until the loop asks for the first event. The iterator ends after the
 * dialect's end marker ([DONE], {"done":true}); a stream that stops before it throws a
 * SluiceError (code "stream_incomplete"): the answer is not whole. Aborting signal makes the
 * loop throw signal.reason (an AbortError), not a SluiceError.
 */
export async function* streamChat(options = {}) {
  const o = { dialect: 'openai', ...options };
  if (!DIALECTS.includes(o.dialect)) throw new TypeError(`sluice-client: unknown dialect ${JSON.stringify(o.dialect)} (openai or aichat)`);
  const fetchFn = o.fetch ?? globalThis.fetch;
  const { url, body } = requestOf(o);
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...o.headers };
  const bearer = o.apiKey ?? o.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;

  /* Our own controller, so leaving the loop can abort the request whatever the caller passed. */
  const ctrl = new AbortController();
  const follow = () => ctrl.abort(o.signal.reason);
  if (o.signal?.aborted) follow();
  else o.signal?.addEventListener('abort', follow, { once: true });
  let finished = false;
  try {
    const res = await fetchFn(url, { method: 'POST', headers, body: JSON.stringify(body), signal: ctrl.signal });
    if (!res.ok) throw await errorOf(res);
    const type = res.headers.get('content-type') ?? '';
    if (!/^text\/event-stream\b/i.test(type)) {
      throw new SluiceError(`expected an event stream, got ${type || 'no content type'}`, { status: res.status, code: 'not_event_stream' });
    }
    for await (const ev of readEvents(res)) {
      const c = decodeChunk(o.dialect, ev.data);
      if (c.error) throw new SluiceError(c.error.message, { type: c.error.type, code: c.error.code, inStream: true });
      for (const e of c.events) yield e;
      if (c.done) {
        finished = true;
        return;
      }
    }
    throw new SluiceError('the stream ended before the answer was complete', { code: 'stream_incomplete', inStream: true });
  } finally {
    o.signal?.removeEventListener('abort', follow);
    if (!finished) ctrl.abort(); /* break, error or abort: the connection goes, sluice cancels */
  }
}

/*
 * Runs streamChat to its end and resolves with the whole answer: text (choice 0), toolCalls
 * (assembled from their fragments, OpenAI's message shape), finishReason and usage (null when
 * the dialect sends none). onEvent(ev) sees every event on the way.
 */
export async function collectChat(options = {}, onEvent) {
  const out = { text: '', toolCalls: [], finishReason: null, usage: null };
  const calls = new Map();
  for await (const ev of streamChat(options)) {
    onEvent?.(ev);
    if (ev.type === 'usage') out.usage = ev.usage;
    if (ev.choice !== 0) continue;
    if (ev.type === 'text') out.text += ev.text;
    else if (ev.type === 'finish') out.finishReason = ev.reason;
    else if (ev.type === 'tool_call') {
      let tc = calls.get(ev.index);
      if (!tc) {
        tc = { id: '', type: 'function', function: { name: '', arguments: '' } };
        calls.set(ev.index, tc);
      }
      if (ev.id) tc.id = ev.id;
      if (ev.name) tc.function.name += ev.name;
      tc.function.arguments += ev.arguments;
    }
  }
  out.toolCalls = [...calls.entries()].sort((a, b) => a[0] - b[0]).map(([, tc]) => tc);
  return out;
}

/* ---------------- React ---------------- */

const IDLE = Object.freeze({ text: '', isStreaming: false, error: null, isComplete: false });

/* streamChat options for one startStream(request), as useAIStream documents. */
function hookRequest(o, request = {}) {
  const dialect = o.dialect ?? 'aichat';
  const common = {
    dialect, baseUrl: o.baseUrl, url: o.url, apiKey: o.apiKey, token: o.token,
    headers: o.headers, fetch: o.fetch,
  };
  if (dialect === 'aichat') return { ...common, body: request };
  if (Array.isArray(request.messages)) return { ...common, body: { model: o.model, ...request } };
  return { ...common, model: request.model ?? o.model, message: request.message, history: request.history };
}

/*
 * const { text, isStreaming, error, isComplete, startStream, stopStream, reset } =
 *   useAIStream({ onChunk, onComplete, onError, dialect, baseUrl, token | apiKey, model }, React);
 *
 * Seed 003's hook. startStream({message, history, sessionId, ...}) streams an answer (dialect
 * 'aichat', the default: the request is the body of POST /api/ai-chat/stream; 'openai':
 * message and history become messages for options.model, or pass an OpenAI body with
 * messages) and resolves with the whole text, or null if it was stopped or failed.
 * onChunk(chunk) runs per text delta, onComplete(fullText) at the end, onError(message, err) on
 * failure; error is that message (a string). stopStream() aborts the request (sluice then
 * cancels the upstream): a stopped stream keeps its text, is neither an error nor complete.
 * A new startStream() stops the previous one; reset() stops and clears; unmounting stops.
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
    const mine = () => active.current === ctrl; /* false once stopped, reset or superseded */
    let text = '';
    try {
      for await (const ev of streamChat({ ...hookRequest(opts.current, request), signal: ctrl.signal })) {
        if (!mine()) return null;
        if (ev.type !== 'text' || ev.choice !== 0) continue;
        text += ev.text;
        const now = text;
        setState((s) => ({ ...s, text: now }));
        opts.current.onChunk?.(ev.text);
      }
      if (!mine()) return null;
      active.current = null;
      setState({ text, isStreaming: false, error: null, isComplete: true });
      opts.current.onComplete?.(text);
      return text;
    } catch (e) {
      if (!mine()) return null; /* stopped on purpose: not an error */
      active.current = null;
      const message = e?.message ?? String(e);
      setState((s) => ({ ...s, isStreaming: false, error: message }));
      opts.current.onError?.(message, e);
      return null;
    }
  }, []);

  useEffect(() => () => {
    active.current?.abort();
    active.current = null;
  }, []);

  return { ...state, startStream, stopStream, reset };
}

/* useAIStream with React bound once: const useAIStream = createUseAIStream(React). */
export function createUseAIStream(React) {
  if (!React?.useState) throw new TypeError('createUseAIStream(React): pass React');
  return (options) => useAIStream(options, React);
}
