// useAIStream (seed 003's contract) under real React and react-dom (createRoot + act) in a jsdom
// document, against real sluices: a small chat component's DOM while the answer streams
// (several intermediate states, not just the end), onChunk/onComplete/onError, stopStream and
// unmounting cancelling the request (sluice logs it cancelled), a new startStream superseding
// the one in flight, errors and reset, both dialects; and no React warning on the way.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JSDOM } from 'jsdom';
import { useAIStream, createUseAIStream } from '../src/sluice-client.js';
import { useSluices, clientConfig, API_KEY, jwt, mockAnswer, rid, logLine, pollUntil } from './lib/sluices.mjs';

/* react-dom finds the document through these globals; set before it is loaded. */
const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://localhost/' });
globalThis.window = dom.window;
globalThis.document = dom.window.document;
if (!globalThis.navigator) globalThis.navigator = dom.window.navigator; /* node 20 has none; 21+ does */
globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const React = (await import('react')).default;
const { createRoot } = await import('react-dom/client');
const { act, createElement: h } = React;

const ctx = useSluices({
  main: (up, db) => clientConfig(up, { db, aichat: 'paced' }),
  slow: (up, db) => clientConfig(up, { db, aichat: 'slow' }),
}, { secrets: [API_KEY] });

const reactErrors = []; /* console.error while rendering: act() and key warnings, render errors */
const consoleError = console.error;
before(() => { console.error = (...a) => { reactErrors.push(a.map(String).join(' ')); }; });
after(() => { console.error = consoleError; });

/* probe.settled turns true when startStream's promise settles (render results only update when
 * an act() scope ends, so waits inside one look at this and at the callbacks). */
function track(probe, p) {
  probe.settled = false;
  return p.finally(() => { probe.settled = true; });
}

/*
 * Seed 003's example component: the text, "Streaming..." while it streams, the error, Send
 * and Stop. Each render's hook result is kept in probe.result.
 */
function Chat({ options, request, probe }) {
  const s = useAIStream(options, React);
  probe.result = s;
  return h('div', null,
    h('div', { id: 'text' }, s.text),
    s.isStreaming ? h('div', { id: 'streaming' }, 'Streaming...') : null,
    s.error ? h('div', { id: 'error' }, `Error: ${s.error}`) : null,
    s.isComplete ? h('div', { id: 'complete' }, 'complete') : null,
    h('button', { id: 'send', onClick: () => { probe.done = track(probe, s.startStream(request)); } }, 'Send'),
    h('button', { id: 'stop', onClick: s.stopStream }, 'Stop'),
    h('button', { id: 'reset', onClick: s.reset }, 'Reset'));
}

/* Mounted roots a failed test left behind: unmounted after each test, so one failure does not
 * leave a stream running into the next. */
const mounted = new Set();

/* Mounts <Chat> in a fresh container; returns helpers to click and read the DOM. */
async function mount(options, request) {
  const el = document.createElement('div');
  document.body.append(el);
  const root = createRoot(el);
  const probe = { result: null, done: null };
  await act(async () => { root.render(h(Chat, { options, request, probe })); });
  const $ = (sel) => el.querySelector(sel);
  const m = {
    probe,
    $,
    text: () => $('#text').textContent,
    click: (id) => act(async () => { $(`#${id}`).dispatchEvent(new dom.window.MouseEvent('click', { bubbles: true })); }),
    /* Lets the stream run inside act() until cond holds; the DOM is up to date on return. */
    runUntil: (cond, ms, label) => act(async () => { await pollUntil(cond, { timeoutMs: ms, intervalMs: 5, what: label }); }),
    async unmount() {
      if (!mounted.delete(this)) return;
      await act(async () => root.unmount());
      el.remove();
    },
  };
  mounted.add(m);
  return m;
}

const aichatOpts = (extra = {}) => ({ baseUrl: ctx.sl.main.url, token: jwt(), ...extra });

describe('useAIStream with React in jsdom', { timeout: 60_000 }, () => {
  afterEach(async () => {
    for (const m of mounted) await m.unmount();
  });

  test('returns exactly seed 003\'s fields, idle at first', async () => {
    const m = await mount(aichatOpts(), { message: 'hi' });
    const r = m.probe.result;
    assert.deepEqual(Object.keys(r).sort(),
      ['error', 'isComplete', 'isStreaming', 'reset', 'startStream', 'stopStream', 'text']);
    assert.deepEqual([r.text, r.isStreaming, r.error, r.isComplete], ['', false, null, false]);
    assert.equal(m.$('#streaming'), null);
    await m.unmount();
  });

  test('aichat: Send streams, the DOM text grows step by step, then complete; onChunk/onComplete', async () => {
    const full = await mockAnswer(ctx.sl.main);
    const chunks = [];
    const completed = [];
    const m = await mount(aichatOpts({ onChunk: (c) => chunks.push(c), onComplete: (t) => completed.push(t) }),
      { message: 'Hello, AI!', history: [], sessionId: 'session-123' });
    await m.click('send');
    assert.equal(m.$('#streaming')?.textContent, 'Streaming...');
    const shown = [];
    for (const n of [3, 10, 20]) {
      await m.runUntil(() => chunks.length >= n, 10_000, `${n} chunks`);
      shown.push(m.text());
      assert.ok(full.startsWith(m.text()), `the DOM shows a prefix of the answer: ${JSON.stringify(m.text())}`);
      assert.equal(m.text(), chunks.join(''), 'the DOM shows every chunk so far');
      if (m.probe.settled) break;
    }
    assert.ok(shown.length >= 2 && new Set(shown).size === shown.length && shown[0].length < full.length,
      `several growing intermediate states, saw ${JSON.stringify(shown.map((s) => s.length))}`);
    await m.runUntil(() => m.probe.settled, 10_000, 'the end of the stream');
    assert.equal(m.probe.result.isComplete, true);
    assert.equal(m.text(), full);
    assert.equal(m.$('#complete')?.textContent, 'complete');
    assert.equal(m.$('#streaming'), null);
    assert.equal(m.$('#error'), null);
    assert.equal(await m.probe.done, full);
    assert.equal(chunks.join(''), full);
    assert.deepEqual(completed, [full]);
    await m.unmount();
  });

  test('openai dialect: message and history become messages for options.model', async () => {
    const full = await mockAnswer(ctx.sl.main);
    const m = await mount({ dialect: 'openai', model: 'any', apiKey: API_KEY, baseUrl: ctx.sl.main.url },
      { message: 'hi', history: [{ role: 'assistant', content: 'before' }] });
    await m.click('send');
    await m.runUntil(() => m.probe.settled, 10_000, 'the end');
    assert.equal(m.probe.result.isComplete, true);
    assert.equal(m.probe.result.error, null);
    assert.equal(m.text(), full);
    await m.unmount();
  });

  test('Stop mid-stream: text kept, not streaming, no error, not complete; sluice logs it cancelled', async () => {
    const id = rid('hook-stop');
    const chunks = [];
    const m = await mount({ baseUrl: ctx.sl.slow.url, token: jwt(), headers: { 'X-Request-Id': id }, onChunk: (c) => chunks.push(c) },
      { message: 'stop me' });
    await m.click('send');
    await m.runUntil(() => chunks.length >= 2, 10_000, 'two chunks');
    await m.click('stop');
    const kept = m.text();
    assert.ok(kept.length > 0);
    assert.equal(m.$('#streaming'), null);
    assert.equal(m.$('#error'), null);
    assert.equal(m.$('#complete'), null);
    let line;
    await m.runUntil(async () => (line = await logLine(ctx.sl.slow, id, 5000)), 6000, 'the log line');
    assert.equal(line.cancelled, true);
    assert.equal(await m.probe.done, null);
    assert.equal(m.text(), kept, 'no text after Stop');
    assert.deepEqual([m.probe.result.isStreaming, m.probe.result.isComplete, m.probe.result.error], [false, false, null]);
    await m.unmount();
  });

  test('unmounting mid-stream aborts the request: sluice logs it cancelled', async () => {
    const id = rid('hook-unmount');
    const chunks = [];
    const m = await mount({ baseUrl: ctx.sl.slow.url, token: jwt(), headers: { 'X-Request-Id': id }, onChunk: (c) => chunks.push(c) },
      { message: 'unmount me' });
    await m.click('send');
    await m.runUntil(() => chunks.length >= 1, 10_000, 'a chunk');
    await m.unmount();
    const line = await logLine(ctx.sl.slow, id, 5000);
    assert.equal(line.cancelled, true);
  });

  test('a new startStream stops the one in flight (cancelled) and shows only the new answer', async () => {
    const full = await mockAnswer(ctx.sl.main);
    const first = rid('hook-first');
    const chunks = [];
    const opts = { dialect: 'openai', model: 'any', apiKey: API_KEY, baseUrl: ctx.sl.main.url, onChunk: (c) => chunks.push(c) };
    const m = await mount(opts, { message: 'x' });
    let p1;
    await act(async () => { p1 = m.probe.result.startStream({ model: 'slow', messages: [{ role: 'user', content: first }] }); });
    await m.runUntil(() => chunks.length >= 2, 10_000, 'the first stream\'s chunks');
    await m.click('send'); /* model "any" */
    await m.runUntil(() => m.probe.settled, 10_000, 'the second stream');
    assert.equal(m.probe.result.isComplete, true);
    assert.equal(await p1, null);
    assert.equal(m.text(), full);
    const line = await ctx.sl.main.waitForLog((l) => l.model === 'slow', 5000, 'the first stream\'s log line');
    assert.equal(line.cancelled, true);
    await m.unmount();
  });

  test('an error: error is the message, onError(message, SluiceError), Reset clears everything', async () => {
    const reported = [];
    const m = await mount({ baseUrl: ctx.sl.main.url, onError: (msg, err) => reported.push([msg, err]) }, { message: 'no token' });
    await m.click('send');
    await m.runUntil(() => m.probe.settled, 10_000, 'the error');
    const r = m.probe.result;
    assert.equal(typeof r.error, 'string');
    assert.equal(m.$('#error').textContent, `Error: ${r.error}`);
    assert.equal(r.isStreaming, false);
    assert.equal(r.isComplete, false);
    assert.equal(reported.length, 1);
    assert.equal(reported[0][0], r.error);
    assert.equal(reported[0][1].name, 'SluiceError');
    assert.equal(reported[0][1].status, 401);
    await m.click('reset');
    assert.deepEqual([m.probe.result.text, m.probe.result.isStreaming, m.probe.result.error, m.probe.result.isComplete], ['', false, null, false]);
    assert.equal(m.$('#error'), null);
    await m.unmount();
  });

  test('under StrictMode (effects run twice on mount) the stream still runs to the end', async () => {
    const full = await mockAnswer(ctx.sl.main);
    const el = document.createElement('div');
    const root = createRoot(el);
    const probe = { result: null, done: null };
    const chunks = [];
    await act(async () => {
      root.render(h(React.StrictMode, null, h(Chat, { options: aichatOpts({ onChunk: (c) => chunks.push(c) }), request: { message: 'strict' }, probe })));
    });
    await act(async () => { el.querySelector('#send').dispatchEvent(new dom.window.MouseEvent('click', { bubbles: true })); });
    await act(async () => { await pollUntil(() => probe.settled, { timeoutMs: 10_000, intervalMs: 5, what: 'the end of the stream' }); });
    assert.equal(el.querySelector('#text').textContent, full);
    assert.equal(probe.result.isComplete, true);
    assert.equal(chunks.join(''), full);
    await act(async () => root.unmount());
  });

  test('React is injectable: a TypeError without it, createUseAIStream(React) binds it', async () => {
    assert.throws(() => useAIStream({}, undefined), /pass React/);
    const useBound = createUseAIStream(React);
    const probe = {};
    function Bound() { probe.r = useBound({}); return null; }
    const el = document.createElement('div');
    const root = createRoot(el);
    await act(async () => { root.render(h(Bound)); });
    assert.deepEqual([probe.r.text, probe.r.isStreaming, probe.r.error, probe.r.isComplete], ['', false, null, false]);
    await act(async () => root.unmount());
  });

  test('no React warning or error was logged', () => {
    assert.deepEqual(reactErrors, []);
  });
});

ctx.testCleanExit();
