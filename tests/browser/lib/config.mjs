// The sluice these tests run: the mock provider as the brief's page sees it (ttft 50ms,
// 100 tokens/s, 30 tokens) behind model "any" (the page's default), a slow mock for Stop,
// the fake upstream for an in-stream error, and no "*" route, so an unknown model is a 404.
// With a page upstream (startPageUpstream) also "markdown" (an answer with a code block) and
// "flaky" (fails when told to, for Retry).
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { completionFor, errorBodyFor, streamFrames } from '../../integ/lib/fake-upstream.mjs';

export function browserConfig(up, page = null) {
  return {
    listen: '127.0.0.1:0',
    workers: 2,
    timeouts: { connect: '2s', first_byte: '5s', idle: '5s', drain: '5s' },
    providers: {
      mock: { type: 'mock', ttft: '50ms', tokens_per_s: 100, tokens: 30 },
      slow: { type: 'mock', ttft: '50ms', tokens_per_s: 20, tokens: 400 },
      ...(up ? { fake: { type: 'openai', base_url: `http://127.0.0.1:${up.port}/v1`, api_key: 'sk-upstream-xyz' } } : {}),
      // The breaker is off: the Retry tests fail this provider on purpose.
      ...(page ? { page: { type: 'openai', base_url: `http://127.0.0.1:${page.port}/v1`, api_key: 'sk-upstream-xyz', breaker: { failures: 0 } } } : {}),
    },
    models: {
      any: [{ provider: 'mock' }],
      slow: [{ provider: 'slow' }],
      ...(up ? { 'drop-mid*': [{ provider: 'fake' }] } : {}),
      // No retries by sluice: a failure must reach the page, whose Retry is under test.
      ...(page ? { markdown: [{ provider: 'page' }], flaky: [{ provider: 'page', retries: 0 }] } : {}),
    },
    dialects: { aichat: { model: 'any' } },
  };
}

/* The mock's whole answer, as sluice's non-streaming endpoint gives it. */
export async function mockAnswer(sl, model = 'any') {
  const r = await fetch(`${sl.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  if (!r.ok) throw new Error(`mock answer: HTTP ${r.status}`);
  return (await r.json()).choices[0].message.content;
}

/* The code block of MARKDOWN_ANSWER, as its <code> element's text. */
export const MARKDOWN_CODE = `from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")
stream = client.chat.completions.create(
    model="any", stream=True,
    messages=[{"role": "user", "content": "Hello"}])
for chunk in stream:
    print(chunk.choices[0].delta.content or "", end="")
`;

/* What model "markdown" answers: a paragraph, a list and a fenced code block. */
export const MARKDOWN_ANSWER = `**sluice** is a streaming gateway: your apps speak the OpenAI API to it, and it relays each answer *token by token* from the provider the model is routed to.

- one binary and one YAML file
- fallback, retries and rate limits per key
- **Stop** here cancels the upstream request at once

Point any OpenAI client at it:

\`\`\`python
${MARKDOWN_CODE}\`\`\`
`;

/* Its streamed pieces (a word and the space after it), and the token count its usage reports:
 * more than the chunks, as a real tokenizer would, so the page must prefer usage. */
export const MARKDOWN_PIECES = MARKDOWN_ANSWER.match(/\s*\S+|\s+$/g);
export const MARKDOWN_TOKENS = Math.ceil(MARKDOWN_ANSWER.length / 4);
const GAP_MS = 8; /* between pieces: the answer visibly streams */

function sse(res, obj) {
  return new Promise((resolve) => res.write(`data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`, resolve));
}

function chunk(body, delta, finish = null) {
  return { id: 'chatcmpl-page', object: 'chat.completion.chunk', created: 1700000000, model: String(body.model),
    choices: [{ index: 0, delta, finish_reason: finish }] };
}

async function streamMarkdown(body, res) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  await sse(res, chunk(body, { role: 'assistant', content: '' }));
  for (const p of MARKDOWN_PIECES) {
    await sleep(GAP_MS);
    if (res.destroyed) return;
    await sse(res, chunk(body, { content: p }));
  }
  await sse(res, chunk(body, {}, 'stop'));
  if (body.stream_options?.include_usage) {
    await sse(res, { ...chunk(body, {}), choices: [],
      usage: { prompt_tokens: 12, completion_tokens: MARKDOWN_TOKENS, total_tokens: 12 + MARKDOWN_TOKENS } });
  }
  await sse(res, '[DONE]');
  res.end();
}

function json(res, status, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/*
 * A small OpenAI-compatible upstream for what the mock cannot do. Model "markdown" answers
 * MARKDOWN_ANSWER; any other model answers like the fake upstream's `ok`, unless a failure was
 * queued with failNext(): 'status' is an HTTP 503 before any byte of answer, 'drop' sends two
 * content chunks and then destroys the socket (an error inside the stream). requests: the bodies
 * received, in order.
 */
export async function startPageUpstream() {
  const requests = [];
  const failures = [];
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', async () => {
      let body = null;
      try { body = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { /* below */ }
      if (!body || req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
        json(res, 404, { error: { message: 'page upstream: no such route', type: 'invalid_request_error' } });
        return;
      }
      const fail = body.model === 'markdown' ? null : failures.shift() ?? null;
      requests.push({ body, fail });
      if (fail === 'status') { json(res, 503, errorBodyFor(503)); return; }
      if (body.model === 'markdown' && body.stream) { await streamMarkdown(body, res); return; }
      if (body.model === 'markdown') {
        json(res, 200, { ...completionFor(body), choices: [{ index: 0, message: { role: 'assistant', content: MARKDOWN_ANSWER }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 12, completion_tokens: MARKDOWN_TOKENS, total_tokens: 12 + MARKDOWN_TOKENS } });
        return;
      }
      if (!body.stream) { json(res, 200, completionFor(body)); return; }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const frames = streamFrames(body);
      // 'drop': the role chunk and two content chunks, then the connection is cut.
      for (const f of fail === 'drop' ? frames.slice(0, 3) : frames) await new Promise((r) => res.write(f.text, r));
      if (fail === 'drop') res.socket?.destroy();
      else res.end();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    requests,
    failNext(kind) { failures.push(kind); },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
