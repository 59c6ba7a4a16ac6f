// A fake Azure OpenAI upstream (node:http on 127.0.0.1, port 0), written from Azure's public
// REST reference: POST /openai/deployments/{deployment}/chat/completions?api-version=V with an
// `api-key` header.
//
//   - a missing or wrong api-key → 401 {"error":{"code":"401","message":"Access denied ..."}}
//   - no api-version query parameter, or any other path → 404 {"error":{"code":"404",
//     "message":"Resource not found"}}
//   - streaming answers are OpenAI chunks with Azure's extras: a first chunk with `choices: []`
//     and `prompt_filter_results` (empty id, model and object), `content_filter_results` on
//     every choice, keys in alphabetical order; a usage chunk (`choices: []`) only when
//     stream_options.include_usage was asked; then `data: [DONE]`
//   - errors are Azure's {"error":{"code","message"}} (no type, no param)
//
// The scenario is chosen by the deployment name (URL-decoded), or by an `x-fake-scenario`
// request header when present (for driving the fake directly):
//
//   ok                 5 content chunks at once (unknown names behave as ok)
//   chunks:N[:GAP]     N content chunks, GAP ms apart
//   slow-first:MS      nothing at all for MS ms, then like ok
//   hang               never answers
//   drop-mid[:N]       headers, prompt-filter chunk, role chunk, N (3) content chunks, socket destroyed
//   reset              socket destroyed as soon as the request arrived
//   tools              two streamed tool calls (TOOL_CALLS of fake-upstream.mjs), finish tool_calls
//   filtered           2 content chunks, then finish_reason content_filter
//   echo               the content is the JSON of the request received {method, url, headers, body}
//   status-CODE[:RA]   HTTP CODE with an Azure error body; 429 and 503 carry Retry-After RA (7)
//   nostream-CODE      streaming requests get CODE (400: "streaming is not supported"); a
//                      non-streaming request is answered like ok
//
// Content piece i is `${lastUserMessage}#${i} ` (as in fake-upstream.mjs), so tests know the
// exact text. Every request is logged like fake-upstream.mjs (plus path, query, deployment);
// waitFor() waits on the log instead of sleeping.
//
// It runs on scripted-server.mjs (re-exported here for the tests that script their own).
import { createHash } from 'node:crypto';
import { TOOL_CALLS, CREATED } from './fake-upstream.mjs';
import { startScriptedServer } from './scripted-server.mjs';

export { startScriptedServer };

export const AZURE_KEY = 'az-key-5f1c9e0d7a2b4c6e';
export const AZURE_MODEL = 'gpt-4o-2024-08-06';
export const AZURE_FINGERPRINT = 'fp_azure_fake';
export const AZURE_RETRY_AFTER = '7';
export { TOOL_CALLS, CREATED };

/* ---------------- Azure ---------------- */

export function parseAzureScenario(name) {
  const parts = String(name ?? 'ok').split(':');
  const args = parts.slice(1);
  let m = /^status-(\d{3})$/.exec(parts[0]);
  if (m) return { name: 'status', args: [Number(m[1]), args[0] ?? AZURE_RETRY_AFTER] };
  m = /^nostream-(\d{3})$/.exec(parts[0]);
  if (m) return { name: 'nostream', args: [Number(m[1])] };
  const known = ['ok', 'chunks', 'slow-first', 'hang', 'drop-mid', 'reset', 'tools', 'filtered', 'echo'];
  return { name: known.includes(parts[0]) ? parts[0] : 'ok', args };
}

export function lastUserText(body) {
  const msgs = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const c = msgs[i]?.content;
    if (msgs[i]?.role !== 'user') continue;
    if (typeof c === 'string' && c.length) return c;
    if (Array.isArray(c)) {
      const t = c.filter((p) => p?.type === 'text').map((p) => p.text).join('');
      if (t) return t;
    }
  }
  return 'hello';
}

/* The content pieces the deployment `deployment` answers to `body`. */
export function azurePieces(deployment, body, reqInfo) {
  const sc = parseAzureScenario(deployment);
  const tag = lastUserText(body);
  const n = (k) => Array.from({ length: k }, (_, i) => `${tag}#${i} `);
  switch (sc.name) {
    case 'chunks': return n(Number(sc.args[0] ?? 5));
    case 'drop-mid': return n(Number(sc.args[0] ?? 3));
    case 'filtered': return n(2);
    case 'echo': return [JSON.stringify(reqInfo ?? {})];
    default: return n(5);
  }
}

export function azurePromptTokens(body) {
  return 11 + (JSON.stringify(body?.messages ?? []).length % 40);
}

/* The usage Azure reports for `body` sent to `deployment`. */
export function azureUsage(deployment, body) {
  const sc = parseAzureScenario(deployment);
  const completion = sc.name === 'tools' ? 29 : 3 * azurePieces(deployment, body).length + 1;
  const prompt = azurePromptTokens(body);
  return { completion_tokens: completion, prompt_tokens: prompt, total_tokens: prompt + completion };
}

const SAFE = { filtered: false, severity: 'safe' };
const FILTER_RESULTS = { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE };

export function azureId(deployment, body) {
  return 'chatcmpl-az' + createHash('md5').update(`${deployment}\0${lastUserText(body)}`).digest('hex').slice(0, 20);
}

function chunk(deployment, body, choice) {
  return {
    choices: [{ content_filter_results: {}, finish_reason: null, index: 0, logprobs: null, ...choice }],
    created: CREATED, id: azureId(deployment, body), model: AZURE_MODEL,
    object: 'chat.completion.chunk', system_fingerprint: AZURE_FINGERPRINT,
  };
}

const sse = (obj) => `data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`;

/* The SSE frames of a streaming answer: [{kind: 'filter'|'role'|'content'|'finish'|'usage'|'done', text}]. */
export function azureStreamFrames(deployment, body, reqInfo) {
  const sc = parseAzureScenario(deployment);
  const frames = [];
  const push = (kind, obj) => frames.push({ kind, text: sse(obj) });
  push('filter', {
    choices: [], created: 0, id: '', model: '', object: '',
    prompt_filter_results: [{ prompt_index: 0, content_filter_results: FILTER_RESULTS }],
  });
  if (sc.name === 'tools') {
    TOOL_CALLS.forEach((tc, idx) => {
      const head = { tool_calls: [{ function: { arguments: '', name: tc.name }, id: tc.id, index: idx, type: 'function' }] };
      push(idx === 0 ? 'role' : 'content', chunk(deployment, body, {
        delta: idx === 0 ? { content: null, refusal: null, role: 'assistant', ...head } : head,
      }));
      for (let i = 0; i < tc.arguments.length; i += 6) {
        push('content', chunk(deployment, body, {
          delta: { tool_calls: [{ function: { arguments: tc.arguments.slice(i, i + 6) }, index: idx }] },
        }));
      }
    });
    push('finish', chunk(deployment, body, { delta: {}, finish_reason: 'tool_calls' }));
  } else {
    push('role', chunk(deployment, body, { delta: { content: '', refusal: null, role: 'assistant' } }));
    for (const p of azurePieces(deployment, body, reqInfo)) {
      push('content', chunk(deployment, body, { content_filter_results: FILTER_RESULTS, delta: { content: p } }));
    }
    push('finish', chunk(deployment, body, { delta: {}, finish_reason: sc.name === 'filtered' ? 'content_filter' : 'stop' }));
  }
  if (body?.stream_options?.include_usage) {
    frames.push({ kind: 'usage', text: sse({
      choices: [], created: CREATED, id: azureId(deployment, body), model: AZURE_MODEL,
      object: 'chat.completion.chunk', system_fingerprint: AZURE_FINGERPRINT, usage: azureUsage(deployment, body),
    }) });
  }
  frames.push({ kind: 'done', text: sse('[DONE]') });
  return frames;
}

/* The non-streaming chat.completion Azure answers. */
export function azureCompletion(deployment, body, reqInfo) {
  const sc = parseAzureScenario(deployment);
  const message = sc.name === 'tools'
    ? { content: null, refusal: null, role: 'assistant',
      tool_calls: TOOL_CALLS.map((tc) => ({ function: { arguments: tc.arguments, name: tc.name }, id: tc.id, type: 'function' })) }
    : { content: azurePieces(deployment, body, reqInfo).join(''), refusal: null, role: 'assistant' };
  return {
    choices: [{ content_filter_results: FILTER_RESULTS,
      finish_reason: sc.name === 'tools' ? 'tool_calls' : sc.name === 'filtered' ? 'content_filter' : 'stop',
      index: 0, logprobs: null, message }],
    created: CREATED, id: azureId(deployment, body), model: AZURE_MODEL, object: 'chat.completion',
    prompt_filter_results: [{ prompt_index: 0, content_filter_results: FILTER_RESULTS }],
    system_fingerprint: AZURE_FINGERPRINT, usage: azureUsage(deployment, body),
  };
}

/* Azure's error body for a status. */
export function azureError(status, { apiVersion = '2024-06-01', retryAfter = AZURE_RETRY_AFTER } = {}) {
  switch (status) {
    case 401: return { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.' } };
    case 404: return { error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.' } };
    case 429: return { error: { code: '429', message: `Requests to the ChatCompletions_Create Operation under Azure OpenAI API version ${apiVersion} have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after ${retryAfter} seconds.` } };
    case 400: return { error: { code: 'BadRequest', message: 'fake azure says 400' } };
    case 500: return { error: { code: 'InternalServerError', message: 'The server had an error while processing your request. Sorry about that!' } };
    case 503: return { error: { code: 'ServiceUnavailable', message: 'The service is temporarily unable to process your request. Please try again later.' } };
    default: return { error: { code: String(status), message: `fake azure says ${status}` } };
  }
}

function jsonSteps(status, obj, headers = {}) {
  const text = JSON.stringify(obj);
  return [{ kind: 'head', status, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text),
    'apim-request-id': 'fake-apim', ...headers } }, { kind: 'write', data: text }, { kind: 'end' }];
}

/* Starts the fake. apiKey: the key it accepts. */
export async function startFakeAzure({ apiKey = AZURE_KEY } = {}) {
  const srv = await startScriptedServer((rec) => {
    const m = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(rec.path);
    rec.deployment = m ? decodeURIComponent(m[1]) : null;
    rec.stream = rec.body?.stream === true;
    rec.apiVersion = rec.query['api-version'] ?? null;
    rec.scenario = parseAzureScenario(rec.headers['x-fake-scenario'] ?? rec.deployment);
    // Azure checks the key first, then the route.
    if (rec.headers['api-key'] !== apiKey) return jsonSteps(401, azureError(401));
    if (!m || rec.method !== 'POST' || !rec.apiVersion) {
      return jsonSteps(404, { error: { code: '404', message: 'Resource not found' } });
    }
    if (rec.body === null || typeof rec.body !== 'object' || !Array.isArray(rec.body.messages)) {
      return jsonSteps(400, { error: { code: 'BadRequest', message: "'messages' is a required property" } });
    }
    const dep = rec.headers['x-fake-scenario'] ?? rec.deployment;
    const sc = rec.scenario;
    const body = rec.body;
    const reqInfo = { method: rec.method, url: rec.url, headers: rec.headers, body };
    if (sc.name === 'reset') return [{ kind: 'destroy' }];
    if (sc.name === 'hang') return [{ kind: 'hang' }];
    const steps = [];
    if (sc.name === 'slow-first') steps.push({ kind: 'sleep', ms: Number(sc.args[0] ?? 1000) });
    if (sc.name === 'status') {
      const [status, ra] = sc.args;
      const headers = status === 429 || status === 503 ? { 'retry-after': String(ra) } : {};
      return [...steps, ...jsonSteps(status, azureError(status, { apiVersion: rec.apiVersion, retryAfter: ra }), headers)];
    }
    if (sc.name === 'nostream' && rec.stream) {
      const status = sc.args[0];
      const err = status === 400
        ? { error: { code: 'OperationNotSupported', message: 'The chatCompletion operation does not support streaming with this deployment.' } }
        : azureError(status);
      return jsonSteps(status, err);
    }
    if (!rec.stream) {
      const text = JSON.stringify(azureCompletion(dep, body, reqInfo));
      steps.push(...jsonSteps(200, JSON.parse(text)));
      if (sc.name === 'drop-mid') {
        steps.splice(-2, 2, { kind: 'write', data: text.slice(0, text.length >> 1) }, { kind: 'destroy' });
      }
      return steps;
    }
    steps.push({ kind: 'head', status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache', 'apim-request-id': 'fake-apim' } });
    const frames = azureStreamFrames(dep, body, reqInfo);
    if (sc.name === 'drop-mid') {
      const n = azurePieces(dep, body).length;
      for (const f of frames.slice(0, 2 + n)) steps.push({ kind: 'write', data: f.text });
      steps.push({ kind: 'destroy' });
      return steps;
    }
    const gap = sc.name === 'chunks' ? Number(sc.args[1] ?? 0) : 0;
    let contentSeen = 0;
    for (const f of frames) {
      if (gap && f.kind === 'content' && contentSeen++ > 0) steps.push({ kind: 'sleep', ms: gap });
      steps.push({ kind: 'write', data: f.text });
    }
    steps.push({ kind: 'end' });
    return steps;
  });
  return { ...srv, baseURL: `http://127.0.0.1:${srv.port}`, apiKey };
}
