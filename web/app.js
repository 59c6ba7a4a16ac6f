// The chat page: sends the conversation to POST /v1/chat/completions, streamed (SSE read with
// fetch + ReadableStream) or in one JSON answer, renders the answer as sanitized markdown (code
// blocks get a Copy button), shows per-answer timings and a Retry on a failed answer, and offers
// the models of GET /v1/models. Depends only on the globals of marked.min.js and purify.min.js.

import { createSSEParser } from './sluice-client.js'; /* one SSE parser for page and client */
const ENDPOINT = 'v1/chat/completions'; /* relative: works behind a path prefix too */
const MODELS = 'v1/models';
/* localStorage, only while "Remember key" is ticked; otherwise the key lives in the input alone
 * (this tab's memory: a reload forgets it). */
const KEY_STORE = 'sluice.apiKey';
const SETTINGS_STORE = 'sluice.settings';

const $ = (id) => document.getElementById(id);
const els = {
  log: $('log'), empty: $('empty'), form: $('chat'), prompt: $('prompt'), send: $('send'),
  stop: $('stop'), model: $('model'), models: $('models'), modelsNote: $('models-note'),
  apikey: $('apikey'), remember: $('remember'), streaming: $('streaming'), clear: $('clear'),
  status: $('status'), settings: $('settings'), bar: $('bar'), settingsToggle: $('settings-toggle'),
};

/* ---------------- markdown ---------------- */

const md = globalThis.marked ? new globalThis.marked.Marked({ gfm: true, breaks: true }) : null;
const purify = globalThis.DOMPurify;
if (purify) {
  // Links open in a new tab without handing it this page.
  purify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
}

/* Markdown → sanitized HTML. Without marked or DOMPurify the text is shown as is. */
export function renderMarkdown(text) {
  if (!md || !purify) return null;
  const html = md.parse(text, { async: false });
  return purify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS: ['style', 'form'] });
}

function setMarkdown(el, text) {
  const html = renderMarkdown(text);
  if (html === null) el.textContent = text;
  else el.innerHTML = html;
}

/* ---------------- requests ---------------- */

/* The message of an error response: OpenAI's error.message, else the body's text. */
async function httpError(res) {
  const text = await res.text().catch(() => '');
  let msg = text.trim();
  try {
    const j = JSON.parse(text);
    msg = j?.error?.message ?? j?.message ?? (typeof j?.error === 'string' ? j.error : msg);
  } catch { /* not JSON: the text itself */ }
  const e = new Error(msg || res.statusText || 'request failed');
  e.status = res.status;
  return e;
}

function streamError(j) {
  const e = new Error(typeof j.error === 'string' ? j.error : (j.error?.message ?? 'stream error'));
  e.inStream = true;
  return e;
}

function withKey(h) {
  const key = els.apikey.value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function requestHeaders(stream) {
  return withKey({ 'Content-Type': 'application/json', Accept: stream ? 'text/event-stream' : 'application/json' });
}

/* Streams one answer; calls onDelta(text) per content delta. Returns {finish, usage, done}. */
async function streamAnswer(body, signal, onDelta) {
  const res = await fetch(ENDPOINT, { method: 'POST', headers: requestHeaders(true), body: JSON.stringify(body), signal });
  if (!res.ok) throw await httpError(res);
  const out = { finish: null, usage: null, done: false, model: null };
  let failure = null;
  const feed = createSSEParser((ev) => {
    if (failure || out.done) return;
    if (ev.data === '[DONE]') { out.done = true; return; }
    let j;
    try { j = JSON.parse(ev.data); } catch { return; }
    if (j.error) { failure = streamError(j); return; }
    out.model ??= j.model;
    if (j.usage) out.usage = j.usage;
    const choice = j.choices?.[0];
    if (!choice) return;
    if (choice.finish_reason) out.finish = choice.finish_reason;
    if (typeof choice.delta?.content === 'string' && choice.delta.content) onDelta(choice.delta.content);
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      feed(value);
      if (failure) throw failure;
    }
  } finally {
    reader.releaseLock();
  }
  if (failure) throw failure;
  if (!out.done) {
    // An honest ending is [DONE]; a stream that just stops lost the rest of the answer.
    const e = new Error('the stream ended before the answer was complete');
    e.inStream = true;
    throw e;
  }
  return out;
}

async function plainAnswer(body, signal) {
  const res = await fetch(ENDPOINT, { method: 'POST', headers: requestHeaders(false), body: JSON.stringify(body), signal });
  if (!res.ok) throw await httpError(res);
  const j = await res.json();
  if (j.error) throw streamError(j);
  const choice = j.choices?.[0];
  return { text: choice?.message?.content ?? '', finish: choice?.finish_reason ?? null, usage: j.usage ?? null, model: j.model };
}

/* ---------------- the model list ---------------- */

let modelsSeq = 0;     /* only the newest request fills the list (the key may change mid-flight) */
let modelsKey = null;  /* the key the list is (being) fetched with; null: ask again */

/* Fills the model suggestions from GET /v1/models. On failure (401 before a key is entered) the
 * typed name still works; the note under the field says why. */
async function loadModels() {
  const key = els.apikey.value.trim();
  if (key === modelsKey) return; /* a change event can come twice for one edit */
  modelsKey = key;
  const seq = ++modelsSeq;
  const note = els.modelsNote;
  note.dataset.state = 'loading';
  let ids;
  try {
    const res = await fetch(MODELS, { headers: withKey({ Accept: 'application/json' }) });
    if (!res.ok) throw await httpError(res);
    const j = await res.json();
    ids = (Array.isArray(j?.data) ? j.data : []).map((m) => m?.id).filter((id) => typeof id === 'string' && id);
  } catch (e) {
    if (seq !== modelsSeq) return;
    modelsKey = null;
    els.models.replaceChildren();
    const why = e.status ? `HTTP ${e.status}` : e.name === 'TypeError' ? 'unreachable' : 'bad answer';
    note.textContent = `No model list (${why}): type a name.`;
    note.title = e.message;
    note.dataset.state = 'error';
    return;
  }
  if (seq !== modelsSeq) return;
  els.models.replaceChildren(...ids.map((id) => {
    const o = el('option');
    o.value = id;
    if (/[*?[]/.test(id)) o.label = 'pattern: edit the name'; /* a route, not a model name */
    return o;
  }));
  note.textContent = '';
  note.title = '';
  note.dataset.state = 'ok';
}

/* ---------------- the conversation ---------------- */

/* {user, answer, view} per question; answer is null until one came (or none did). */
const turns = [];
let current = null; /* {controller} of the answer in flight */

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function nearBottom() {
  const s = document.scrollingElement;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollDown(force) {
  if (force || nearBottom()) window.scrollTo({ top: document.scrollingElement.scrollHeight });
}

/* The messages sent for a turn: the turns before it, then its question. A question that got no
 * answer is not sent again as context, so roles keep alternating. */
function messagesFor(turn) {
  const out = [];
  for (const t of turns) {
    if (t === turn) break;
    if (t.answer) out.push({ role: 'user', content: t.user }, { role: 'assistant', content: t.answer });
  }
  out.push({ role: 'user', content: turn.user });
  return out;
}

/* Copies text; plain http on a LAN address is no secure context, so no async clipboard there. */
async function copyText(text) {
  if (navigator.clipboard?.writeText) return navigator.clipboard.writeText(text);
  const ta = el('textarea', 'visually-hidden');
  ta.value = text;
  document.body.append(ta);
  ta.select();
  const ok = document.execCommand('copy');
  ta.remove();
  if (!ok) throw new Error('the browser refused to copy');
}

function copyButton(label, what, getText) {
  const b = el('button', 'mini copy', label);
  b.type = 'button';
  b.setAttribute('aria-label', `Copy ${what}`);
  let timer = 0;
  b.addEventListener('click', async () => {
    clearTimeout(timer);
    try {
      await copyText(getText());
      b.textContent = 'Copied';
      b.dataset.copied = 'true';
      els.status.textContent = `Copied ${what}.`;
    } catch (e) {
      b.textContent = 'Copy failed';
      b.dataset.copied = 'false';
      els.status.textContent = `Could not copy: ${e.message}`;
    }
    timer = setTimeout(() => { b.textContent = label; delete b.dataset.copied; }, 1500);
  });
  return b;
}

/* Each code block gets its own Copy button; the wrapper keeps it out of the scrolling <pre>. */
function addCodeButtons(body) {
  for (const pre of body.querySelectorAll('pre')) {
    const wrap = el('div', 'code');
    pre.replaceWith(wrap);
    wrap.append(pre, copyButton('Copy', 'the code', () => (pre.querySelector('code') ?? pre).textContent));
  }
}

function setAnswer(body, text) {
  setMarkdown(body, text);
  addCodeButtons(body);
}

function addUser(text) {
  els.empty.hidden = true;
  const m = el('article', 'msg user');
  m.setAttribute('aria-label', 'You said');
  m.append(el('div', 'who', 'You'), el('div', 'body', text));
  els.log.append(m);
  scrollDown(true);
}

function newAnswerView(turn, model, streaming) {
  const m = el('article', 'msg assistant');
  m.setAttribute('aria-label', 'Assistant answered');
  m.dataset.state = 'waiting';
  const who = el('div', 'who');
  const tag = el('span', 'tag', model);
  const copy = copyButton('Copy answer', 'the answer', () => turn.answer ?? '');
  copy.hidden = true;
  who.append('Assistant ', tag, copy);
  const body = el('div', 'body md');
  const typing = el('span', 'typing');
  typing.setAttribute('aria-label', streaming ? 'waiting for the first token' : 'waiting for the answer');
  typing.append(el('i'), el('i'), el('i'));
  body.append(typing);
  const err = el('div', 'error');
  const msg = el('p', 'error-msg');
  msg.setAttribute('role', 'alert');
  const retry = el('button', 'mini retry', 'Retry');
  retry.type = 'button';
  retry.title = 'Send this question again, with the same conversation before it';
  retry.addEventListener('click', () => { if (!current) run(turn); });
  err.append(msg, retry);
  err.hidden = true;
  const stats = el('p', 'stats');
  stats.hidden = true;
  m.append(who, body, err, stats);
  return { m, tag, copy, body, err, msg, retry, stats };
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  return v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`;
}

function showStats(view, s) {
  const { m, stats } = view;
  // Tokens are the provider's count when the stream reported usage, else one per content chunk.
  const fromUsage = Number.isFinite(s.usage?.completion_tokens);
  const tokens = fromUsage ? s.usage.completion_tokens : s.chunks;
  const rate = s.total > 0 ? tokens / (s.total / 1000) : 0; /* over the total, as a user waits */
  m.dataset.ttftMs = s.ttft === null ? '' : String(Math.round(s.ttft));
  m.dataset.totalMs = String(Math.round(s.total));
  m.dataset.chunks = String(s.chunks);
  m.dataset.tokens = String(tokens);
  m.dataset.tokensPerS = rate.toFixed(1);
  m.dataset.tokensFrom = fromUsage ? 'usage' : 'chunks';
  stats.replaceChildren();
  const item = (label, value, key, extra) => {
    const span = el('span', 'stat');
    const b = el('b', null, value);
    b.dataset.stat = key;
    span.append(`${label} `, b);
    if (extra) span.append(` ${extra}`);
    stats.append(span);
    return span;
  };
  item('first token', ms(s.ttft), 'ttft');
  item('total', ms(s.total), 'total');
  item('chunks', String(s.chunks), 'chunks');
  if (tokens > 0 || fromUsage) { /* nothing to count in an answer that never came */
    item('tokens', String(tokens), 'tokens', fromUsage ? '(usage)' : '(counted as chunks)');
    item('tokens/s', rate.toFixed(1), 'tokens-per-s').title = 'tokens ÷ total time';
  }
  stats.append(el('span', 'stat mode', s.stream ? 'streamed' : 'one piece'));
  if (s.note) stats.append(el('span', 'stat note', s.note));
  stats.hidden = false;
}

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.disabled = !busy;
  for (const b of els.log.querySelectorAll('.retry')) b.disabled = busy;
  els.log.setAttribute('aria-busy', busy ? 'true' : 'false');
}

/* Asks for a turn's answer into a fresh bubble; a retried turn's bubble replaces the old one. */
async function run(turn) {
  const stream = els.streaming.checked;
  const model = els.model.value.trim() || 'any';
  const view = newAnswerView(turn, model, stream);
  if (turn.view) turn.view.m.replaceWith(view.m);
  else els.log.append(view.m);
  turn.view = view;
  turn.answer = null;
  scrollDown(true);
  const controller = new AbortController();
  current = { controller };
  setBusy(true);
  const body = { model, messages: messagesFor(turn), stream };
  if (stream) body.stream_options = { include_usage: true };

  const t0 = performance.now();
  const s = { ttft: null, total: 0, chunks: 0, stream, usage: null, note: '' };
  let answer = '';
  let pending = false;
  const paint = () => {
    if (!pending) return; /* the final render already happened */
    pending = false;
    const stick = nearBottom();
    setAnswer(view.body, answer);
    if (stick) scrollDown(true);
  };
  try {
    let r;
    if (stream) {
      r = await streamAnswer(body, controller.signal, (delta) => {
        if (s.ttft === null) {
          s.ttft = performance.now() - t0;
          view.m.dataset.state = 'streaming';
        }
        s.chunks++;
        answer += delta;
        // One render per frame however fast the tokens come.
        if (!pending) { pending = true; requestAnimationFrame(paint); }
      });
    } else {
      r = await plainAnswer(body, controller.signal);
      s.ttft = performance.now() - t0;
      s.chunks = 1;
      answer = r.text;
    }
    s.usage = r.usage;
    if (r.model) view.tag.textContent = r.model;
    if (r.finish && r.finish !== 'stop') s.note = `finish: ${r.finish}`;
    view.m.dataset.state = 'done';
    els.status.textContent = 'Answer complete.';
  } catch (e) {
    if (e.name === 'AbortError') {
      view.m.dataset.state = 'stopped';
      s.note = 'stopped';
      els.status.textContent = 'Answer stopped.';
    } else {
      view.m.dataset.state = 'error';
      view.msg.textContent = e.status ? `HTTP ${e.status}: ${e.message}` : e.message;
      view.err.hidden = false;
      els.status.textContent = `Error: ${e.message}`;
    }
  } finally {
    s.total = performance.now() - t0;
    pending = false;
    if (answer) setAnswer(view.body, answer);
    else view.body.replaceChildren();
    view.body.hidden = !answer;
    view.copy.hidden = !answer;
    showStats(view, s);
    // A stopped or broken answer's text is still context for the next question.
    turn.answer = answer || null;
    current = null;
    setBusy(false);
    scrollDown(false);
  }
}

function ask(text) {
  const turn = { user: text, answer: null, view: null };
  turns.push(turn);
  addUser(text);
  return run(turn);
}

function stop() {
  if (!current) return;
  current.controller.abort();
}

/* ---------------- settings ---------------- */

function fitPrompt() {
  els.prompt.style.height = 'auto';
  els.prompt.style.height = `${Math.min(els.prompt.scrollHeight, 240)}px`;
}

function loadSettings() {
  try {
    sessionStorage.removeItem(KEY_STORE); /* where earlier versions kept it */
    const s = JSON.parse(localStorage.getItem(SETTINGS_STORE) ?? '{}');
    if (typeof s.model === 'string' && s.model) els.model.value = s.model;
    if (typeof s.streaming === 'boolean') els.streaming.checked = s.streaming;
    els.remember.checked = s.remember === true;
    // Set either way: a browser restoring form fields on reload must not bring a key back.
    els.apikey.value = els.remember.checked ? localStorage.getItem(KEY_STORE) ?? '' : '';
    if (!els.remember.checked) localStorage.removeItem(KEY_STORE);
  } catch { /* storage off: defaults */ }
}

function saveSettings() {
  try {
    const key = els.apikey.value.trim();
    if (els.remember.checked && key) localStorage.setItem(KEY_STORE, key);
    else localStorage.removeItem(KEY_STORE); /* unticking forgets it at once */
    localStorage.setItem(SETTINGS_STORE, JSON.stringify({
      model: els.model.value.trim(), streaming: els.streaming.checked, remember: els.remember.checked,
    }));
  } catch { /* storage off: nothing kept */ }
}

/* ---------------- wiring ---------------- */

els.form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = els.prompt.value.trim();
  if (!text || current) return;
  els.prompt.value = '';
  fitPrompt();
  ask(text);
});
els.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    els.form.requestSubmit();
  }
});
els.prompt.addEventListener('input', fitPrompt);
document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && current) stop(); });
els.stop.addEventListener('click', stop);
els.settings.addEventListener('submit', (e) => e.preventDefault());
els.settings.addEventListener('change', saveSettings);
// A remembered key is saved as it is typed: a reload before the field loses focus keeps it.
els.apikey.addEventListener('input', () => { if (els.remember.checked) saveSettings(); });
els.apikey.addEventListener('change', loadModels); /* another key may see other models */
els.settingsToggle.addEventListener('click', () => {
  const open = els.bar.classList.toggle('open');
  els.settingsToggle.setAttribute('aria-expanded', String(open));
});
els.clear.addEventListener('click', () => {
  stop();
  turns.length = 0; /* a late answer lands in a turn no longer listed */
  els.log.querySelectorAll('.msg').forEach((m) => m.remove());
  els.empty.hidden = false;
  els.prompt.focus();
});

loadSettings();
loadModels();
els.prompt.focus();
// For tests and the curious: the renderer the page uses.
globalThis.sluiceChat = { renderMarkdown, createSSEParser };
