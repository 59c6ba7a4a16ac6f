/* sluice widget (seed 001): one <script> tag puts a chat bubble on any page.
 *
 *   <script src="https://gw.example/widget.js" data-title="Ask us" data-key="sk-…" async></script>
 *
 * data- attributes: endpoint (default: this script's origin + /v1/chat/completions), key
 * (sent as Authorization: Bearer), title, model ("any"), system (a system prompt), stream
 * ("false": non-streaming only), timeout (ms to the first token, default 30000, 0: none; a
 * non-streaming answer must come whole within it), retries (on 429/5xx, default 2), backoff
 * (ms before the first retry, default 500), color (the accent colour), open ("true": start
 * open), placeholder.
 *
 * A classic script with no dependencies. Its DOM lives in a shadow root with its styles in a
 * constructed stylesheet (adoptedStyleSheets), so it needs no inline <style> and works under a
 * CSP of default-src 'self'; the host page's CSS does not reach inside and ours does not leak
 * out. Answers are read with fetch + ReadableStream as SSE and shown as text, never as HTML.
 */
(function () {
  'use strict';

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  if (!script || script.__sluiceWidget) return;
  script.__sluiceWidget = true;

  var RETRY_AFTER_MAX_S = 30; /* a server asking for longer still gets retried, after 30 s */
  var BACKOFF_MAX_MS = 10000;

  function intAttr(v, dflt, max) {
    var n = Number(v);
    return v !== undefined && v !== '' && Number.isFinite(n) && n >= 0 ? Math.min(Math.floor(n), max) : dflt;
  }

  var ds = script.dataset;
  var cfg = {
    endpoint: new URL(ds.endpoint || '/v1/chat/completions', script.src).href,
    key: ds.key || '',
    title: ds.title || 'Chat',
    model: ds.model || 'any',
    system: ds.system || '',
    stream: ds.stream !== 'false',
    timeout: intAttr(ds.timeout, 30000, 600000),
    retries: intAttr(ds.retries, 2, 10),
    backoff: intAttr(ds.backoff, 500, BACKOFF_MAX_MS),
    color: ds.color && window.CSS && CSS.supports('color', ds.color) ? ds.color : '',
    open: ds.open === 'true',
    placeholder: ds.placeholder || 'Type a message…',
  };

  var CSS_TEXT = [
    /* !important in a shadow tree's :host beats the page's rules, even its !important ones. */
    ':host { all: initial !important; position: fixed !important; right: 20px !important;',
    '  bottom: 20px !important; z-index: 2147483000 !important; display: block !important; }',
    '.w { --accent: #0b6bcb; --fg: #111827; --muted: #6b7280; --bg: #ffffff; --soft: #f3f4f6;',
    '  --err: #b91c1c; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;',
    '  color: var(--fg); text-align: left; letter-spacing: normal; }',
    '.w *, .w *::before, .w *::after { box-sizing: border-box; }',
    '[hidden] { display: none !important; }',
    'button, textarea { font: inherit; color: inherit; margin: 0; }',
    '.bubble { display: grid; place-items: center; width: 56px; height: 56px; padding: 0;',
    '  border: 0; border-radius: 50%; background: var(--accent); color: #fff; cursor: pointer;',
    '  box-shadow: 0 6px 20px rgba(0,0,0,.25); }',
    '.bubble svg { width: 28px; height: 28px; fill: currentColor; }',
    '.w.open .i-chat, .w:not(.open) .i-open { display: none; }',
    '.bubble:focus-visible, .panel button:focus-visible { outline: 3px solid var(--accent);',
    '  outline-offset: 2px; }',
    '.head button:focus-visible { outline-color: #fff; outline-offset: -3px; }',
    'textarea:focus { outline: 2px solid var(--accent); outline-offset: -1px; border-color: transparent; }',
    '.panel { position: absolute; right: 0; bottom: 70px; display: flex; flex-direction: column;',
    '  width: min(380px, calc(100vw - 24px)); height: min(560px, calc(100vh - 110px));',
    '  background: var(--bg); border: 1px solid #e5e7eb; border-radius: 14px; overflow: hidden;',
    '  box-shadow: 0 12px 40px rgba(0,0,0,.25); }',
    '.head { display: flex; align-items: center; gap: 8px; padding: 10px 12px;',
    '  background: var(--accent); color: #fff; }',
    '.title { flex: 1; margin: 0; font-size: 15px; font-weight: 600; overflow: hidden;',
    '  text-overflow: ellipsis; white-space: nowrap; }',
    '.close { width: 32px; height: 32px; padding: 0; border: 0; border-radius: 8px;',
    '  background: transparent; color: #fff; font-size: 22px; line-height: 1; cursor: pointer; }',
    '.close:hover { background: rgba(255,255,255,.18); }',
    '.log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column;',
    '  gap: 10px; background: var(--bg); }',
    '.empty { margin: auto; color: var(--muted); text-align: center; }',
    '.msg { max-width: 88%; display: flex; flex-direction: column; gap: 3px; }',
    '.msg.user { align-self: flex-end; }',
    '.msg.assistant { align-self: flex-start; }',
    '.text { padding: 8px 11px; border-radius: 12px; white-space: pre-wrap;',
    '  overflow-wrap: anywhere; }',
    '.user .text { background: var(--accent); color: #fff; border-bottom-right-radius: 4px; }',
    '.assistant .text { background: var(--soft); color: var(--fg); border-bottom-left-radius: 4px; }',
    '.assistant[data-state=waiting] .text:empty::after { content: "…"; color: var(--muted); }',
    '.meta { font-size: 11.5px; color: var(--muted); padding: 0 4px; }',
    '.note { font-size: 12.5px; padding: 0 4px; color: var(--muted); }',
    '.note.error { color: var(--err); }',
    '.compose { display: flex; align-items: flex-end; gap: 6px; padding: 8px;',
    '  border-top: 1px solid #e5e7eb; background: var(--bg); }',
    'textarea { flex: 1; min-width: 0; min-height: 38px; max-height: 120px; resize: none;',
    '  padding: 8px 10px; border: 1px solid #d1d5db; border-radius: 10px; background: #fff;',
    '  color: var(--fg); line-height: 1.35; }',
    '.send, .stop { height: 38px; padding: 0 14px; border-radius: 10px; cursor: pointer;',
    '  font-weight: 600; }',
    '.send { border: 0; background: var(--accent); color: #fff; }',
    '.stop { border: 1px solid #d1d5db; background: #fff; color: var(--fg); }',
    '.send:disabled { opacity: .5; cursor: default; }',
    /* A phone: the open panel takes the screen, and its close button stands for the bubble. */
    '@media (max-width: 480px) { :host { right: 12px !important; bottom: 12px !important; }',
    '  .panel { position: fixed; inset: 8px; width: auto; height: auto; }',
    '  .w.open .bubble { display: none; } }',
  ].join('\n');

  function el(tag, cls, attrs) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }

  /* The bubble's icon: a speech bubble while closed, a chevron while open. */
  function icon() {
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    [['i-chat', 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z'],
      ['i-open', 'M5.3 8.3a1 1 0 0 1 1.4 0L12 13.6l5.3-5.3a1 1 0 1 1 1.4 1.4l-6 6a1 1 0 0 1-1.4 0l-6-6a1 1 0 0 1 0-1.4z']]
      .forEach(function (d) {
        var p = document.createElementNS(ns, 'path');
        p.setAttribute('class', d[0]);
        p.setAttribute('d', d[1]);
        svg.appendChild(p);
      });
    return svg;
  }

  /* ---- the UI ---- */

  var host = document.createElement('sluice-widget');
  var root = host.attachShadow({ mode: 'open' });
  try {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS_TEXT);
    root.adoptedStyleSheets = [sheet];
  } catch (e) { /* no constructable stylesheets: a <style> (fine unless a CSP forbids it) */
    var st = document.createElement('style');
    st.textContent = CSS_TEXT;
    root.appendChild(st);
  }
  var w = el('div', 'w');
  if (cfg.color) w.style.setProperty('--accent', cfg.color); /* CSSOM: allowed under a CSP */
  var bubble = el('button', 'bubble', { type: 'button', 'aria-label': 'Open chat: ' + cfg.title,
    'aria-expanded': 'false', 'aria-controls': 'sluice-panel' });
  bubble.appendChild(icon());
  var panel = el('section', 'panel', { id: 'sluice-panel', role: 'dialog', 'aria-label': cfg.title });
  panel.hidden = true;
  var head = el('div', 'head');
  var title = el('h2', 'title');
  title.textContent = cfg.title;
  var closeBtn = el('button', 'close', { type: 'button', 'aria-label': 'Close chat' });
  closeBtn.textContent = '×';
  head.append(title, closeBtn);
  var log = el('div', 'log', { role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  var empty = el('p', 'empty');
  empty.textContent = 'Ask anything. Enter sends, Shift+Enter adds a line, Esc closes.';
  log.appendChild(empty);
  var form = el('form', 'compose');
  var input = el('textarea', '', { rows: '1', 'aria-label': 'Message', placeholder: cfg.placeholder });
  var stopBtn = el('button', 'stop', { type: 'button', 'aria-label': 'Stop the answer' });
  stopBtn.textContent = 'Stop';
  stopBtn.hidden = true;
  var sendBtn = el('button', 'send', { type: 'submit', 'aria-label': 'Send message' });
  sendBtn.textContent = 'Send';
  form.append(input, stopBtn, sendBtn);
  panel.append(head, log, form);
  w.append(panel, bubble);
  root.appendChild(w);

  function setOpen(open, focus) {
    panel.hidden = !open;
    w.classList.toggle('open', open);
    bubble.setAttribute('aria-expanded', String(open));
    bubble.setAttribute('aria-label', (open ? 'Close chat: ' : 'Open chat: ') + cfg.title);
    if (open && focus !== false) {
      input.focus();
      log.scrollTop = log.scrollHeight;
    }
  }
  bubble.addEventListener('click', function () { setOpen(panel.hidden); });
  closeBtn.addEventListener('click', function () { setOpen(false); bubble.focus(); });
  w.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && !panel.hidden) {
      e.stopPropagation();
      setOpen(false);
      bubble.focus();
    }
  });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (form.requestSubmit) form.requestSubmit();
      else sendBtn.click();
    }
  });
  input.addEventListener('input', function () {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 120) + 'px';
  });
  form.addEventListener('submit', function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || busy) return;
    input.value = '';
    input.style.height = '';
    send(text);
  });
  stopBtn.addEventListener('click', function () { if (busy) busy.abort(); });

  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
  function scroll(stick) { if (stick) log.scrollTop = log.scrollHeight; }

  function addMessage(role, text) {
    empty.hidden = true;
    var m = el('div', 'msg ' + role);
    var t = el('div', 'text');
    t.textContent = text;
    m.appendChild(t);
    log.appendChild(m);
    scroll(true);
    return m;
  }

  /* One assistant answer on screen: text appended as text nodes, a note line, a stats line. */
  function answerView() {
    var m = addMessage('assistant', '');
    m.dataset.state = 'waiting';
    m.setAttribute('aria-busy', 'true'); /* screen readers read it once, whole, not per token */
    var t = m.firstChild;
    var note = el('div', 'note', { role: 'status' });
    note.hidden = true;
    var meta = el('div', 'meta');
    meta.hidden = true;
    m.append(note, meta);
    return {
      el: m,
      append: function (s) {
        var stick = nearBottom();
        t.appendChild(document.createTextNode(s));
        scroll(stick);
      },
      note: function (s, isError) {
        note.hidden = !s;
        note.textContent = s || '';
        note.classList.toggle('error', !!isError);
      },
      state: function (s) {
        m.dataset.state = s;
        if (s !== 'waiting' && s !== 'streaming') m.removeAttribute('aria-busy');
      },
      stats: function (s) { meta.hidden = false; meta.textContent = s; scroll(nearBottom()); },
    };
  }

  /* ---- talking to the gateway ---- */

  var history = []; /* answered turns, sent with each new message */
  var busy = null; /* the AbortController of the turn in flight */

  function Fail(kind, message, extra) {
    var e = new Error(message);
    e.kind = kind; /* http, network, format, stream, timeout, stopped, partial */
    for (var k in extra || {}) e[k] = extra[k];
    return e;
  }

  function retryAfterMs(res) {
    var v = res.headers.get('retry-after');
    if (!v) return null;
    var s = /^\s*\d+\s*$/.test(v) ? Number(v) : (Date.parse(v) - Date.now()) / 1000;
    if (!Number.isFinite(s)) return null;
    return Math.min(Math.max(s, 0), RETRY_AFTER_MAX_S) * 1000;
  }

  async function httpError(res) {
    var msg = res.statusText || 'error';
    try {
      var j = await res.json();
      if (j && j.error && typeof j.error.message === 'string') msg = j.error.message;
    } catch (e) { /* not JSON: keep the status text */ }
    return Fail('http', 'HTTP ' + res.status + ': ' + msg, { status: res.status, retryAfter: retryAfterMs(res) });
  }

  /* An SSE parser: lines end in \n, \r\n or \r, and a chunk may end anywhere (even between the
   * \r and \n of one line ending, which then must not count as two). onData gets each event's data (data: lines joined by \n). */
  function sseParser(onData) {
    var buf = '';
    var data = null;
    var skipLF = false;
    function line(l) {
      if (l === '') {
        if (data !== null) onData(data);
        data = null;
        return;
      }
      if (l[0] === ':') return;
      var i = l.indexOf(':');
      var field = i < 0 ? l : l.slice(0, i);
      var value = i < 0 ? '' : l.slice(l[i + 1] === ' ' ? i + 2 : i + 1);
      if (field === 'data') data = data === null ? value : data + '\n' + value;
    }
    return {
      push: function (s) {
        if (!s) return;
        if (skipLF && s[0] === '\n') s = s.slice(1); /* the \n of a \r\n cut in two */
        skipLF = false;
        buf += s;
        for (;;) {
          var i = buf.search(/[\r\n]/);
          if (i < 0) return;
          line(buf.slice(0, i));
          if (buf[i] === '\r' && i === buf.length - 1) skipLF = true;
          buf = buf.slice(buf[i] === '\r' && buf[i + 1] === '\n' ? i + 2 : i + 1);
        }
      },
      end: function () { /* lenient: a last event without its blank line still counts */
        if (buf) line(buf);
        buf = '';
        line('');
      },
    };
  }

  function request(body, signal) {
    var headers = { 'Content-Type': 'application/json', Accept: body.stream ? 'text/event-stream' : 'application/json' };
    if (cfg.key) headers.Authorization = 'Bearer ' + cfg.key;
    return fetch(cfg.endpoint, { method: 'POST', headers: headers, body: JSON.stringify(body),
      signal: signal, credentials: 'omit', mode: 'cors' }).catch(function (e) {
      if (signal.aborted) throw signal.reason;
      throw Fail('network', 'network error: ' + (e && e.message ? e.message : e));
    });
  }

  /* One streamed attempt: onToken(text) for each content delta. */
  async function streamOnce(messages, signal, onToken) {
    var res = await request({ model: cfg.model, messages: messages, stream: true }, signal);
    if (!res.ok) throw await httpError(res);
    if (!/^text\/event-stream\b/i.test(res.headers.get('content-type') || '')) {
      res.body && res.body.cancel().catch(function () {});
      throw Fail('format', 'the answer was not an event stream');
    }
    var got = 0;
    var done = false; /* [DONE], or a finish_reason: the answer is whole */
    var failed = null;
    var parser = sseParser(function (data) {
      if (done === 'end' || failed) return;
      if (data === '[DONE]') { done = 'end'; return; }
      var j;
      try { j = JSON.parse(data); } catch (e) { failed = 'a malformed event'; return; }
      if (j && j.error) { failed = j.error.message || 'error'; return; }
      var ch = j && Array.isArray(j.choices) && j.choices.find(function (x) { return !x.index; });
      var c = ch && ch.delta && ch.delta.content;
      if (typeof c === 'string' && c) {
        got += c.length;
        onToken(c);
      }
      if (ch && ch.finish_reason) done = 'finished'; /* [DONE] may still follow: keep reading */
    });
    var reader = res.body.getReader();
    var dec = new TextDecoder();
    try {
      for (;;) {
        var r = await reader.read();
        if (r.done) break;
        parser.push(dec.decode(r.value, { stream: true }));
        if (done === 'end' || failed) break;
      }
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      if (!done) failed = 'the connection broke';
    }
    if (!done && !failed) {
      parser.push(dec.decode());
      parser.end();
    }
    reader.cancel().catch(function () {});
    if (!done && !failed) failed = 'the answer ended before it was complete';
    if (failed) throw Fail(got ? 'partial' : 'stream', failed);
  }

  /* One non-streaming attempt: the whole answer at once. */
  async function jsonOnce(messages, signal, onToken) {
    var res = await request({ model: cfg.model, messages: messages, stream: false }, signal);
    if (!res.ok) throw await httpError(res);
    var j;
    try { j = await res.json(); } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw Fail('format', 'the answer was not JSON');
    }
    var c = j && j.choices && j.choices[0] && j.choices[0].message && j.choices[0].message.content;
    if (typeof c !== 'string') throw Fail('format', 'the answer had no message');
    if (c) onToken(c);
  }

  function sleep(ms, signal) {
    return new Promise(function (resolve, reject) {
      if (signal.aborted) return reject(signal.reason);
      var t = setTimeout(function () { signal.removeEventListener('abort', stop); resolve(); }, ms);
      function stop() { clearTimeout(t); reject(signal.reason); }
      signal.addEventListener('abort', stop, { once: true });
    });
  }

  function backoffMs(n) {
    var d = Math.min(cfg.backoff * Math.pow(2, n), BACKOFF_MAX_MS);
    return d / 2 + Math.random() * d / 2; /* "equal jitter": at least half, at most all */
  }

  function ms(x) { return x < 10000 ? Math.round(x) + ' ms' : (x / 1000).toFixed(1) + ' s'; }

  /* A client error (4xx other than 429) is final; 429, 5xx and a broken network may pass. */
  function retryable(e) {
    return e.kind === 'network' || (e.kind === 'http' && (e.status === 429 || e.status >= 500));
  }
  /* Streaming failed before any output in a way a plain request may not. */
  function streamBroken(e) {
    return e.kind === 'network' || e.kind === 'format' || e.kind === 'stream' ||
      (e.kind === 'http' && e.status >= 500);
  }

  async function send(text) {
    addMessage('user', text);
    const view = answerView();
    const turn = new AbortController();
    busy = turn;
    sendBtn.disabled = true;
    stopBtn.hidden = false;
    const messages = (cfg.system ? [{ role: 'system', content: cfg.system }] : [])
      .concat(history, [{ role: 'user', content: text }]);
    const t0 = performance.now();
    let ttft = null;
    let answer = '';
    let mode = cfg.stream ? 'stream' : 'json';
    let fellBack = false;
    let retries = 0;
    let chunks = 0;
    let error = null; /* null: done */
    const onToken = (s) => {
      chunks++;
      if (ttft === null) {
        ttft = performance.now() - t0;
        view.state('streaming');
        view.note('');
      }
      answer += s;
      view.append(s);
    };
    for (;;) {
      /* Each attempt has its own controller: Stop and the first-token timeout both abort it. */
      const attempt = new AbortController();
      const onStop = () => attempt.abort(Fail('stopped', 'stopped'));
      turn.signal.addEventListener('abort', onStop);
      const timer = cfg.timeout ? setTimeout(() => {
        if (ttft === null) {
          attempt.abort(Fail('timeout', 'No answer within ' + ms(cfg.timeout) + ' (timed out). Please try again.'));
        }
      }, cfg.timeout) : null;
      let err = null;
      try {
        await (mode === 'stream' ? streamOnce : jsonOnce)(messages, attempt.signal, onToken);
      } catch (e) {
        err = e && e.kind ? e : Fail('network', String(e));
      } finally {
        clearTimeout(timer);
        turn.signal.removeEventListener('abort', onStop);
      }
      if (!err) break;
      if (turn.signal.aborted) err = Fail('stopped', 'stopped');
      if (err.kind === 'stopped' || err.kind === 'timeout' || answer) {
        error = err; /* once text is on screen a failure is reported, never papered over */
        break;
      }
      if (mode === 'stream' && !fellBack && streamBroken(err)) {
        mode = 'json'; /* once per message, at once: a plain request may get through */
        fellBack = true;
        view.note('Streaming failed (' + err.message + '); trying without streaming…');
        continue;
      }
      if (!retryable(err) || retries >= cfg.retries) {
        error = err;
        break;
      }
      const wait = err.retryAfter != null ? err.retryAfter + Math.random() * 200 : backoffMs(retries);
      retries++;
      view.note((err.status === 429 ? 'Rate limited' : err.message) + ' — retrying in ' +
        Math.max(1, Math.round(wait / 1000)) + ' s (' + retries + ' of ' + cfg.retries + ')…');
      try {
        await sleep(wait, turn.signal);
      } catch (s) {
        error = Fail('stopped', 'stopped');
        break;
      }
    }
    finish(view, {
      outcome: !error ? 'done' : error.kind === 'stopped' ? 'stopped' : 'error',
      error: error, ttft: ttft, total: performance.now() - t0, chunks: chunks,
      mode: mode === 'stream' ? 'stream' : fellBack ? 'fallback' : 'json', retries: retries,
    });
    if (answer || !error) history.push({ role: 'user', content: text }, { role: 'assistant', content: answer });
    busy = null;
    sendBtn.disabled = false;
    stopBtn.hidden = true;
    if (!panel.hidden) input.focus();
  }

  /* The answer's figures, like seed 001's test page: time to first token, total, chunks. */
  function finish(view, r) {
    const d = view.el.dataset;
    d.totalMs = String(Math.round(r.total));
    if (r.ttft !== null) d.ttftMs = String(Math.round(r.ttft));
    d.chunks = String(r.chunks);
    d.mode = r.mode;
    d.retries = String(r.retries);
    view.state(r.outcome);
    const parts = [];
    if (r.ttft !== null) parts.push('first token ' + ms(r.ttft));
    parts.push('total ' + ms(r.total));
    if (r.mode === 'stream' && r.chunks) parts.push(r.chunks + ' chunks');
    if (r.mode === 'fallback') parts.push('non-streaming fallback');
    if (r.mode === 'json') parts.push('non-streaming');
    if (r.retries) parts.push(r.retries + (r.retries === 1 ? ' retry' : ' retries'));
    if (r.outcome === 'stopped') parts.push('stopped');
    view.stats(parts.join(' · '));
    view.note(r.outcome === 'error' ? r.error.message : '', r.outcome === 'error');
  }

  function mount() {
    document.body.appendChild(host);
    if (cfg.open) setOpen(true, false); /* no focus stolen from the page on load */
  }
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();
