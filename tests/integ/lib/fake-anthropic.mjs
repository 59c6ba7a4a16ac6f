// A fake Anthropic Messages API (node:http on 127.0.0.1, port 0), written from Anthropic's public
// API reference: POST /v1/messages with `x-api-key` and `anthropic-version` headers.
//
// It validates requests the way the real API does, so a 200 means sluice's translation was
// acceptable, and the log keeps the body for exact assertions:
//   - a missing or wrong x-api-key → 401 authentication_error; no anthropic-version → 400
//   - model (string), max_tokens (integer ≥ 1) and messages (non-empty array) are required
//   - message roles are only "user" and "assistant" (a "system" role is a 400 telling to use the
//     top-level `system`); content is a non-empty string or an array of blocks (text, image,
//     tool_use {id, name, input object}, tool_result {tool_use_id, content}); consecutive turns
//     of one role are combined, then every tool_use must be answered by a tool_result in the
//     next turn, and every tool_result must answer a tool_use of the turn before
//   - system: string or array of text blocks; tools: [{name, description?, input_schema:
//     {type: "object", ...}}]; tool_choice: {type: auto|any|tool|none} (tool needs name);
//     stop_sequences: array of strings; temperature 0..1
//   - any other top-level field (stream_options, n, stop, tool_choice as a string, ...) →
//     400 "<field>: Extra inputs are not permitted"
// Errors are {"type":"error","error":{"type","message"},"request_id"}.
//
// The scenario is the request's `model`, `name[:arg[:arg]]` (unknown names behave as text):
//
//   text               5 text deltas, stop_reason end_turn
//   chunks:N[:GAP]     N text deltas, GAP ms apart
//   tools              a text block ("Let me look that up."), then two tool_use blocks (the
//                      TOOL_CALLS of fake-upstream.mjs) whose input arrives as input_json_delta
//                      fragments; stop_reason tool_use
//   max-tokens         3 text deltas, stop_reason max_tokens
//   overloaded         HTTP 529 overloaded_error
//   status-CODE[:RA]   HTTP CODE with the matching error type; 429 carries Retry-After RA (7)
//   error-mid[:N]      N (2) text deltas, then `event: error` overloaded_error, then the end
//   drop-mid[:N]       N (2) text deltas, then the socket is destroyed
//   slow-first:MS      nothing at all for MS ms, then like text
//   hang               never answers
//   echo               the text is the JSON of the request received {method, url, headers, body}
//   nostream-CODE      streaming requests get CODE; non-streaming ones are answered like text
//
// Text delta i is `${lastUserText}#${i} `. Usage: input_tokens = inputTokens(lastUserText),
// output_tokens = outputTokens(pieces) (message_start says output_tokens 1; message_delta carries
// the final, cumulative count, as the real API does).
import { createHash } from 'node:crypto';
import { TOOL_CALLS } from './fake-upstream.mjs';
import { lastUserText } from './fake-azure.mjs';
import { startScriptedServer } from './scripted-server.mjs';

export const ANTHROPIC_KEY = 'sk-ant-fake-0a1b2c3d4e5f';
export const ANTHROPIC_VERSION = '2023-06-01';
export const ANTHROPIC_RETRY_AFTER = '7';
export const TOOLS_TEXT = 'Let me look that up.';
export const ANTHROPIC_TOOL_IDS = ['toolu_01WeatherFake', 'toolu_02TimeFake'];
export { TOOL_CALLS, lastUserText };

/* The tool calls the `tools` scenario makes, with Anthropic ids. */
export const ANTHROPIC_TOOL_CALLS = TOOL_CALLS.map((tc, i) => ({ ...tc, id: ANTHROPIC_TOOL_IDS[i], input: JSON.parse(tc.arguments) }));

const ALLOWED_FIELDS = new Set(['model', 'messages', 'max_tokens', 'system', 'metadata', 'stop_sequences',
  'stream', 'temperature', 'top_p', 'top_k', 'tools', 'tool_choice', 'thinking', 'service_tier']);

const ERROR_TYPES = { 400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error',
  404: 'not_found_error', 413: 'request_too_large', 429: 'rate_limit_error', 500: 'api_error', 529: 'overloaded_error' };

export function parseAnthropicScenario(model) {
  const parts = String(model ?? 'text').split(':');
  const args = parts.slice(1);
  let m = /^status-(\d{3})$/.exec(parts[0]);
  if (m) return { name: 'status', args: [Number(m[1]), args[0] ?? ANTHROPIC_RETRY_AFTER] };
  m = /^nostream-(\d{3})$/.exec(parts[0]);
  if (m) return { name: 'nostream', args: [Number(m[1])] };
  const known = ['text', 'chunks', 'tools', 'max-tokens', 'overloaded', 'error-mid', 'drop-mid', 'slow-first', 'hang', 'echo'];
  return { name: known.includes(parts[0]) ? parts[0] : 'text', args };
}

export function inputTokens(text) {
  return 100 + String(text).length;
}

export function outputTokens(pieces) {
  return 2 * pieces.length + 3;
}

export const TOOLS_OUTPUT_TOKENS = 61;

/* The text pieces the `model` scenario answers to a last user message `tag`. */
export function anthropicPieces(model, tag, reqInfo) {
  const sc = parseAnthropicScenario(model);
  const n = (k) => Array.from({ length: k }, (_, i) => `${tag}#${i} `);
  switch (sc.name) {
    case 'chunks': return n(Number(sc.args[0] ?? 5));
    case 'max-tokens': return n(3);
    case 'error-mid': case 'drop-mid': return n(Number(sc.args[0] ?? 2));
    case 'echo': return [JSON.stringify(reqInfo ?? {})];
    case 'tools': return [TOOLS_TEXT];
    default: return n(5);
  }
}

/* The usage (OpenAI names) a client of sluice must see for `model` and last user message `tag`. */
export function expectedUsage(model, tag) {
  const sc = parseAnthropicScenario(model);
  const prompt = inputTokens(tag);
  const completion = sc.name === 'tools' ? TOOLS_OUTPUT_TOKENS : outputTokens(anthropicPieces(model, tag));
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function messageId(model, tag) {
  return 'msg_fake' + createHash('md5').update(`${model}\0${tag}`).digest('hex').slice(0, 20);
}

export function anthropicError(status, message) {
  const type = ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
  const msg = message ?? (status === 529 ? 'Overloaded' : `fake anthropic says ${status}`);
  return { type: 'error', error: { type, message: msg }, request_id: 'req_fake_0001' };
}

const event = (name, obj) => `event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`;

/* Chops s into pieces of `size` bytes (by UTF-16 units; the tool inputs are ASCII). */
function fragments(s, size) {
  const out = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

/* The SSE events of a streaming answer, [{kind, text}]; kind 'delta' marks text deltas. */
export function anthropicStreamEvents(body, reqInfo) {
  const model = String(body?.model);
  const sc = parseAnthropicScenario(model);
  const tag = lastUserText(body);
  const out = [];
  const push = (kind, name, obj) => out.push({ kind, text: event(name, obj) });
  push('start', 'message_start', { type: 'message_start', message: {
    id: messageId(model, tag), type: 'message', role: 'assistant', model, content: [], stop_reason: null,
    stop_sequence: null, usage: { input_tokens: inputTokens(tag), cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0, output_tokens: 1 } } });
  push('block', 'content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
  push('ping', 'ping', { type: 'ping' });
  const pieces = anthropicPieces(model, tag, reqInfo);
  for (const p of pieces) {
    push('delta', 'content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } });
  }
  if (sc.name === 'error-mid') {
    push('error', 'error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
    return out;
  }
  push('block', 'content_block_stop', { type: 'content_block_stop', index: 0 });
  let stop = 'end_turn';
  let output = outputTokens(pieces);
  if (sc.name === 'tools') {
    ANTHROPIC_TOOL_CALLS.forEach((tc, i) => {
      const index = i + 1;
      push('block', 'content_block_start', { type: 'content_block_start', index,
        content_block: { type: 'tool_use', id: tc.id, name: tc.name, input: {} } });
      push('json', 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: '' } });
      for (const f of fragments(tc.arguments, 9)) {
        push('json', 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: f } });
      }
      push('block', 'content_block_stop', { type: 'content_block_stop', index });
    });
    stop = 'tool_use';
    output = TOOLS_OUTPUT_TOKENS;
  }
  if (sc.name === 'max-tokens') stop = 'max_tokens';
  push('delta-msg', 'message_delta', { type: 'message_delta', delta: { stop_reason: stop, stop_sequence: null },
    usage: { output_tokens: output } });
  push('stop', 'message_stop', { type: 'message_stop' });
  return out;
}

/* The non-streaming Message. */
export function anthropicMessage(body, reqInfo) {
  const model = String(body?.model);
  const sc = parseAnthropicScenario(model);
  const tag = lastUserText(body);
  const pieces = anthropicPieces(model, tag, reqInfo);
  const content = [{ type: 'text', text: pieces.join('') }];
  let stop = sc.name === 'max-tokens' ? 'max_tokens' : 'end_turn';
  let output = outputTokens(pieces);
  if (sc.name === 'tools') {
    for (const tc of ANTHROPIC_TOOL_CALLS) content.push({ type: 'tool_use', id: tc.id, name: tc.name, input: tc.input });
    stop = 'tool_use';
    output = TOOLS_OUTPUT_TOKENS;
  }
  return { id: messageId(model, tag), type: 'message', role: 'assistant', model, content, stop_reason: stop,
    stop_sequence: null, usage: { input_tokens: inputTokens(tag), cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0, output_tokens: output } };
}

function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

/* The 400 message the real API would give for `body`, or null when it is acceptable. */
export function validateRequest(body) {
  if (!isObj(body)) return 'request body: Input should be a valid dictionary';
  for (const k of Object.keys(body)) if (!ALLOWED_FIELDS.has(k)) return `${k}: Extra inputs are not permitted`;
  if (typeof body.model !== 'string' || !body.model) return 'model: Field required';
  if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return 'max_tokens: Field required (an integer >= 1)';
  if ('stream' in body && typeof body.stream !== 'boolean') return 'stream: Input should be a valid boolean';
  if ('temperature' in body && !(typeof body.temperature === 'number' && body.temperature >= 0 && body.temperature <= 1)) {
    return 'temperature: Input should be less than or equal to 1';
  }
  if ('top_p' in body && typeof body.top_p !== 'number') return 'top_p: Input should be a valid number';
  if ('stop_sequences' in body && !(Array.isArray(body.stop_sequences) && body.stop_sequences.every((s) => typeof s === 'string'))) {
    return 'stop_sequences: Input should be a valid list of strings';
  }
  if ('metadata' in body && !isObj(body.metadata)) return 'metadata: Input should be a valid dictionary';
  if ('system' in body) {
    const s = body.system;
    const ok = typeof s === 'string' || (Array.isArray(s) && s.every((b) => isObj(b) && b.type === 'text' && typeof b.text === 'string' && b.text.length));
    if (!ok) return 'system: Input should be a valid string or a list of text blocks';
  }
  if ('tools' in body) {
    if (!Array.isArray(body.tools)) return 'tools: Input should be a valid list';
    for (const [i, t] of body.tools.entries()) {
      if (!isObj(t)) return `tools.${i}: Input should be a valid dictionary`;
      for (const k of Object.keys(t)) {
        if (!['name', 'description', 'input_schema', 'type', 'cache_control'].includes(k)) return `tools.${i}.custom.${k}: Extra inputs are not permitted`;
      }
      if (typeof t.name !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(t.name)) return `tools.${i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`;
      if (!isObj(t.input_schema)) return `tools.${i}.custom.input_schema: Field required`;
      if (t.input_schema.type !== 'object') return `tools.${i}.custom.input_schema.type: Input should be 'object'`;
      if ('description' in t && typeof t.description !== 'string') return `tools.${i}.custom.description: Input should be a valid string`;
    }
  }
  if ('tool_choice' in body) {
    const tc = body.tool_choice;
    if (!isObj(tc) || !['auto', 'any', 'tool', 'none'].includes(tc.type)) return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'";
    if (tc.type === 'tool' && typeof tc.name !== 'string') return 'tool_choice.tool.name: Field required';
  }
  if (!Array.isArray(body.messages) || !body.messages.length) return 'messages: at least one message is required';
  for (const [i, m] of body.messages.entries()) {
    if (!isObj(m)) return `messages.${i}: Input should be a valid dictionary`;
    if (m.role === 'system') {
      return 'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.';
    }
    if (m.role !== 'user' && m.role !== 'assistant') return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    for (const k of Object.keys(m)) if (k !== 'role' && k !== 'content') return `messages.${i}.${k}: Extra inputs are not permitted`;
    const c = m.content;
    if (typeof c === 'string') {
      if (!c.length) return 'messages: text content blocks must be non-empty';
      continue;
    }
    if (!Array.isArray(c) || !c.length) return `messages.${i}.content: Input should be a valid string or a non-empty list`;
    for (const [j, b] of c.entries()) {
      if (!isObj(b)) return `messages.${i}.content.${j}: Input should be a valid dictionary`;
      if (b.type === 'text') {
        if (typeof b.text !== 'string' || !b.text.length) return 'messages: text content blocks must be non-empty';
      } else if (b.type === 'tool_use') {
        if (m.role !== 'assistant') return `messages.${i}.content.${j}: tool_use blocks are only allowed in assistant messages`;
        if (typeof b.id !== 'string' || typeof b.name !== 'string' || !isObj(b.input)) return `messages.${i}.content.${j}.tool_use: id, name and input (an object) are required`;
      } else if (b.type === 'tool_result') {
        if (m.role !== 'user') return `messages.${i}.content.${j}: tool_result blocks are only allowed in user messages`;
        if (typeof b.tool_use_id !== 'string') return `messages.${i}.content.${j}.tool_result.tool_use_id: Field required`;
        if ('content' in b && typeof b.content !== 'string' && !Array.isArray(b.content)) return `messages.${i}.content.${j}.tool_result.content: Input should be a valid string or list`;
      } else if (b.type !== 'image' && b.type !== 'document') {
        return `messages.${i}.content.${j}: Input tag '${b.type}' found using 'type' does not match any of the expected tags`;
      }
    }
  }
  // Consecutive turns of one role are combined; tool_use / tool_result must pair up turn by turn.
  const turns = [];
  for (const m of body.messages) {
    const blocks = typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content;
    if (turns.length && turns.at(-1).role === m.role) turns.at(-1).blocks.push(...blocks);
    else turns.push({ role: m.role, blocks: [...blocks] });
  }
  for (let i = 0; i < turns.length; i++) {
    const uses = turns[i].blocks.filter((b) => b.type === 'tool_use').map((b) => b.id);
    const results = turns[i].blocks.filter((b) => b.type === 'tool_result').map((b) => b.tool_use_id);
    const prevUses = i > 0 ? turns[i - 1].blocks.filter((b) => b.type === 'tool_use').map((b) => b.id) : [];
    for (const id of results) {
      if (!prevUses.includes(id)) return `messages.${i}.content: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${id}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`;
    }
    if (uses.length && i + 1 < turns.length) {
      const next = turns[i + 1].blocks.filter((b) => b.type === 'tool_result').map((b) => b.tool_use_id);
      const missing = uses.filter((id) => !next.includes(id));
      if (missing.length) return `messages.${i}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`;
    }
  }
  return null;
}

function jsonSteps(status, obj, headers = {}) {
  const text = JSON.stringify(obj);
  return [{ kind: 'head', status, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text),
    'request-id': 'req_fake_0001', ...headers } }, { kind: 'write', data: text }, { kind: 'end' }];
}

/* Starts the fake. apiKey: the x-api-key it accepts. */
export async function startFakeAnthropic({ apiKey = ANTHROPIC_KEY } = {}) {
  const srv = await startScriptedServer((rec) => {
    rec.stream = rec.body?.stream === true;
    rec.scenario = parseAnthropicScenario(rec.body?.model);
    if (rec.method !== 'POST' || rec.path !== '/v1/messages') {
      return jsonSteps(404, anthropicError(404, `Not found: ${rec.method} ${rec.path}`));
    }
    if (rec.headers['x-api-key'] !== apiKey) return jsonSteps(401, anthropicError(401, 'invalid x-api-key'));
    if (!rec.headers['anthropic-version']) return jsonSteps(400, anthropicError(400, 'anthropic-version: header is required'));
    if (rec.body === null) return jsonSteps(400, anthropicError(400, 'There was an error parsing the body of your request'));
    const invalid = validateRequest(rec.body);
    rec.invalid = invalid;
    if (invalid) return jsonSteps(400, anthropicError(400, invalid));
    const sc = rec.scenario;
    const reqInfo = { method: rec.method, url: rec.url, headers: rec.headers, body: rec.body };
    if (sc.name === 'hang') return [{ kind: 'hang' }];
    const steps = [];
    if (sc.name === 'slow-first') steps.push({ kind: 'sleep', ms: Number(sc.args[0] ?? 1000) });
    if (sc.name === 'overloaded') return [...steps, ...jsonSteps(529, anthropicError(529))];
    if (sc.name === 'status') {
      const [status, ra] = sc.args;
      return [...steps, ...jsonSteps(status, anthropicError(status), status === 429 ? { 'retry-after': String(ra) } : {})];
    }
    if (sc.name === 'nostream' && rec.stream) {
      const status = sc.args[0];
      return jsonSteps(status, anthropicError(status, status === 400 ? 'streaming is not supported for this model' : undefined));
    }
    if (!rec.stream) {
      const text = JSON.stringify(anthropicMessage(rec.body, reqInfo));
      if (sc.name === 'drop-mid') {
        return [...steps, { kind: 'head', status: 200, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
          { kind: 'write', data: text.slice(0, text.length >> 1) }, { kind: 'destroy' }];
      }
      return [...steps, ...jsonSteps(200, JSON.parse(text))];
    }
    steps.push({ kind: 'head', status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache', 'request-id': 'req_fake_0001' } });
    const gap = sc.name === 'chunks' ? Number(sc.args[1] ?? 0) : 0;
    const dropAfter = sc.name === 'drop-mid' ? anthropicPieces(rec.body.model, '').length : -1;
    let deltas = 0;
    for (const ev of anthropicStreamEvents(rec.body, reqInfo)) {
      if (ev.kind === 'delta') {
        if (gap && deltas > 0) steps.push({ kind: 'sleep', ms: gap });
        deltas++;
      }
      steps.push({ kind: 'write', data: ev.text });
      if (ev.kind === 'delta' && deltas === dropAfter) break;
    }
    if (sc.name === 'drop-mid') {
      steps.push({ kind: 'destroy' });
      return steps;
    }
    steps.push({ kind: 'end' });
    return steps;
  });
  return { ...srv, baseURL: `http://127.0.0.1:${srv.port}/v1`, apiKey };
}
