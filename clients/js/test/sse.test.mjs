// The SSE parser and the dialect decoders, no network: every framing case (\n, \r\n, \r, a split
// anywhere, inside a UTF-8 sequence and between \r and \n, comments, multi-line data,
// id/event/retry, BOM, an unterminated last event), at the string level (createSSEParser) and at
// the byte level (readEvents over a Response whose body arrives in pieces); and what streamChat
// makes of answers sluice does not give (through its fetch option).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSSEParser, readEvents, decodeChunk, streamChat, SluiceError } from '../src/sluice-client.js';

function parseAll(pieces) {
  const out = [];
  const feed = createSSEParser((ev) => out.push(ev));
  for (const p of pieces) feed(p);
  feed.end();
  return out;
}

/* A Response whose body arrives as these byte pieces, one per read. */
function responseOf(pieces, onCancel) {
  let i = 0;
  const body = new ReadableStream({
    pull(c) {
      if (i < pieces.length) c.enqueue(pieces[i++]);
      else c.close();
    },
    cancel() { onCancel?.(); },
  }, { highWaterMark: 0 });
  return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
}

async function readAll(pieces) {
  const out = [];
  for await (const ev of readEvents(responseOf(pieces))) out.push(ev);
  return out;
}

const stream = '\uFEFF: keepalive\n\ndata: {"a":1}\r\n\r\nevent: x\rdata: one\rdata: two\r\rid: 7\ndata:\n\n' +
  'retry: 1500\ndata:  lead\n\nretry: soon\ndata: é世🌊\n\ndata\n\nevent: ignored-no-data\n\n: comment\r\ndata: end\r\n\r\n';
const ev = (data, { event = 'message', id = '', retry = null } = {}) => ({ event, data, id, retry });
const expected = [
  ev('{"a":1}'),
  ev('one\ntwo', { event: 'x' }),
  ev('', { id: '7' }),
  ev(' lead', { id: '7', retry: 1500 }),
  ev('é世🌊', { id: '7', retry: 1500 }), /* "retry: soon" is not a number: ignored */
  ev('', { id: '7', retry: 1500 }), /* a bare "data" field is an empty data line */
  ev('end', { id: '7', retry: 1500 }),
];

describe('createSSEParser', () => {
  test('whole stream: \\n, \\r\\n, \\r, comments, multi-line data, id, retry, BOM, no-data event', () => {
    assert.deepEqual(parseAll([stream]), expected);
  });

  test('split at every offset, and one character at a time, gives the same events', () => {
    for (let i = 0; i <= stream.length; i++) {
      assert.deepEqual(parseAll([stream.slice(0, i), stream.slice(i)]), expected, `split at ${i}`);
    }
    assert.deepEqual(parseAll([...stream]), expected);
  });

  test('\\r then \\n in the next piece is one line end, not two (no empty line, no early dispatch)', () => {
    const seen = [];
    const feed = createSSEParser((e) => seen.push(e.data));
    feed('data: a\r');
    feed('\ndata: b\r');
    assert.deepEqual(seen, [], 'nothing dispatched: the \\r\\n pair ended one line');
    feed('\n\r\n');
    assert.deepEqual(seen, ['a\nb']);
  });

  test('an unterminated last event is dropped at the end; a final lone \\r still ends its line', () => {
    assert.deepEqual(parseAll(['data: a\n\ndata: b\n']), [ev('a')]);
    assert.deepEqual(parseAll(['data: a\n\ndata: b']), [ev('a')]);
    assert.deepEqual(parseAll(['data: a\r\r']), [ev('a')], 'the stream\'s last \\r is not waiting for a \\n any more');
  });

  test('a BOM only counts first; event names, ids with NUL and unknown fields', () => {
    assert.deepEqual(parseAll(['data: x\n\n\uFEFFdata: y\n\n']).map((e) => e.data), ['x']); /* "\uFEFFdata" is an unknown field */
    assert.deepEqual(parseAll(['id: a\0b\ndata: x\n\nfoo: bar\nevent: ping\ndata: y\n\n']),
      [ev('x'), ev('y', { event: 'ping' })]);
  });
});

describe('readEvents (bytes)', () => {
  const bytes = new TextEncoder().encode(stream); /* starts with EF BB BF; é, 世, 🌊 are 2, 3, 4 bytes */

  test('split at every byte offset (inside the BOM, inside each UTF-8 sequence, between \\r and \\n)', async () => {
    for (let i = 0; i <= bytes.length; i++) {
      assert.deepEqual(await readAll([bytes.slice(0, i), bytes.slice(i)]), expected, `split at byte ${i}`);
    }
  });

  test('one byte per read', async () => {
    assert.deepEqual(await readAll([...bytes].map((b) => Uint8Array.of(b))), expected);
  });

  test('leaving the loop early cancels the body', async () => {
    let cancelled = false;
    const pieces = Array.from({ length: 50 }, (_, i) => new TextEncoder().encode(`data: ${i}\n\n`));
    const got = [];
    for await (const e of readEvents(responseOf(pieces, () => { cancelled = true; }))) {
      got.push(e.data);
      if (got.length === 2) break;
    }
    assert.deepEqual(got, ['0', '1']);
    assert.equal(cancelled, true);
  });
});

describe('decodeChunk', () => {
  const chunk = (choices, extra = {}) => JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices, ...extra });

  test('openai: text, text and finish in one chunk, role-only, usage, [DONE]', () => {
    assert.deepEqual(decodeChunk('openai', chunk([{ index: 0, delta: { role: 'assistant', content: 'Hello' }, finish_reason: null }])),
      { events: [{ type: 'text', text: 'Hello', choice: 0 }], done: false, error: null });
    assert.deepEqual(decodeChunk('openai', chunk([{ index: 1, delta: { content: ' end' }, finish_reason: 'stop' }])).events,
      [{ type: 'text', text: ' end', choice: 1 }, { type: 'finish', reason: 'stop', choice: 1 }]);
    assert.deepEqual(decodeChunk('openai', chunk([{ index: 0, delta: { role: 'assistant', content: '' } }])).events, []);
    assert.deepEqual(decodeChunk('openai', chunk([], { usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 } })).events,
      [{ type: 'usage', usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 } }]);
    assert.deepEqual(decodeChunk('openai', '[DONE]'), { events: [], done: true, error: null });
  });

  test('openai: tool-call fragments keep index, id and name only where given', () => {
    const first = chunk([{ index: 0, delta: { tool_calls: [{ index: 1, id: 'call_1', type: 'function', function: { name: 'get_time', arguments: '' } }] } }]);
    const next = chunk([{ index: 0, delta: { tool_calls: [{ index: 1, function: { arguments: '{"tz"' } }] } }]);
    assert.deepEqual(decodeChunk('openai', first).events, [{ type: 'tool_call', choice: 0, index: 1, id: 'call_1', name: 'get_time', arguments: '' }]);
    assert.deepEqual(decodeChunk('openai', next).events, [{ type: 'tool_call', choice: 0, index: 1, arguments: '{"tz"' }]);
  });

  test('openai: an error event, and data that is not JSON', () => {
    assert.deepEqual(decodeChunk('openai', '{"error":{"message":"boom","type":"server_error","code":"upstream_disconnected"}}').error,
      { message: 'boom', type: 'server_error', code: 'upstream_disconnected' });
    assert.deepEqual(decodeChunk('openai', 'not json'), { events: [], done: false, error: null });
  });

  test('aichat: {content, done:false}, {done:true}, {error, done:true}', () => {
    assert.deepEqual(decodeChunk('aichat', '{"content":"Hi","done":false}'), { events: [{ type: 'text', text: 'Hi', choice: 0 }], done: false, error: null });
    assert.deepEqual(decodeChunk('aichat', '{"done":true}'), { events: [], done: true, error: null });
    assert.deepEqual(decodeChunk('aichat', '{"error":"nope","done":true}').error, { message: 'nope', type: null, code: null });
  });

  test('an unknown dialect is a TypeError', () => {
    assert.throws(() => decodeChunk('monoai', '{}'), TypeError);
  });
});

describe('streamChat with an injected fetch', () => {
  const enc = new TextEncoder();
  const sse = (text, type = 'text/event-stream') => async () => new Response(responseOf([enc.encode(text)]).body, { headers: { 'content-type': type } });
  async function drain(options) {
    const events = [];
    try {
      for await (const ev of streamChat(options)) events.push(ev);
      return { events, error: null };
    } catch (error) {
      return { events, error };
    }
  }

  test('the request: POST to baseUrl + the dialect\'s path, JSON body, Bearer token, extra headers', async () => {
    const seen = [];
    const fetch = async (url, init) => { seen.push({ url, init }); return sse('data: {"done":true}\n\n')(); };
    await drain({ dialect: 'aichat', baseUrl: 'http://gw.test/', message: 'hi', sessionId: 's', token: 't0k', headers: { 'X-Request-Id': 'r1' }, fetch });
    await drain({ baseUrl: 'http://gw.test', model: 'm', message: 'yo', apiKey: 'k3y', fetch });
    assert.equal(seen[0].url, 'http://gw.test/api/ai-chat/stream');
    assert.equal(seen[0].init.method, 'POST');
    assert.deepEqual(JSON.parse(seen[0].init.body), { message: 'hi', sessionId: 's' });
    assert.equal(seen[0].init.headers.Authorization, 'Bearer t0k');
    assert.equal(seen[0].init.headers['X-Request-Id'], 'r1');
    assert.equal(seen[1].url, 'http://gw.test/v1/chat/completions');
    assert.deepEqual(JSON.parse(seen[1].init.body),
      { model: 'm', messages: [{ role: 'user', content: 'yo' }], stream: true, stream_options: { include_usage: true } });
    assert.equal(seen[1].init.headers.Authorization, 'Bearer k3y');
    assert.ok(seen[1].init.signal instanceof AbortSignal);
  });

  test('a stream that stops before its end marker throws stream_incomplete, after its events', async () => {
    const { events, error } = await drain({ fetch: sse('data: {"choices":[{"index":0,"delta":{"content":"half"}}]}\n\n') });
    assert.deepEqual(events, [{ type: 'text', text: 'half', choice: 0 }]);
    assert.ok(error instanceof SluiceError);
    assert.deepEqual([error.code, error.inStream, error.status], ['stream_incomplete', true, null]);
  });

  test('a 200 that is not an event stream is a SluiceError, not a silent empty answer', async () => {
    const { events, error } = await drain({ fetch: sse('{"choices":[]}', 'application/json') });
    assert.deepEqual(events, []);
    assert.ok(error instanceof SluiceError);
    assert.deepEqual([error.code, error.status], ['not_event_stream', 200]);
  });
});
