// The chat page: sends the conversation to POST /v1/chat/completions, streamed (SSE read with
// fetch + ReadableStream) or in one JSON answer, renders the answer as sanitized markdown and
// shows per-answer timings. Depends only on the globals of marked.min.js and purify.min.js.

import { createSSEParser } from './sluice-client.js'; /* one SSE parser for page and client */
const ENDPOINT = 'v1/chat/completions'; /* relative: works behind a path prefix too */
const KEY_STORE = 'sluice.apiKey';       /* sessionStorage: gone when the tab closes */
const SETTINGS_STORE = 'sluice.settings';

const $ = (id) => document.getElementById(id);
const els = {
  log: $('log'), empty: $('empty'), form: $('chat'), prompt: $('prompt'), send: $('send'),
  stop: $('stop'), model: $('model'), apikey: $('apikey'), streaming: $('streaming'),
  clear: $('clear'), status: $('status'), settings: $('settings'),
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

/* ---------------- SSE ---------------- */


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

function requestHeaders(stream) {
  const h = { 'Content-Type': 'application/json', Accept: stream ? 'text/event-stream' : 'application/json' };
  const key = els.apikey.value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
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

/* ---------------- the conversation ---------------- */

const history = []; /* {role, content} sent with each request */
let generation = 0;  /* bumped by "New chat": a late answer must not join the next conversation */
let current = null;  /* {controller, stopped} of the answer in flight */

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

function addUser(text) {
  els.empty.hidden = true;
  const m = el('article', 'msg user');
  m.setAttribute('aria-label', 'You said');
  m.append(el('div', 'who', 'You'), el('div', 'body', text));
  els.log.append(m);
  scrollDown(true);
}

function addAssistant(model, streaming) {
  const m = el('article', 'msg assistant');
  m.setAttribute('aria-label', 'Assistant answered');
  m.dataset.state = 'waiting';
  const who = el('div', 'who', 'Assistant');
  const tag = el('span', 'tag', model);
  who.append(' ', tag);
  const body = el('div', 'body md');
  const typing = el('span', 'typing');
  typing.setAttribute('aria-label', streaming ? 'waiting for the first token' : 'waiting for the answer');
  typing.append(el('i'), el('i'), el('i'));
  body.append(typing);
  const err = el('p', 'error');
  err.setAttribute('role', 'alert');
  err.hidden = true;
  const stats = el('p', 'stats');
  stats.hidden = true;
  m.append(who, body, err, stats);
  els.log.append(m);
  scrollDown(true);
  return { m, tag, body, err, stats };
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  return v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`;
}

function showStats(view, s) {
  const { m, stats } = view;
  m.dataset.ttftMs = s.ttft === null ? '' : String(Math.round(s.ttft));
  m.dataset.totalMs = String(Math.round(s.total));
  m.dataset.chunks = String(s.chunks);
  stats.replaceChildren();
  const item = (label, value, key) => {
    const span = el('span', 'stat');
    const b = el('b', null, value);
    b.dataset.stat = key;
    span.append(`${label} `, b);
    stats.append(span);
  };
  item('first token', ms(s.ttft), 'ttft');
  item('total', ms(s.total), 'total');
  item('chunks', String(s.chunks), 'chunks');
  if (s.usage?.completion_tokens !== undefined) item('tokens', String(s.usage.completion_tokens), 'tokens');
  const mode = el('span', 'stat mode', s.stream ? 'streamed' : 'one piece');
  stats.append(mode);
  if (s.note) stats.append(el('span', 'stat note', s.note));
  stats.hidden = false;
}

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.disabled = !busy;
  els.log.setAttribute('aria-busy', busy ? 'true' : 'false');
}

async function ask(text) {
  const stream = els.streaming.checked;
  const gen = generation;
  const model = els.model.value.trim() || 'any';
  history.push({ role: 'user', content: text });
  addUser(text);
  const view = addAssistant(model, stream);
  const controller = new AbortController();
  current = { controller, stopped: false };
  setBusy(true);
  const body = { model, messages: history.slice(), stream };
  if (stream) body.stream_options = { include_usage: true };

  const t0 = performance.now();
  const s = { ttft: null, total: 0, chunks: 0, stream, usage: null, note: '' };
  let answer = '';
  let pending = false;
  const paint = () => {
    pending = false;
    const stick = nearBottom();
    setMarkdown(view.body, answer);
    if (stick) scrollDown(true);
  };
  try {
    if (stream) {
      const r = await streamAnswer(body, controller.signal, (delta) => {
        if (s.ttft === null) {
          s.ttft = performance.now() - t0;
          view.m.dataset.state = 'streaming';
        }
        s.chunks++;
        answer += delta;
        // One render per frame however fast the tokens come.
        if (!pending) { pending = true; requestAnimationFrame(paint); }
      });
      s.usage = r.usage;
      if (r.model) view.tag.textContent = r.model;
      if (r.finish && r.finish !== 'stop') s.note = `finish: ${r.finish}`;
    } else {
      const r = await plainAnswer(body, controller.signal);
      s.ttft = performance.now() - t0;
      s.chunks = 1;
      answer = r.text;
      s.usage = r.usage;
      if (r.model) view.tag.textContent = r.model;
      if (r.finish && r.finish !== 'stop') s.note = `finish: ${r.finish}`;
    }
    view.m.dataset.state = 'done';
    els.status.textContent = 'Answer complete.';
  } catch (e) {
    if (e.name === 'AbortError') {
      view.m.dataset.state = 'stopped';
      s.note = 'stopped';
      els.status.textContent = 'Answer stopped.';
    } else {
      view.m.dataset.state = 'error';
      view.err.textContent = e.status ? `HTTP ${e.status}: ${e.message}` : e.message;
      view.err.hidden = false;
      els.status.textContent = `Error: ${e.message}`;
    }
  } finally {
    s.total = performance.now() - t0;
    pending = false;
    if (answer) setMarkdown(view.body, answer);
    else view.body.replaceChildren();
    view.body.hidden = !answer;
    showStats(view, s);
    if (gen === generation) {
      // A question that got no answer is not sent again as context.
      if (answer) history.push({ role: 'assistant', content: answer });
      else if (history.at(-1)?.role === 'user') history.pop();
    }
    current = null;
    setBusy(false);
    scrollDown(false);
  }
}

function stop() {
  if (!current) return;
  current.stopped = true;
  current.controller.abort();
}

/* ---------------- wiring ---------------- */

function fitPrompt() {
  els.prompt.style.height = 'auto';
  els.prompt.style.height = `${Math.min(els.prompt.scrollHeight, 240)}px`;
}

function loadSettings() {
  try {
    els.apikey.value = sessionStorage.getItem(KEY_STORE) ?? '';
    const s = JSON.parse(localStorage.getItem(SETTINGS_STORE) ?? '{}');
    if (typeof s.model === 'string' && s.model) els.model.value = s.model;
    if (typeof s.streaming === 'boolean') els.streaming.checked = s.streaming;
  } catch { /* storage off: defaults */ }
}

function saveSettings() {
  try {
    const key = els.apikey.value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    localStorage.setItem(SETTINGS_STORE, JSON.stringify({ model: els.model.value.trim(), streaming: els.streaming.checked }));
  } catch { /* storage off: nothing kept */ }
}

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
els.clear.addEventListener('click', () => {
  stop();
  generation++;
  history.length = 0;
  els.log.querySelectorAll('.msg').forEach((m) => m.remove());
  els.empty.hidden = false;
  els.prompt.focus();
});

loadSettings();
els.prompt.focus();
// For tests and the curious: the renderer the page uses.
globalThis.sluiceChat = { renderMarkdown, createSSEParser };
