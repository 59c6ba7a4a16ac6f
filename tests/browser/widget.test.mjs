// The embeddable widget (web/widget.js, seed 001) in a real headless Chromium against a real
// sluice: a host page on another origin (a node server on its own port) holding nothing but
// the <script> tag, CORS from sluice's config, answers streamed from the mock provider, and
// failures played by a scripted upstream (tests/browser/lib/widget-upstream.mjs): fallback to
// non-streaming, 429 + Retry-After, 5xx backoff, the first-token timeout cancelling upstream,
// Stop, HTML in answers shown as text, hostile host CSS, strict CSPs, a phone-width screen.
// Screenshot: /tmp/sluice-widget.png, and with SLUICE_SCREENSHOTS=docs/img docs/img/widget.png.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { useSluice } from '../integ/lib/sluice.mjs';
import { launchChromium } from '../lib/chromium.mjs';
import { assertNever, pollUntil } from '../integ/lib/poll.mjs';
import { mockAnswer } from './lib/config.mjs';
import { startHostPages, widgetConfig } from './lib/widget-config.mjs';
import { defaultPieces, startScriptedUpstream } from './lib/widget-upstream.mjs';

const SCREENSHOT = '/tmp/sluice-widget.png';
const DOCS_IMG = process.env.SLUICE_SCREENSHOTS ? path.resolve(process.env.SLUICE_SCREENSHOTS) : null;
const KEY = 'sk-widget-test';
/* How long "nothing more arrives after Stop" is watched: six tokens' time of the slow mock
 * (20/s). The Stop test first shows that text does grow within this window while streaming. */
const STOP_WINDOW_MS = 300;
/* How long an <img> from an answer is given to load and fire onerror (were there one); a
 * broken <img> in the host page is shown to fire within it. */
const IMG_WINDOW_MS = 500;

let up; /* the scripted upstream behind sluice's "scripted*" models */
let direct; /* another one, with CORS, that the widget calls without sluice */
let pages; /* the host pages' server: another origin than sluice */
const ctx = useSluice(async () => {
  up = await startScriptedUpstream();
  pages = await startHostPages();
  return widgetConfig(up, pages.origin);
}, { upstream: false, secrets: [KEY] });

let chromium; /* launchChromium()'s: the browser, its page, close() */
let page;
let full; /* the mock's whole answer */
let problems = []; /* uncaught exceptions, CSP violations, console errors */
const chatRequests = []; /* every POST the page made for a chat answer */

before(async () => {
  direct = await startScriptedUpstream({ cors: true });
  chromium = await launchChromium({ viewport: { width: 1000, height: 720 } });
  ({ page } = chromium);
  // Runs in every document before its own scripts, and is not subject to the page's CSP.
  await page.addInitScript(() => {
    globalThis.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      globalThis.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // A 4xx/5xx or a dropped connection is logged by Chromium itself: those are the tests' doing.
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().includes('/chat/completions')) {
      chatRequests.push({ url: r.url(), headers: r.headers(), body: r.postDataJSON() });
    }
  });
});

after(async () => {
  await chromium?.close();
  await up?.close();
  await direct?.close();
  await pages?.close();
});

/* Opens a host page holding the widget's script tag with these data- attributes. */
async function load(attrs = {}, opts = {}) {
  const url = opts.url ?? pages.page(ctx.sl.url, attrs, opts);
  const res = await page.goto(url, { waitUntil: 'load' });
  assert.equal(res.status(), 200);
  await page.waitForFunction(() => document.querySelector('sluice-widget')?.shadowRoot?.querySelector('.bubble'));
  return url;
}

async function open() {
  if (await page.locator('.panel').isHidden()) await page.click('.bubble');
  await page.locator('.panel').waitFor({ state: 'visible' });
}

/* The last answer as the widget shows it. */
const lastAnswer = () => page.evaluate(() => {
  const r = document.querySelector('sluice-widget').shadowRoot;
  const m = [...r.querySelectorAll('.msg.assistant')].at(-1);
  if (!m) return null;
  const note = m.querySelector('.note');
  const meta = m.querySelector('.meta');
  return {
    state: m.dataset.state, text: m.querySelector('.text').textContent,
    note: note.hidden ? null : note.textContent, error: note.classList.contains('error'),
    stats: meta.hidden ? null : meta.textContent, ttft: m.dataset.ttftMs, total: m.dataset.totalMs,
    chunks: m.dataset.chunks, mode: m.dataset.mode, retries: m.dataset.retries,
  };
});

/*
 * Types text and presses Enter, then samples the new answer's text length every 15 ms in the
 * page until it settles, and collects every note it showed. during(), if given, runs once the
 * answer is streaming, or once waitFor(lastAnswer()) holds.
 */
async function ask(text, { during, waitFor } = {}) {
  await open();
  const n = await page.evaluate(() => document.querySelector('sluice-widget').shadowRoot.querySelectorAll('.msg.assistant').length);
  const sampling = page.evaluate((count) => new Promise((resolve) => {
    const r = document.querySelector('sluice-widget').shadowRoot;
    const samples = [];
    const notes = new Set();
    const t0 = performance.now();
    const latest = () => { const all = r.querySelectorAll('.msg.assistant'); return all.length > count ? all[all.length - 1] : null; };
    // Every note shown, however briefly (the fallback's lasts a few ms): seen by a mutation observer.
    const mo = new MutationObserver(() => {
      const note = latest()?.querySelector('.note');
      if (note && !note.hidden && note.textContent) notes.add(note.textContent);
    });
    mo.observe(r, { subtree: true, childList: true, characterData: true, attributes: true });
    const iv = setInterval(() => {
      const m = latest();
      if (!m) return;
      samples.push(m.querySelector('.text').textContent.length);
      if (['done', 'stopped', 'error'].includes(m.dataset.state) || performance.now() - t0 > 20000) {
        clearInterval(iv);
        mo.disconnect();
        resolve({ samples, notes: [...notes] });
      }
    }, 15);
  }), n);
  await page.fill('textarea', text);
  await page.press('textarea', 'Enter');
  if (during) {
    if (waitFor) {
      await pollUntil(lastAnswer, { until: waitFor, timeoutMs: 5000, intervalMs: 20, what: 'the answer to get there' });
    } else {
      await page.waitForFunction((count) => {
        const all = document.querySelector('sluice-widget').shadowRoot.querySelectorAll('.msg.assistant');
        return all.length > count && all[all.length - 1].dataset.state === 'streaming';
      }, n);
    }
    await during();
  }
  const { samples, notes } = await sampling;
  return { samples, notes, answer: await lastAnswer() };
}

const violations = () => page.evaluate(() => globalThis.__violations);

describe('the widget on a page of another origin', { timeout: 180_000 }, () => {
  test('one <script> tag: the bubble appears, opens and closes by mouse and keyboard, with accessible names', async () => {
    full = await mockAnswer(ctx.sl);
    const url = await load({ title: 'Ask us' });
    assert.notEqual(new URL(url).origin, new URL(ctx.sl.url).origin, 'the page and sluice are two origins');
    const added = await page.evaluate(() => [...document.body.children].map((e) => e.localName));
    assert.deepEqual(added, ['script', 'sluice-widget'], 'one element added to the page, nothing else');
    const bubble = page.getByRole('button', { name: 'Open chat: Ask us' });
    assert.equal(await bubble.isVisible(), true);
    assert.equal(await bubble.getAttribute('aria-expanded'), 'false');
    assert.equal(await page.getByRole('dialog').count(), 0, 'the panel starts closed');
    await bubble.click();
    const dialog = page.getByRole('dialog', { name: 'Ask us' });
    await dialog.waitFor({ state: 'visible' });
    assert.equal(await page.locator('.title').textContent(), 'Ask us');
    assert.equal(await page.getByRole('button', { name: 'Close chat: Ask us' }).getAttribute('aria-expanded'), 'true');
    assert.equal(await page.getByRole('textbox', { name: 'Message' }).isVisible(), true);
    assert.equal(await page.getByRole('button', { name: 'Send message' }).isVisible(), true);
    assert.equal(await page.getByRole('log', { name: 'Conversation' }).isVisible(), true);
    const focused = () => page.evaluate(() => document.querySelector('sluice-widget').shadowRoot.activeElement?.className ?? null);
    assert.equal(await focused(), '', 'the message box has the focus (the textarea has no class)');
    assert.equal(await page.evaluate(() => document.querySelector('sluice-widget').shadowRoot.activeElement.localName), 'textarea');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await focused(), 'bubble', 'Esc closes and gives the focus back to the bubble');
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'visible' });
    await page.getByRole('button', { name: 'Close chat', exact: true }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.deepEqual(problems, []);
  });

  test('streaming: the answer grows on screen, ends as the mock\'s whole answer, shows first-token and total times', async () => {
    const before = chatRequests.length;
    const { samples, answer } = await ask('Hello there');
    assert.equal(answer.state, 'done', JSON.stringify(answer));
    assert.equal(answer.text, full);
    const partial = [...new Set(samples.filter((l) => l > 0 && l < full.length))];
    assert.ok(partial.length >= 3, `the text must appear progressively; sampled lengths ${samples.join(',')}`);
    for (let i = 1; i < samples.length; i++) assert.ok(samples[i] >= samples[i - 1], `text shrank: ${samples.join(',')}`);
    const ttft = Number(answer.ttft);
    const total = Number(answer.total);
    assert.ok(ttft >= 40 && ttft < 5000, `ttft ${answer.ttft}`);
    assert.ok(total >= ttft + 150, `total ${answer.total} vs ttft ${answer.ttft} (30 tokens at 100/s)`);
    assert.equal(answer.chunks, '30');
    assert.equal(answer.mode, 'stream');
    assert.equal(answer.stats, `first token ${ttft} ms · total ${total} ms · 30 chunks`);
    // Sent to the script's own origin (no data-endpoint), model "any", streaming.
    const sent = chatRequests.slice(before);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].url, `${ctx.sl.url}/v1/chat/completions`);
    assert.equal(sent[0].headers.accept, 'text/event-stream');
    assert.equal(sent[0].headers.authorization, undefined, 'no data-key, no Authorization');
    assert.deepEqual(sent[0].body, { model: 'any', messages: [{ role: 'user', content: 'Hello there' }], stream: true });
    const line = await ctx.sl.waitForLog((l) => l.path === '/v1/chat/completions' && l.stream === true && l.status === 200, 3000, 'the streamed request');
    assert.equal(line.model, 'any');
    assert.deepEqual(problems, []);
  });

  test('the conversation goes with each question; Shift+Enter adds a line, Enter sends', async () => {
    const before = chatRequests.length;
    await page.fill('textarea', 'Line one');
    await page.press('textarea', 'Shift+Enter');
    await page.type('textarea', 'line two');
    assert.equal(await page.inputValue('textarea'), 'Line one\nline two');
    const { answer } = await ask(await page.inputValue('textarea'));
    assert.equal(answer.state, 'done');
    assert.equal(answer.text, full);
    assert.deepEqual(chatRequests.slice(before).map((r) => r.body.messages), [[
      { role: 'user', content: 'Hello there' },
      { role: 'assistant', content: full },
      { role: 'user', content: 'Line one\nline two' },
    ]]);
    const users = await page.evaluate(() => [...document.querySelector('sluice-widget').shadowRoot.querySelectorAll('.msg.user .text')].map((e) => e.textContent));
    assert.deepEqual(users, ['Hello there', 'Line one\nline two']);
    await page.screenshot({ path: SCREENSHOT });
    if (DOCS_IMG) {
      fs.mkdirSync(DOCS_IMG, { recursive: true });
      fs.copyFileSync(SCREENSHOT, path.join(DOCS_IMG, 'widget.png'));
    }
    assert.ok(fs.statSync(SCREENSHOT).size > 5000);
  });

  test('Stop mid-stream: the text stops growing, the Stop button goes, sluice logs the request cancelled', async () => {
    await load({ model: 'slow', key: KEY });
    const before = ctx.sl.accessLog().length;
    const { answer } = await ask('A long one please', {
      during: async () => {
        assert.equal(await page.getByRole('button', { name: 'Stop the answer' }).isVisible(), true);
        assert.equal(await page.getByRole('button', { name: 'Send message' }).isDisabled(), true);
        // The positive control of the absence check below: while it streams, the text grows
        // within STOP_WINDOW_MS.
        const grown = (await lastAnswer())?.text.length ?? 0;
        await pollUntil(async () => (await lastAnswer())?.text.length ?? 0, { until: (n) => n > grown, timeoutMs: STOP_WINDOW_MS, intervalMs: 20, what: `the streaming text to grow within ${STOP_WINDOW_MS} ms` });
        await page.getByRole('button', { name: 'Stop the answer' }).click();
      },
    });
    assert.equal(answer.state, 'stopped', JSON.stringify(answer));
    assert.ok(answer.text.length > 0, 'the text so far stays');
    assert.match(answer.stats, /^first token \d+ ms · total \d+ ms · \d+ chunks · stopped$/);
    assert.equal(await page.locator('.stop').isHidden(), true);
    assert.equal(await page.getByRole('button', { name: 'Send message' }).isDisabled(), false);
    const line = await ctx.sl.waitForLog((l, i) => i >= before && l.model === 'slow', 3000, 'the stopped request');
    assert.equal(line.cancelled, true);
    assert.equal(chatRequests.at(-1).headers.authorization, `Bearer ${KEY}`, 'data-key is sent as a Bearer token');
    // From the stopped state on, the text never changes (watched for STOP_WINDOW_MS more).
    await assertNever(async () => (await lastAnswer()).text, { until: (t) => t !== answer.text, windowMs: STOP_WINDOW_MS, intervalMs: 20, what: 'text added after Stop' });
  });

  test('streaming breaks before any text: the same question is asked without streaming, and answered', async () => {
    await load({ model: 'scripted-fallback' });
    const want = defaultPieces({ messages: [{ role: 'user', content: 'Fall back' }] }).join('');
    // 1. headers and the role chunk, then the upstream drops: sluice ends its stream with an
    //    error event before any text.  2. the upstream answers 502, and so does sluice.
    for (const fail of [{ drop: 'after-role' }, { status: 502 }]) {
      const drop = JSON.stringify(fail);
      const from = up.script([fail, {}]);
      const { answer, notes } = await ask('Fall back');
      assert.equal(answer.state, 'done', `${drop}: ${JSON.stringify(answer)}`);
      assert.equal(answer.text, want);
      assert.equal(answer.mode, 'fallback');
      assert.match(answer.stats, /^first token \d+ ms · total \d+ ms · non-streaming fallback$/);
      assert.ok(notes.some((n) => /^Streaming failed .*trying without streaming/.test(n)), `${drop}: ${notes}`);
      assert.deepEqual(up.requests.slice(from).map((r) => r.stream), [true, false], drop);
    }
  });

  test('the stream breaks after some text: the text stays, the error is shown, nothing is retried', async () => {
    await load({ model: 'scripted-mid', retries: '2' });
    const pieces = defaultPieces({ messages: [{ role: 'user', content: 'Break' }] });
    const from = up.script([{ dropAfter: 2, gap: 20 }]);
    const { answer } = await ask('Break');
    assert.equal(answer.state, 'error', JSON.stringify(answer));
    assert.equal(answer.text, pieces.slice(0, 2).join(''));
    assert.equal(answer.chunks, '2');
    assert.equal(answer.error, true);
    assert.ok(answer.note.length > 0 && !answer.note.startsWith('HTTP'), `the in-stream error: ${answer.note}`);
    assert.match(answer.stats, /^first token \d+ ms · total \d+ ms · 2 chunks$/);
    assert.equal(up.requests.length - from, 1, 'once text is shown, a failure is reported, not retried');
  });

  test('429 with Retry-After: 1, then an answer: the widget waits at least a second, says so, and gets it', async () => {
    await load({ model: 'scripted-429', retries: '2' });
    const from = up.script([{ status: 429, retryAfter: 1 }, {}]);
    const { answer, notes } = await ask('Busy?');
    assert.equal(answer.state, 'done', JSON.stringify(answer));
    assert.equal(answer.text, defaultPieces({ messages: [{ role: 'user', content: 'Busy?' }] }).join(''));
    assert.equal(answer.mode, 'stream', 'a 429 is not a streaming failure');
    assert.equal(answer.retries, '1');
    assert.match(answer.stats, / · 1 retry$/);
    assert.ok(notes.includes('Rate limited — retrying in 1 s (1 of 2)…'), notes.join(' | '));
    const rs = up.requests.slice(from);
    assert.equal(rs.length, 2, 'two attempts reached the upstream');
    assert.deepEqual(rs.map((r) => r.stream), [true, true]);
    const gap = rs[1].t - rs[0].t;
    assert.ok(gap >= 950 && gap < 4000, `second attempt ${Math.round(gap)} ms after the first`);
    assert.ok(Number(answer.total) >= 1000, `total ${answer.total}`);

    // Retry-After: 3600 is capped at 30 s; Stop ends the wait, and nothing more is sent. No
    // test waits 30 s to see nothing come: the page's timers are watched instead (every
    // setTimeout of a second or more still pending), so the wait is seen to be a pending timer
    // before Stop (the positive control) and to be cancelled by it.
    await page.evaluate(() => {
      const pending = new Map();
      const set = globalThis.setTimeout;
      const clear = globalThis.clearTimeout;
      globalThis.__longTimers = () => [...pending.values()];
      globalThis.setTimeout = function (fn, ms, ...args) {
        const id = set((...a) => { pending.delete(id); if (typeof fn === 'function') fn(...a); }, ms, ...args);
        if (ms >= 1000) pending.set(id, ms);
        return id;
      };
      globalThis.clearTimeout = function (id) { pending.delete(id); return clear(id); };
    });
    const longTimers = () => page.evaluate(() => globalThis.__longTimers());
    const from2 = up.script([{ status: 429, retryAfter: 3600 }, {}]);
    let waiting;
    const { answer: waited } = await ask('Busy for an hour?', {
      waitFor: (a) => a.note === 'Rate limited — retrying in 30 s (1 of 2)…',
      during: async () => {
        waiting = await longTimers();
        await page.getByRole('button', { name: 'Stop the answer' }).click();
      },
    });
    assert.equal(waited.state, 'stopped', JSON.stringify(waited));
    assert.match(waited.stats, /^total \d+ ms · 1 retry · stopped$/);
    assert.equal(waiting.filter((ms) => ms >= 30_000 && ms < 30_200).length, 1, `the 30 s wait is a pending timer: ${JSON.stringify(waiting)}`);
    assert.deepEqual(await longTimers(), [], 'Stop cancels the wait');
    await assertNever(() => up.requests.length - from2, { until: (n) => n !== 1, windowMs: 500, what: 'another request after Stop' });
  });

  test('5xx: after the immediate non-streaming fallback, retried with growing backoff; out of retries, the error is shown', async () => {
    await load({ model: 'scripted-5xx', retries: '2', backoff: '400' });
    let from = up.script([{ status: 502 }, { status: 500 }, { status: 503 }, {}]);
    const { answer, notes } = await ask('Flaky');
    assert.equal(answer.state, 'done', JSON.stringify(answer));
    assert.equal(answer.text, defaultPieces({ messages: [{ role: 'user', content: 'Flaky' }] }).join(''));
    assert.equal(answer.mode, 'fallback');
    assert.equal(answer.retries, '2');
    assert.match(answer.stats, / · non-streaming fallback · 2 retries$/);
    assert.ok(notes.some((n) => /^HTTP 500: scripted 500 — retrying in \d s \(1 of 2\)…$/.test(n)), notes.join(' | '));
    let rs = up.requests.slice(from);
    assert.deepEqual(rs.map((r) => r.stream), [true, false, false, false]);
    const gaps = rs.slice(1).map((r, i) => Math.round(r.t - rs[i].t));
    // Backoff n waits between half and all of 400·2^n ms (jitter); the fallback does not wait.
    assert.ok(gaps[1] >= 190 && gaps[1] < 1500, `first backoff ${gaps[1]} ms (${gaps})`);
    assert.ok(gaps[2] >= 390 && gaps[2] < 2500, `second backoff ${gaps[2]} ms (${gaps})`);
    assert.ok(gaps[0] < gaps[2], `the fallback is immediate (${gaps})`);

    from = up.script(() => ({ status: 500 }));
    const failed = (await ask('Down')).answer;
    assert.equal(failed.state, 'error');
    assert.equal(failed.note, 'HTTP 500: scripted 500');
    assert.equal(failed.error, true);
    assert.equal(failed.text, '');
    rs = up.requests.slice(from);
    assert.deepEqual(rs.map((r) => r.stream), [true, false, false, false], 'stream, fallback, two retries, then it stops');
  });

  test('a 4xx client error (unknown model) is shown at once: no retry, no fallback', async () => {
    await load({ model: 'nowhere', retries: '3' });
    const before = chatRequests.length;
    const { answer } = await ask('Anyone?');
    assert.equal(answer.state, 'error');
    assert.equal(answer.error, true);
    const r = await fetch(`${ctx.sl.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'nowhere', messages: [{ role: 'user', content: 'x' }], stream: true }),
    });
    assert.equal(r.status, 404);
    assert.equal(answer.note, `HTTP 404: ${(await r.json()).error.message}`);
    assert.deepEqual(chatRequests.slice(before).map((q) => [q.body.model, q.body.stream]), [['nowhere', true]], 'asked once');
    assert.equal(answer.retries, '0');
  });

  test('no first token within data-timeout: a timeout message, and sluice cancels the upstream request', async () => {
    await load({ model: 'scripted-hang', timeout: '800', retries: '2' });
    const from = up.script(() => ({ hang: true }));
    const before = ctx.sl.accessLog().length;
    const { answer } = await ask('Hello?');
    assert.equal(answer.state, 'error', JSON.stringify(answer));
    assert.equal(answer.note, 'No answer within 800 ms (timed out). Please try again.');
    assert.ok(Number(answer.total) >= 790 && Number(answer.total) < 3000, `total ${answer.total}`);
    assert.equal(answer.ttft, undefined);
    const rec = await up.waitFor((rs) => rs.slice(from).find((r) => r.closed), 3000, 'the upstream request to be closed');
    assert.equal(rec.closedEarly, true, 'closed by sluice before any answer');
    assert.ok(rec.closedAt - rec.t < 2500, `closed ${Math.round(rec.closedAt - rec.t)} ms after it arrived (sluice's own first_byte is 5 s)`);
    const line = await ctx.sl.waitForLog((l, i) => i >= before && l.model === 'scripted-hang', 3000, 'the timed-out request');
    assert.equal(line.cancelled, true);
    assert.equal(up.requests.length - from, 1, 'a timeout is not retried');
    assert.equal(await page.getByRole('button', { name: 'Send message' }).isDisabled(), false);
  });

  test('an answer holding <img onerror> and <script> is shown as text and runs nothing', async () => {
    await load({ model: 'scripted-xss' });
    const pieces = ['Here: ', '<img src=x onerror="window.__pwned=1">', ' and ', '<script>window.__pwned=2</script>', ' <b>bold?</b>'];
    up.script([{ pieces }]);
    const requested = [];
    const onReq = (r) => requested.push(r.url());
    page.on('request', onReq);
    const { answer } = await ask('<img src=y onerror="window.__pwned=3">');
    // Were an <img> made of the answer or the question, it would be fetched and fire onerror
    // within IMG_WINDOW_MS (the control at the end shows a broken image does).
    const fetched = () => requested.filter((u) => /\/[xy]$/.test(u));
    await assertNever(async () => ({ pwned: await page.evaluate(() => globalThis.__pwned ?? null), fetched: fetched() }), {
      until: (v) => v.pwned !== null || v.fetched.length > 0, windowMs: IMG_WINDOW_MS, what: 'an image fetched or a handler run from the text',
    });
    page.off('request', onReq);
    assert.equal(answer.state, 'done');
    assert.equal(answer.text, pieces.join(''));
    const dom = await page.evaluate(() => {
      const r = document.querySelector('sluice-widget').shadowRoot;
      return { elements: r.querySelectorAll('.msg img, .msg script, .msg b').length, pwned: globalThis.__pwned ?? null,
        user: [...r.querySelectorAll('.msg.user .text')].at(-1).textContent };
    });
    assert.deepEqual(dom, { elements: 0, pwned: null, user: '<img src=y onerror="window.__pwned=3">' });
    assert.deepEqual(fetched(), [], 'no image was fetched');
    // The positive control: a broken <img> in the host page is fetched and fires its error
    // well within the window.
    const controlMs = await page.evaluate(() => new Promise((resolve) => {
      const t0 = performance.now();
      const img = new Image();
      img.onerror = () => resolve(performance.now() - t0);
      img.src = `/no-such-image-${Math.random()}`;
    }));
    assert.ok(controlMs < IMG_WINDOW_MS / 2, `a broken image took ${controlMs.toFixed(0)} ms to fail: the ${IMG_WINDOW_MS} ms window is too short`);
  });
});

describe('SSE framing and fallback without sluice (data-endpoint on a server of its own)', { timeout: 60_000 }, () => {
  const want = ['héllo ', '世界', ' 🌊🚀', ' ñandú', ' ✓\nnext line'];
  test('\\n, \\r\\n and \\r line endings, with lines, \\r\\n pairs and UTF-8 characters split across reads', async () => {
    await load({ endpoint: `http://127.0.0.1:${direct.port}/v1/chat/completions`, model: 'direct' });
    for (const eol of ['\n', '\r\n', '\r']) {
      const from = direct.script([{ eol, split: 7, pieces: want }]);
      const { answer } = await ask(`eol ${JSON.stringify(eol)}`);
      assert.equal(answer.state, 'done', `${JSON.stringify(eol)}: ${JSON.stringify(answer)}`);
      assert.equal(answer.text, want.join(''), JSON.stringify(eol));
      assert.equal(answer.chunks, '5');
      assert.equal(direct.requests.length - from, 1);
    }
  });

  test('a network error or an answer that is not an event stream: non-streaming fallback', async () => {
    for (const step of [{ drop: 'garbage' }, { notSSE: true }]) {
      const from = direct.script([step, {}]);
      const { answer } = await ask('Plain please');
      assert.equal(answer.state, 'done', `${JSON.stringify(step)}: ${JSON.stringify(answer)}`);
      assert.equal(answer.mode, 'fallback');
      assert.equal(answer.text, defaultPieces({ messages: [{ role: 'user', content: 'Plain please' }] }).join(''));
      assert.deepEqual(direct.requests.slice(from).map((r) => r.stream), [true, false]);
    }
  });
});

/* Computed styles and boxes of the widget's parts (and of the host element). */
const widgetLook = () => page.evaluate(() => {
  const host = document.querySelector('sluice-widget');
  const r = host.shadowRoot;
  const props = ['display', 'position', 'visibility', 'opacity', 'transform', 'color', 'backgroundColor',
    'fontFamily', 'fontSize', 'fontWeight', 'lineHeight', 'letterSpacing', 'wordSpacing', 'textTransform',
    'textAlign', 'paddingTop', 'paddingLeft', 'marginTop', 'borderTopWidth', 'borderTopStyle', 'boxSizing', 'width', 'height'];
  const look = (e, box = true) => {
    const cs = getComputedStyle(e);
    const b = e.getBoundingClientRect();
    const keep = box ? props : props.filter((p) => p !== 'width' && p !== 'height'); /* text varies */
    return { ...Object.fromEntries(keep.map((p) => [p, cs[p]])), ...(box ? { box: [b.x, b.y, b.width, b.height].map(Math.round) } : {}) };
  };
  const out = { host: look(host) };
  for (const sel of ['.bubble', '.bubble svg', '.panel', '.head', '.title', '.close', '.log', 'textarea', '.send',
    '.msg.user .text', '.msg.assistant .text']) out[sel] = look(r.querySelector(sel));
  out['.meta'] = look(r.querySelector('.msg.assistant .meta'), false);
  return out;
});

const hostLook = () => page.evaluate(() => Object.fromEntries(['body', 'p.own', 'button.own', 'div.own'].map((sel) => {
  const cs = getComputedStyle(document.querySelector(sel));
  const b = document.querySelector(sel).getBoundingClientRect();
  return [sel, { font: cs.font, color: cs.color, bg: cs.backgroundColor, margin: cs.margin, padding: cs.padding,
    border: cs.border, box: [b.x, b.y, b.width, b.height].map(Math.round), boxSizing: cs.boxSizing }];
})));

describe('isolation and CSP', { timeout: 90_000 }, () => {
  const own = '<p class="own">Host text</p><div class="own">A host div</div><button class="own">Host button</button>';

  test('the host page\'s hostile CSS changes nothing in the widget, and the widget changes nothing on the page', async () => {
    const snap = async (opts) => {
      await load({ title: 'Ask us' }, { extra: own, ...opts });
      await ask('Hi');
      assert.equal((await lastAnswer()).state, 'done');
      return { widget: await widgetLook(), host: await hostLook() };
    };
    const clean = await snap({});
    const hostile = await snap({ hostile: true });
    assert.equal(hostile.host['p.own'].font.includes('40px'), true, 'the hostile stylesheet is in force on the page');
    assert.equal(hostile.host['div.own'].bg, 'rgb(255, 255, 0)');
    assert.equal(clean.widget['.msg.assistant .text'].fontSize, '14px');
    assert.equal(clean.widget.host.position, 'fixed');
    assert.deepEqual(hostile.widget, clean.widget);
    // Without the widget, the page's own elements look exactly the same.
    await page.goto(pages.page(ctx.sl.url, {}, { extra: own, widget: false }));
    assert.deepEqual(await hostLook(), clean.host);
    await page.goto(pages.page(ctx.sl.url, {}, { extra: own, widget: false, hostile: true }));
    assert.deepEqual(await hostLook(), hostile.host);
  });

  test('/widget-demo.html on sluice, under its CSP (default-src \'self\'): styled, answers, no violation', async () => {
    const res = await fetch(`${ctx.sl.url}/widget-demo.html`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy'); /* sluice's header on every page */
    const js = await fetch(`${ctx.sl.url}/widget.js`);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(js.headers.get('x-content-type-options'), 'nosniff');
    assert.match(js.headers.get('etag'), /^"[0-9a-f]{16}"$/);
    await load({}, { url: `${ctx.sl.url}/widget-demo.html` });
    const doc = await page.evaluate(() => ({
      inlineScripts: document.querySelectorAll('script:not([src])').length,
      styleElements: document.querySelectorAll('style').length,
      styleAttrs: document.querySelectorAll('[style]').length,
      snippet: document.querySelector('pre code').textContent,
      title: document.querySelector('sluice-widget').shadowRoot.querySelector('.title').textContent,
    }));
    assert.match(csp, /^default-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.deepEqual([doc.inlineScripts, doc.styleElements, doc.styleAttrs], [0, 0, 0]);
    assert.match(doc.snippet, /^<script src="https:\/\/gw\.example\/widget\.js"[\s\S]*data-title="Ask us"[\s\S]*async><\/script>$/);
    assert.equal(doc.title, 'Ask sluice');
    const { answer } = await ask('Hello from the demo');
    assert.equal(answer.state, 'done');
    assert.equal(answer.text, full);
    const look = await widgetLook();
    assert.equal(look['.bubble'].backgroundColor, 'rgb(11, 107, 203)', 'the widget\'s stylesheet applies');
    assert.deepEqual(look['.bubble'].box.slice(2), [56, 56]);
    assert.equal(look.host.position, 'fixed');
    assert.deepEqual(await violations(), []);
    // The CSP is really in force: an inline <style> added now is refused and reported. The
    // report is an event: wait for it, then the rule must not apply (while the same colour
    // set through the CSSOM, which style-src allows, does: the reading is not blind).
    await page.evaluate(() => {
      const s = document.createElement('style');
      s.id = 'csp-probe';
      s.textContent = 'body { background-color: rgb(1, 2, 3) }';
      document.head.append(s);
    });
    await pollUntil(violations, { until: (v) => v.some((x) => x.startsWith('style-src')), timeoutMs: 3000, intervalMs: 20, what: 'the style-src violation report' });
    const applied = await page.evaluate(() => {
      const refused = getComputedStyle(document.body).backgroundColor;
      document.getElementById('csp-probe').remove();
      document.body.style.backgroundColor = 'rgb(1, 2, 3)';
      const allowed = getComputedStyle(document.body).backgroundColor;
      document.body.style.backgroundColor = '';
      return { refused, allowed };
    });
    assert.deepEqual(applied, { refused: applied.refused, allowed: 'rgb(1, 2, 3)' }, 'the CSSOM colour applies');
    assert.notEqual(applied.refused, 'rgb(1, 2, 3)', 'the inline <style> was applied despite the CSP');
    // Chromium also says so on the console: wait for that line, then drop it (ours, just now).
    await pollUntil(() => problems.some((p) => /inline style/.test(p)), { timeoutMs: 3000, intervalMs: 20, what: 'Chromium\'s console line about the refused inline style' });
    problems = problems.filter((p) => !/inline style/.test(p));
  });

  test('a host page of another origin with a strict CSP header: styled, answers, no violation', async () => {
    const csp = `default-src 'none'; script-src ${ctx.sl.url}; connect-src ${ctx.sl.url}; style-src 'self'`;
    await load({ title: 'Strict' }, { csp });
    const { answer } = await ask('Strict hello');
    assert.equal(answer.state, 'done');
    assert.equal(answer.text, full);
    const look = await widgetLook();
    assert.equal(look['.bubble'].backgroundColor, 'rgb(11, 107, 203)');
    assert.equal(look['.msg.assistant .text'].fontSize, '14px');
    assert.deepEqual(await violations(), []);
  });

  test('phone width (375 px): the open panel fits the screen, the bubble and composer stay usable', async () => {
    await page.setViewportSize({ width: 375, height: 667 });
    try {
      await load({ title: 'Ask us' });
      await open();
      const boxes = await page.evaluate(() => {
        const r = document.querySelector('sluice-widget').shadowRoot;
        return Object.fromEntries(['.panel', 'textarea', '.send', '.close'].map((s) => {
          const b = r.querySelector(s).getBoundingClientRect();
          return [s, { left: b.left, top: b.top, right: b.right, bottom: b.bottom, width: b.width }];
        }));
      });
      for (const [sel, b] of Object.entries(boxes)) {
        assert.ok(b.left >= 0 && b.top >= 0 && b.right <= 375 && b.bottom <= 667, `${sel} off screen: ${JSON.stringify(b)}`);
      }
      assert.ok(boxes['.panel'].width >= 340, `the panel uses the width: ${boxes['.panel'].width}`);
      assert.equal(await page.locator('.bubble').isHidden(), true, 'the bubble would sit on the Send button: the close button stands for it');
      assert.ok(boxes.textarea.width >= 200, `room to type: ${boxes.textarea.width}`);
      const { answer } = await ask('Small screen');
      assert.equal(answer.text, full);
      await page.getByRole('button', { name: 'Close chat', exact: true }).click();
      assert.equal(await page.locator('.bubble').isVisible(), true);
      assert.equal(await page.evaluate(() => document.querySelector('sluice-widget').shadowRoot.activeElement?.className), 'bubble');
    } finally {
      await page.setViewportSize({ width: 1000, height: 720 });
    }
    assert.deepEqual(problems, []);
  });
});

ctx.testCleanExit();
