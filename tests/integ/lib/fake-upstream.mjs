// A fault-injecting fake OpenAI-compatible upstream (node:http on 127.0.0.1, port 0).
//
// The scenario is chosen by the request body's `model`: `name[:arg[:arg]]`. Unknown names
// behave as `ok`, so a route that renames the model still gets an answer (the log shows the
// model that arrived).
//
//   ok                 5 content chunks, no delay
//   chunks:N[:GAP]     N content chunks, GAP ms apart (default 0)
//   slow-first:MS      nothing at all (not even headers) for MS ms, then like ok
//   stall:N            headers, role chunk, N content chunks, then silence until the peer closes
//                      (non-streaming: headers and half of the JSON body, then silence)
//   hang               never answers; the socket stays open until the peer closes it
//   drop-mid[:N]       headers, role chunk, N (default 3) content chunks, then the socket is
//                      destroyed (non-streaming: half of the JSON body, then destroyed)
//   reset              the socket is destroyed as soon as the request has arrived
//   status-CODE        answers CODE with an OpenAI error body (Retry-After: 7 on 429 and 503)
//   tools              two streamed tool calls, arguments in many fragments, finish tool_calls
//   split-utf8         multi-byte content (accents, CJK, emoji) written split inside characters,
//                      10 ms between writes
//   crlf               like ok, but SSE lines end with \r\n
//   echo               the content is JSON {method, url, headers, body} of the request received
//   big:BYTES          content totalling BYTES in 8 KiB pieces, written as fast as the socket
//                      drains (honours write backpressure; progress in rec.bytesWritten)
//
// Content is deterministic: piece i is `${tag}#${i} ` where tag is the last user message (or
// "hello"), so tests compute the exact expected bytes with expectedClientStream(body).
// Streaming answers use real OpenAI chunk shapes: role on the first delta, an empty-delta chunk
// with finish_reason, and — only when the request asked stream_options.include_usage — a usage
// chunk with `choices: []` before `data: [DONE]`.
//
// Every request is logged (see Record below); waitFor() lets tests wait on a condition instead
// of sleeping.
import { createHash } from 'node:crypto';
import { startScriptedServer } from './scripted-server.mjs';

export const CREATED = 1700000000;
export const FINGERPRINT = 'fp_fake';
export const RETRY_AFTER = '7';

export function parseScenario(model) {
  const parts = String(model ?? 'ok').split(':');
  let name = parts[0];
  const args = parts.slice(1);
  const m = /^status-(\d{3})$/.exec(name);
  if (m) return { name: 'status', args: [Number(m[1])] };
  const known = ['ok', 'chunks', 'slow-first', 'stall', 'hang', 'drop-mid', 'reset', 'tools',
    'split-utf8', 'crlf', 'echo', 'big'];
  if (!known.includes(name)) name = 'ok';
  return { name, args };
}

function lastUserText(body) {
  const msgs = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const c = msgs[i]?.content;
    if (msgs[i]?.role === 'user' && typeof c === 'string' && c.length) return c;
  }
  return 'hello';
}

export function promptTokens(body) {
  return 7 + (JSON.stringify(body?.messages ?? []).length % 50);
}

function idFor(body) {
  return 'chatcmpl-fake-' +
    createHash('md5').update(String(body?.model) + '\0' + lastUserText(body)).digest('hex').slice(0, 16);
}

export function contentPieces(body) {
  const sc = parseScenario(body?.model);
  const tag = lastUserText(body);
  const n = (k) => Array.from({ length: k }, (_, i) => `${tag}#${i} `);
  switch (sc.name) {
    case 'chunks': return n(Number(sc.args[0] ?? 5));
    case 'stall': return n(Number(sc.args[0] ?? 0));
    case 'drop-mid': return n(Number(sc.args[0] ?? 3));
    case 'split-utf8': return ['héllo ', '世界', ' 🌊🚀', ' ñandú ', '数据流 ✓'];
    case 'big': {
      const total = Number(sc.args[0] ?? 1 << 20);
      const out = [];
      for (let off = 0, i = 0; off < total; off += 8192, i++) {
        const len = Math.min(8192, total - off);
        const ch = String.fromCharCode(97 + (i % 26));
        out.push((`${i}:` + ch.repeat(len)).slice(0, len));
      }
      return out;
    }
    default: return n(5);
  }
}

export const TOOL_CALLS = [
  { id: 'call_weather_1', name: 'get_weather', arguments: '{"location":"Paris, France","unit":"celsius"}' },
  { id: 'call_time_2', name: 'get_time', arguments: '{"timezone":"Europe/Paris","format":"24h"}' },
];

function chunkObj(body, delta, finish = null) {
  return {
    id: idFor(body), object: 'chat.completion.chunk', created: CREATED, model: String(body?.model),
    system_fingerprint: FINGERPRINT,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  };
}

function frame(obj, eol = '\n') {
  const data = typeof obj === 'string' ? obj : JSON.stringify(obj);
  return `data: ${data}${eol}${eol}`;
}

export function usageFor(body, completion) {
  const p = promptTokens(body);
  return { prompt_tokens: p, completion_tokens: completion, total_tokens: p + completion };
}

/* The SSE frames (strings) a streaming request gets, in order; `usage` marks the usage frame. */
export function streamFrames(body, reqInfo) {
  const sc = parseScenario(body?.model);
  const eol = sc.name === 'crlf' ? '\r\n' : '\n';
  const frames = [];
  const push = (obj, kind = 'chunk') => frames.push({ kind, text: frame(obj, eol) });
  let completion;
  if (sc.name === 'tools') {
    push(chunkObj(body, {
      role: 'assistant', content: null,
      tool_calls: [{ index: 0, id: TOOL_CALLS[0].id, type: 'function',
        function: { name: TOOL_CALLS[0].name, arguments: '' } }],
    }));
    TOOL_CALLS.forEach((tc, idx) => {
      if (idx > 0) {
        push(chunkObj(body, { tool_calls: [{ index: idx, id: tc.id, type: 'function',
          function: { name: tc.name, arguments: '' } }] }));
      }
      for (let i = 0; i < tc.arguments.length; i += 7) {
        push(chunkObj(body, { tool_calls: [{ index: idx,
          function: { arguments: tc.arguments.slice(i, i + 7) } }] }));
      }
    });
    push(chunkObj(body, {}, 'tool_calls'));
    completion = 23;
  } else {
    let pieces = contentPieces(body);
    if (sc.name === 'echo') pieces = [JSON.stringify(reqInfo ?? {})];
    push(chunkObj(body, { role: 'assistant', content: '', refusal: null }));
    for (const p of pieces) push(chunkObj(body, { content: p }));
    push(chunkObj(body, {}, 'stop'));
    completion = pieces.length;
  }
  if (body?.stream_options?.include_usage) {
    push({
      id: idFor(body), object: 'chat.completion.chunk', created: CREATED, model: String(body?.model),
      system_fingerprint: FINGERPRINT, choices: [], usage: usageFor(body, completion),
    }, 'usage');
  }
  frames.push({ kind: 'done', text: frame('[DONE]', eol) });
  return frames;
}

/* The exact body bytes a client of sluice must receive for a passthrough stream of `clientBody`:
 * sluice asks the upstream for usage itself and forwards the usage chunk only when the client
 * asked for it. For scenarios that end early (stall, drop-mid) this is what the upstream would
 * have sent had it finished. */
export function expectedClientStream(clientBody) {
  const upstreamBody = { ...clientBody, stream_options: { ...(clientBody.stream_options ?? {}), include_usage: true } };
  const want = !!clientBody.stream_options?.include_usage;
  return streamFrames(upstreamBody).filter((f) => want || f.kind !== 'usage').map((f) => f.text).join('');
}

/* The frames a stalled/dropped scenario sends before it stops: role chunk + N content chunks. */
export function expectedPrefix(clientBody) {
  const frames = streamFrames(clientBody);
  return frames.slice(0, 1 + contentPieces(clientBody).length).map((f) => f.text).join('');
}

export function completionFor(body, reqInfo) {
  const sc = parseScenario(body?.model);
  if (sc.name === 'tools') {
    return {
      id: idFor(body), object: 'chat.completion', created: CREATED, model: String(body?.model),
      system_fingerprint: FINGERPRINT,
      choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: null,
        tool_calls: TOOL_CALLS.map((tc) => ({ id: tc.id, type: 'function',
          function: { name: tc.name, arguments: tc.arguments } })) },
      logprobs: null, finish_reason: 'tool_calls' }],
      usage: usageFor(body, 23),
    };
  }
  const pieces = sc.name === 'echo' ? [JSON.stringify(reqInfo ?? {})] : contentPieces(body);
  return {
    id: idFor(body), object: 'chat.completion', created: CREATED, model: String(body?.model),
    system_fingerprint: FINGERPRINT,
    choices: [{ index: 0, message: { role: 'assistant', content: pieces.join(''), refusal: null },
      logprobs: null, finish_reason: 'stop' }],
    usage: usageFor(body, pieces.length),
  };
}

export function errorBodyFor(status) {
  const type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
  return { error: { message: `fake upstream says ${status}`, type, param: null, code: `fake_${status}` } };
}

/* Splits a frame's bytes inside each multi-byte UTF-8 character (after its first byte). */
function splitInsideChars(buf) {
  const cuts = [];
  for (let i = 0; i < buf.length; i++) if (buf[i] >= 0xc0) cuts.push(i + 1);
  const parts = [];
  let prev = 0;
  for (const c of cuts) { parts.push(buf.subarray(prev, c)); prev = c; }
  parts.push(buf.subarray(prev));
  return parts.filter((p) => p.length);
}

/* The steps the server runs for one request. Kinds: head, write, end, hang, destroy. */
export function planFor(body, reqInfo) {
  const sc = parseScenario(body?.model);
  const stream = body?.stream === true;
  const steps = [];
  if (sc.name === 'reset') return [{ kind: 'destroy' }];
  if (sc.name === 'hang') return [{ kind: 'hang' }];
  if (sc.name === 'slow-first') steps.push({ kind: 'sleep', ms: Number(sc.args[0] ?? 1000) });
  if (sc.name === 'status') {
    const status = sc.args[0];
    const text = JSON.stringify(errorBodyFor(status));
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
    if (status === 429 || status === 503) headers['retry-after'] = RETRY_AFTER;
    steps.push({ kind: 'head', status, headers }, { kind: 'write', data: text }, { kind: 'end' });
    return steps;
  }
  if (!stream) {
    const text = JSON.stringify(completionFor(body, reqInfo));
    steps.push({ kind: 'head', status: 200,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } });
    if (sc.name === 'stall' || sc.name === 'drop-mid') {
      steps.push({ kind: 'write', data: text.slice(0, text.length >> 1) },
        { kind: sc.name === 'stall' ? 'hang' : 'destroy' });
      return steps;
    }
    steps.push({ kind: 'write', data: text }, { kind: 'end' });
    return steps;
  }
  steps.push({ kind: 'head', status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache', connection: 'keep-alive' } });
  const frames = streamFrames(body, reqInfo);
  const gap = sc.name === 'chunks' ? Number(sc.args[1] ?? 0) : 0;
  if (sc.name === 'stall' || sc.name === 'drop-mid') {
    const n = contentPieces(body).length;
    for (const f of frames.slice(0, 1 + n)) steps.push({ kind: 'write', data: f.text });
    steps.push({ kind: sc.name === 'stall' ? 'hang' : 'destroy' });
    return steps;
  }
  frames.forEach((f, i) => {
    if (sc.name === 'split-utf8') {
      for (const part of splitInsideChars(Buffer.from(f.text))) {
        steps.push({ kind: 'sleep', ms: 10 }, { kind: 'write', data: part });
      }
      return;
    }
    // chunks:N:GAP spaces the content chunks; role, finish, usage and [DONE] follow at once.
    if (gap && f.kind === 'chunk' && i >= 2 && i <= frames.findLastIndex((x) => x.kind === 'chunk') - 1) {
      steps.push({ kind: 'sleep', ms: gap });
    }
    steps.push({ kind: 'write', data: f.text });
  });
  steps.push({ kind: 'end' });
  return steps;
}

/*
 * The fake on scripted-server.mjs, whose request record (see there) gains: scenario (from the
 * model name) and stream (the request asked for one). Any route but POST …/chat/completions
 * is a 404 in OpenAI's error shape.
 */
export async function startFakeUpstream() {
  const srv = await startScriptedServer((rec) => {
    rec.scenario = parseScenario(rec.body?.model);
    rec.stream = rec.body?.stream === true;
    if (rec.method !== 'POST' || !/\/chat\/completions$/.test(rec.path)) {
      const text = JSON.stringify({ error: { message: 'fake upstream: no such route', type: 'invalid_request_error', param: null, code: null } });
      return [{ kind: 'head', status: 404, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
        { kind: 'write', data: text }, { kind: 'end' }];
    }
    const reqInfo = { method: rec.method, url: rec.url, headers: rec.headers, body: rec.body };
    return planFor(rec.body, reqInfo);
  });
  return { ...srv, baseURL: `http://127.0.0.1:${srv.port}/v1` };
}
