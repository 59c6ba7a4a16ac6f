// The chat page (web/, embedded in sluice) in a real headless Chromium (Debian's, driven by
// playwright-core): the model list from /v1/models, streaming answers that grow on screen, the
// non-streaming switch, Stop cancelling the upstream, sanitized markdown, Copy buttons, errors
// from the HTTP status and from inside the stream and their Retry, the stats line with tokens/s,
// the keyboard, the API key's storage, a phone-width layout, and no request leaving sluice's
// origin. Screenshots go to /tmp/sluice-chat.png and /tmp/sluice-chat-phone.png; with
// SLUICE_SCREENSHOTS=docs/img also to docs/img/chat.png and chat-phone.png for the README.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { contentPieces } from '../integ/lib/fake-upstream.mjs';
import { startSluice, stopAndCheck, useSluice } from '../integ/lib/sluice.mjs';
import { launchChromium } from '../lib/chromium.mjs';
import { assertNever, pollUntil } from '../integ/lib/poll.mjs';
import { browserConfig, mockAnswer, startPageUpstream, MARKDOWN_ANSWER, MARKDOWN_CODE, MARKDOWN_PIECES, MARKDOWN_TOKENS } from './lib/config.mjs';

const SCREENSHOT = '/tmp/sluice-chat.png';
const PHONE_SCREENSHOT = '/tmp/sluice-chat-phone.png';
/* Where README copies go, only when asked: a normal run must not touch the tree. */
const DOCS_IMG = process.env.SLUICE_SCREENSHOTS ? path.resolve(process.env.SLUICE_SCREENSHOTS) : null;
const DESKTOP = { width: 1100, height: 860 };
/* How long "nothing more arrives after Stop" is watched: six tokens' time of the slow mock
 * (20/s). The Stop tests first show that text does grow within this window while streaming. */
const STOP_WINDOW_MS = 300;
const PHONE = { width: 390, height: 844 };

let pageUp; /* the page upstream: model "markdown", and "flaky" failing on demand */
let config; /* what the sluice under test runs */
const ctx = useSluice(async (up) => {
  pageUp = await startPageUpstream();
  config = browserConfig(up, pageUp);
  return config;
}, { secrets: ['sk-page-test'] });
let chromium; /* launchChromium()'s: the browser (a persistent context on a fresh profile), close() */
let browser;
let page;
let full; /* the mock's whole answer */
const offOrigin = [];
const modelsAsked = []; /* the Authorization header of each GET /v1/models (null: none) */
const problems = []; /* console errors, CSP violations, uncaught exceptions */

before(async () => {
  chromium = await launchChromium({ viewport: DESKTOP });
  ({ browser, page } = chromium);
});

after(async () => {
  await chromium?.close();
  await pageUp?.close();
});

/* The last assistant message's state, text, error, Retry and stats. */
const lastAnswer = (p = page) => p.evaluate(() => {
  const m = [...document.querySelectorAll('.msg.assistant')].at(-1);
  if (!m) return null;
  const err = m.querySelector('.error');
  return {
    state: m.dataset.state,
    text: m.querySelector('.body').textContent,
    html: m.querySelector('.body').innerHTML,
    error: err.hidden ? null : m.querySelector('.error-msg').textContent,
    retry: !err.hidden && m.querySelector('.retry').checkVisibility(),
    ttft: m.dataset.ttftMs,
    total: m.dataset.totalMs,
    chunks: m.dataset.chunks,
    tokens: m.dataset.tokens,
    tokensPerS: m.dataset.tokensPerS,
    tokensFrom: m.dataset.tokensFrom,
    stats: m.querySelector('.stats').hidden ? null : m.querySelector('.stats').textContent,
  };
});

const assistantCount = (p = page) => p.locator('.msg.assistant').count();

/* Waits until the page is scripted (after a load or a reload). */
const ready = (p = page) => p.waitForFunction(() => globalThis.sluiceChat && globalThis.marked && globalThis.DOMPurify);

/* tokens/s must be tokens over the total time (the attributes are rounded: 0.1 tok/s, 1 ms). */
function assertRate(a) {
  const rate = Number(a.tokensPerS);
  const want = Number(a.tokens) / (Number(a.total) / 1000);
  assert.ok(rate > 0, `tokens/s ${a.tokensPerS}`);
  assert.ok(Math.abs(rate - want) <= Math.max(0.1, want * 0.01), `tokens/s ${a.tokensPerS} vs ${a.tokens} tokens in ${a.total} ms`);
  assert.match(a.stats, new RegExp(`tokens/s ${a.tokensPerS.replace('.', '\\.')}`));
}

/*
 * Sends text and samples the new answer's text length in the page every 15 ms until it
 * settles (done, stopped or error). onStreaming runs once the first token is on screen.
 */
async function send(text, { onStreaming, p = page } = {}) {
  const n = await assistantCount(p);
  const sampling = p.evaluate((count) => new Promise((resolve) => {
    const samples = [];
    const t0 = performance.now();
    const iv = setInterval(() => {
      const all = document.querySelectorAll('.msg.assistant');
      if (all.length <= count) return;
      const m = all[all.length - 1];
      samples.push(m.querySelector('.body').textContent.length);
      if (['done', 'stopped', 'error'].includes(m.dataset.state) || performance.now() - t0 > 15000) {
        clearInterval(iv);
        resolve(samples);
      }
    }, 15);
  }), n);
  await p.fill('#prompt', text);
  await p.press('#prompt', 'Enter');
  if (onStreaming) {
    await p.waitForFunction((count) => {
      const all = document.querySelectorAll('.msg.assistant');
      return all.length > count && all[all.length - 1].dataset.state === 'streaming' &&
        all[all.length - 1].querySelector('.body').textContent.length > 0;
    }, n);
    await onStreaming();
  }
  const samples = await sampling;
  return { samples, answer: await lastAnswer(p) };
}

async function setModel(model) {
  await page.fill('#model', model);
  await page.dispatchEvent('#model', 'change');
}

describe('the chat page in Chromium', { timeout: 120_000 }, () => {
  test('loads from sluice alone: CSP header, no inline script, Streaming on and model "any" by default', async () => {
    full = await mockAnswer(ctx.sl);
    page.on('request', (r) => { if (!r.url().startsWith(ctx.sl.url)) offOrigin.push(r.url()); });
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => { if (new URL(r.url()).pathname === '/v1/models') modelsAsked.push(r.headers().authorization ?? null); });
    const res = await page.goto(`${ctx.sl.url}/`, { waitUntil: 'load' });
    assert.equal(res.status(), 200);
    assert.equal(res.headers()['content-security-policy']?.startsWith("default-src 'self'"), true);
    assert.equal(res.headers()['x-content-type-options'], 'nosniff');
    await ready();
    assert.equal(await page.inputValue('#model'), 'any');
    assert.equal(await page.isChecked('#streaming'), true);
    assert.equal(await page.isDisabled('#stop'), true);
    assert.equal(await page.locator('script:not([src])').count(), 0, 'no inline script');
    assert.equal(await page.title(), 'sluice chat');
  });

  test('the model field suggests the models of GET /v1/models, and still says "any"', async () => {
    await page.waitForSelector('#models-note[data-state="ok"]', { state: 'attached' });
    const listed = await page.evaluate(() => ({
      options: [...document.querySelectorAll('#models option')].map((o) => o.value),
      list: document.querySelector('#model').getAttribute('list'),
      note: document.querySelector('#models-note').textContent,
    }));
    const served = (await (await fetch(`${ctx.sl.url}/v1/models`)).json()).data.map((m) => m.id);
    assert.deepEqual(served, Object.keys(config.models), 'sluice lists the configured models');
    assert.deepEqual(listed.options, served);
    assert.ok(served.includes('markdown') && served.includes('drop-mid*'), served.join(' '));
    assert.equal(listed.list, 'models', 'an <input list>: any other name can still be typed');
    assert.equal(listed.note, '');
    assert.equal(await page.inputValue('#model'), 'any');
    assert.deepEqual(modelsAsked, [null], 'asked once, without a key (none is set)');
  });

  test('streaming: the answer grows on screen, ends with the whole text, stats show TTFT/total/chunks', async () => {
    const { samples, answer } = await send('Hello there');
    assert.equal(answer.state, 'done', JSON.stringify(answer));
    assert.equal(answer.text.trim(), full);
    const partial = [...new Set(samples.filter((l) => l > 0 && l < full.length))];
    assert.ok(partial.length >= 3, `the text must appear progressively; sampled lengths ${samples.join(',')}`);
    for (let i = 1; i < samples.length; i++) assert.ok(samples[i] >= samples[i - 1], `text shrank: ${samples.join(',')}`);
    const ttft = Number(answer.ttft);
    const total = Number(answer.total);
    assert.ok(ttft >= 40 && ttft < 5000, `ttft ${answer.ttft}`);
    assert.ok(total >= ttft + 150, `total ${answer.total} vs ttft ${answer.ttft} (30 tokens at 100/s)`);
    assert.equal(answer.chunks, '30');
    assert.match(answer.stats, /first token \d+ ms/);
    assert.match(answer.stats, /total \d+(\.\d+)? m?s/);
    assert.match(answer.stats, /chunks 30/);
    assert.match(answer.stats, /tokens 30 \(usage\)/, 'usage asked with stream_options is shown');
    assert.equal(answer.tokens, '30');
    assert.equal(answer.tokensFrom, 'usage');
    assertRate(answer);
    const line = await ctx.sl.waitForLog((l) => l.path === '/v1/chat/completions' && l.stream === true && l.status === 200, 3000, 'the streamed request');
    assert.equal(line.model, 'any');
  });

  test('streaming off: one JSON answer, shown whole at once', async () => {
    await page.uncheck('#streaming');
    const { samples, answer } = await send('Same again, in one piece');
    await page.check('#streaming');
    assert.equal(answer.state, 'done', JSON.stringify(answer));
    assert.equal(answer.text.trim(), full);
    assert.ok(samples.every((l) => l === 0 || l >= full.length), `no partial text without streaming: ${samples.join(',')}`);
    assert.equal(answer.chunks, '1');
    assert.equal(answer.tokens, '30', 'the JSON answer\'s usage');
    assertRate(answer);
    assert.ok(Number(answer.total) >= 300, `the mock takes ~350 ms: total ${answer.total}`);
    await ctx.sl.waitForLog((l) => l.stream === false && l.status === 200 && l.model === 'any', 3000, 'the non-streaming request');
  });

  test('Stop mid-stream: the text stops growing, the buttons reset, sluice logs cancelled:true', async () => {
    await setModel('slow');
    const before = ctx.sl.accessLog().length;
    const { answer } = await send('A long one please', {
      onStreaming: async () => {
        assert.equal(await page.isDisabled('#stop'), false);
        assert.equal(await page.isDisabled('#send'), true);
        // The positive control of the absence check below: while it streams, the text grows
        // within STOP_WINDOW_MS.
        const grown = (await lastAnswer()).text.length;
        await pollUntil(async () => (await lastAnswer()).text.length, { until: (n) => n > grown, timeoutMs: STOP_WINDOW_MS, intervalMs: 20, what: `the streaming text to grow within ${STOP_WINDOW_MS} ms` });
        await page.click('#stop');
      },
    });
    assert.equal(answer.state, 'stopped', JSON.stringify(answer));
    assert.ok(answer.text.length > 0 && answer.text.length < 400 * 3, `partial text kept (${answer.text.length} chars)`);
    assert.match(answer.stats, /stopped/);
    // No usage arrives for a stopped stream: the chunk count stands in, and the line says so.
    assert.equal(answer.tokensFrom, 'chunks');
    assert.equal(answer.tokens, answer.chunks);
    assert.match(answer.stats, new RegExp(`tokens ${answer.chunks} \\(counted as chunks\\)`));
    assertRate(answer);
    assert.equal(await page.isDisabled('#stop'), true);
    assert.equal(await page.isDisabled('#send'), false);
    const line = await ctx.sl.waitForLog((l, i) => i >= before && l.model === 'slow', 3000, 'the stopped request');
    assert.equal(line.cancelled, true);
    assert.equal(line.stream, true);
    // From the stopped state on, the text never changes (watched for STOP_WINDOW_MS more).
    await assertNever(async () => (await lastAnswer()).text, { until: (t) => t !== answer.text, windowMs: STOP_WINDOW_MS, intervalMs: 20, what: 'text added after Stop' });
    await setModel('any');
  });

  test('markdown: marked renders, DOMPurify strips the onerror handler', async () => {
    const seen = problems.length;
    const out = await page.evaluate(() => {
      const html = globalThis.sluiceChat.renderMarkdown('**bold** <img src=x onerror=alert(1)>');
      const t = document.createElement('template'); /* inert: the <img> does not load */
      t.innerHTML = html;
      const c = t.content;
      return { html, strong: c.querySelector('strong')?.textContent ?? null, img: c.querySelectorAll('img').length, handlers: c.querySelectorAll('[onerror]').length };
    });
    assert.equal(out.strong, 'bold');
    assert.equal(out.img, 1, 'the <img> stays, without its handler');
    assert.equal(out.handlers, 0);
    assert.doesNotMatch(out.html, /onerror/i);
    // Chromium checks the CSP as soon as the parser meets onerror= (even in DOMPurify's inert
    // document) and reports it refused: expected here (wait for that report), and nothing else.
    await pollUntil(() => problems.length > seen, { timeoutMs: 3000, intervalMs: 20, what: 'Chromium\'s report of the refused inline handler' });
    const here = problems.splice(seen);
    assert.ok(here.every((p) => /inline event handler.*blocked/s.test(p)), here.join('\n'));
  });

  test('the user\'s text is shown as text, never as HTML', async () => {
    await setModel('nowhere');
    const { answer } = await send('<b>not bold</b>');
    const user = await page.evaluate(() => {
      const u = [...document.querySelectorAll('.msg.user')].at(-1);
      return { text: u.textContent, bold: u.querySelectorAll('b').length };
    });
    assert.match(user.text, /<b>not bold<\/b>/);
    assert.equal(user.bold, 0);
    // Model routed nowhere: sluice answers 404 before any stream; the page shows error.message.
    assert.equal(answer.state, 'error');
    const r = await fetch(`${ctx.sl.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'nowhere', messages: [{ role: 'user', content: 'x' }], stream: true }),
    });
    assert.equal(r.status, 404);
    const msg = (await r.json()).error.message;
    assert.equal(answer.error, `HTTP 404: ${msg}`);
    assert.equal(answer.text, '');
    await setModel('any');
  });

  test('an error event inside the stream is shown after the text that came before it', async () => {
    await setModel('drop-mid:3');
    const { answer } = await send('This one breaks');
    assert.equal(answer.state, 'error', JSON.stringify(answer));
    assert.ok(answer.text.length > 0, 'the chunks before the error stay');
    assert.ok(answer.error && answer.error.length > 0 && !answer.error.startsWith('HTTP'), `in-stream error: ${answer.error}`);
    assert.equal(answer.chunks, '3');
    await setModel('any');
  });

  test('the API key is sent as a Bearer token and, not remembered, is stored nowhere', async () => {
    let auth = null;
    let sent = null;
    const listener = (req) => {
      if (!req.url().endsWith('/v1/chat/completions')) return;
      auth = req.headers().authorization ?? null;
      sent = req.postDataJSON();
    };
    page.on('request', listener);
    await page.fill('#apikey', 'sk-page-test');
    await page.dispatchEvent('#apikey', 'change');
    const { answer } = await send('With a key');
    page.off('request', listener);
    assert.equal(answer.state, 'done');
    assert.equal(auth, 'Bearer sk-page-test');
    // The conversation so far goes with it: answered turns (a stopped or broken answer's text
    // included), the unanswered 404 question left out, so roles alternate.
    const roles = sent.messages.map((m) => m.role);
    assert.deepEqual(roles, ['user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user']);
    assert.equal(sent.messages.at(-1).content, 'With a key');
    assert.equal(sent.messages[1].content, full);
    const stored = await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage));
    assert.doesNotMatch(stored, /sk-page-test/, 'in memory only: "Remember key" is not ticked');
    // A new key may see other models: the list is asked for again, with it.
    await page.waitForFunction(() => document.querySelector('#models-note').dataset.state === 'ok');
    assert.deepEqual(modelsAsked, [null, 'Bearer sk-page-test']);
    await page.fill('#apikey', '');
    await page.dispatchEvent('#apikey', 'change');
  });

  test('"Remember key": ticked, the key is in localStorage and survives a reload; unticked, it is gone at once', async () => {
    const stored = () => page.evaluate(() => ({
      local: localStorage.getItem('sluice.apiKey'),
      all: JSON.stringify(localStorage) + JSON.stringify(sessionStorage),
    }));
    await page.fill('#apikey', 'sk-page-test');
    await page.dispatchEvent('#apikey', 'change');
    assert.equal((await stored()).local, null, 'not before the box is ticked');
    await page.check('#remember');
    assert.equal((await stored()).local, 'sk-page-test');
    await page.fill('#apikey', 'sk-page-test-2'); /* typed, no change event yet */
    assert.equal((await stored()).local, 'sk-page-test-2', 'a remembered key is saved as it is typed');
    await page.reload({ waitUntil: 'load' });
    await ready();
    assert.equal(await page.inputValue('#apikey'), 'sk-page-test-2');
    assert.equal(await page.isChecked('#remember'), true);
    await page.uncheck('#remember');
    const s = await stored();
    assert.equal(s.local, null);
    assert.doesNotMatch(s.all, /sk-page-test/);
    assert.equal(await page.inputValue('#apikey'), 'sk-page-test-2', 'still in this tab\'s memory');
    await page.reload({ waitUntil: 'load' });
    await ready();
    assert.equal(await page.inputValue('#apikey'), '', 'not remembered: a reload forgets it');
    assert.equal(await page.isChecked('#remember'), false);
    assert.doesNotMatch((await stored()).all, /sk-page-test/);
  });

  test('keyboard: Shift+Enter adds a line without sending, Enter sends both lines, Esc stops', async () => {
    await setModel('slow');
    const n = await assistantCount();
    await page.fill('#prompt', 'line one');
    await page.press('#prompt', 'Shift+Enter');
    await page.keyboard.type('line two');
    assert.equal(await page.inputValue('#prompt'), 'line one\nline two');
    assert.equal(await assistantCount(), n, 'Shift+Enter sent nothing');
    const streaming = page.waitForFunction((count) => {
      const all = document.querySelectorAll('.msg.assistant');
      return all.length > count && all[all.length - 1].dataset.state === 'streaming';
    }, n);
    await page.press('#prompt', 'Enter');
    await streaming;
    assert.equal(await page.inputValue('#prompt'), '', 'Enter sent it');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => [...document.querySelectorAll('.msg.assistant')].at(-1).dataset.state === 'stopped');
    const user = await page.evaluate(() => [...document.querySelectorAll('.msg.user .body')].at(-1).textContent);
    assert.equal(user, 'line one\nline two');
    await setModel('any');
  });

  test('a code block gets a Copy button that puts its code on the clipboard; "Copy answer" copies the markdown', async () => {
    await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: ctx.sl.url });
    await setModel('markdown');
    const { answer } = await send('What is sluice?');
    await setModel('any');
    assert.equal(answer.state, 'done', JSON.stringify(answer));
    const last = page.locator('.msg.assistant').last();
    const dom = await last.evaluate((m) => ({
      pre: m.querySelectorAll('.body pre').length,
      buttons: [...m.querySelectorAll('.body .code > .copy')].map((b) => b.textContent),
      code: m.querySelector('.body pre code')?.textContent,
      items: m.querySelectorAll('.body li').length,
    }));
    assert.equal(dom.pre, 1);
    assert.deepEqual(dom.buttons, ['Copy']);
    assert.equal(dom.code, MARKDOWN_CODE);
    assert.equal(dom.items, 3);
    const clipboard = () => page.evaluate(() => navigator.clipboard.readText());
    const copiedState = (sel) => last.locator(sel).evaluate((b) => ({ text: b.textContent, copied: b.dataset.copied ?? null }));
    await page.evaluate(() => navigator.clipboard.writeText('not yet'));
    await last.locator('.body .code .copy').click();
    await page.waitForFunction(() => document.querySelector('.msg.assistant:last-of-type .code .copy').dataset.copied === 'true');
    assert.deepEqual(await copiedState('.body .code .copy'), { text: 'Copied', copied: 'true' });
    assert.equal(await clipboard(), MARKDOWN_CODE);
    // The whole answer, as markdown.
    await page.evaluate(() => navigator.clipboard.writeText('not yet'));
    await last.locator('.who .copy').click();
    await page.waitForFunction(() => document.querySelector('.msg.assistant:last-of-type .who .copy').dataset.copied === 'true');
    assert.equal(await clipboard(), MARKDOWN_ANSWER);
    // The "Copied" state is a moment, not for good.
    await page.waitForFunction(() => document.querySelector('.msg.assistant:last-of-type .code .copy').textContent === 'Copy', null, { timeout: 5000 });
  });

  test('tokens and tokens/s: usage.completion_tokens when the stream reports it, not the chunk count', async () => {
    await setModel('markdown');
    const { answer } = await send('Once more, with numbers');
    await setModel('any');
    assert.equal(answer.state, 'done', JSON.stringify(answer));
    assert.equal(answer.chunks, String(MARKDOWN_PIECES.length));
    assert.notEqual(MARKDOWN_TOKENS, MARKDOWN_PIECES.length, 'the test needs them to differ');
    assert.equal(answer.tokens, String(MARKDOWN_TOKENS));
    assert.equal(answer.tokensFrom, 'usage');
    assert.match(answer.stats, new RegExp(`tokens ${MARKDOWN_TOKENS} \\(usage\\)`));
    assertRate(answer);
  });

  /* Sends a question to model "flaky" whose first request fails as `kind`, clicks Retry and
   * returns what happened; the page's requests are captured as the page sent them. */
  async function failThenRetry(question, kind) {
    const sent = [];
    const listener = (req) => { if (req.url().endsWith('/v1/chat/completions')) sent.push(req.postDataJSON()); };
    page.on('request', listener);
    try {
      await setModel('flaky');
      pageUp.failNext(kind);
      const { answer: failed } = await send(question);
      const n = await assistantCount();
      const failedEl = await page.locator('.msg.assistant').last().elementHandle();
      await page.locator('.msg.assistant').last().locator('.retry').click();
      // The failed bubble goes at once; its replacement settles once the new answer ended.
      await page.waitForFunction((old) => !old.isConnected &&
        ['done', 'error', 'stopped'].includes([...document.querySelectorAll('.msg.assistant')].at(-1).dataset.state), failedEl);
      const retried = await lastAnswer();
      return { failed, retried, sent, countBefore: n, countAfter: await assistantCount() };
    } finally {
      page.off('request', listener);
      await setModel('any');
    }
  }

  test('Retry after an HTTP error re-sends the same turn (same history) and replaces the failed answer', async () => {
    await page.click('#clear');
    await send('First question');
    const r = await failThenRetry('Second question', 'status');
    assert.equal(r.failed.state, 'error', JSON.stringify(r.failed));
    assert.match(r.failed.error, /^HTTP 503: /);
    assert.equal(r.failed.retry, true, 'the error shows a Retry button');
    assert.equal(r.retried.state, 'done', JSON.stringify(r.retried));
    const want = contentPieces({ model: 'flaky', messages: [{ role: 'user', content: 'Second question' }] }).join('');
    assert.equal(r.retried.text.trim(), want.trim());
    assert.equal(r.retried.error, null);
    assert.equal(r.countAfter, r.countBefore, 'replaced, not added');
    assert.equal(r.sent.length, 2);
    assert.deepEqual(r.sent[1].messages, r.sent[0].messages, 'the retry sends the same conversation');
    assert.deepEqual(r.sent[0].messages.map((m) => m.role), ['user', 'assistant', 'user']);
    assert.deepEqual(pageUp.requests.slice(-2).map((q) => q.fail), ['status', null], 'the upstream failed once, then answered');
    // The next question carries the retried answer as context.
    let next = null;
    const listener = (req) => { if (req.url().endsWith('/v1/chat/completions')) next = req.postDataJSON(); };
    page.on('request', listener);
    await send('Third question');
    page.off('request', listener);
    assert.deepEqual(next.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant', 'user']);
    assert.equal(next.messages[3].content, want);
  });

  test('Retry after an error inside the stream drops the partial text and replaces the answer', async () => {
    const r = await failThenRetry('Fourth question', 'drop');
    assert.equal(r.failed.state, 'error', JSON.stringify(r.failed));
    assert.ok(r.failed.text.length > 0, 'the failed answer showed its first chunks');
    assert.doesNotMatch(r.failed.error, /^HTTP/, 'an in-stream error');
    assert.equal(r.failed.retry, true);
    assert.equal(r.retried.state, 'done', JSON.stringify(r.retried));
    const want = contentPieces({ model: 'flaky', messages: [{ role: 'user', content: 'Fourth question' }] }).join('');
    assert.equal(r.retried.text.trim(), want.trim());
    assert.equal(r.countAfter, r.countBefore);
    assert.deepEqual(r.sent[1].messages, r.sent[0].messages, 'the partial answer is not sent as context of its own retry');
    assert.equal(r.sent[1].messages.at(-1).content, 'Fourth question');
  });

  test('model list behind auth: a 401 leaves the typed name working and says why; the key brings the list', async () => {
    const KEY = 'sk-page-auth-0123';
    const sl2 = await startSluice({ config: { ...browserConfig(null), workers: 1, auth: { keys: [{ name: 'dev', key: KEY }] } } });
    const p2 = await browser.newPage();
    try {
      const asked = [];
      p2.on('request', (r) => { if (new URL(r.url()).pathname === '/v1/models') asked.push(r.headers().authorization ?? null); });
      await p2.goto(`${sl2.url}/`, { waitUntil: 'load' });
      await ready(p2);
      await p2.waitForSelector('#models-note[data-state="error"]', { state: 'attached' });
      assert.match(await p2.textContent('#models-note'), /HTTP 401.*type a name/);
      assert.equal(await p2.locator('#models option').count(), 0);
      assert.equal(await p2.inputValue('#model'), 'any');
      // Without a key the question is refused in place, and the page goes on working.
      const { answer: refused } = await send('No key yet', { p: p2 });
      assert.equal(refused.state, 'error');
      assert.match(refused.error, /^HTTP 401: /);
      await p2.fill('#apikey', KEY);
      await p2.dispatchEvent('#apikey', 'change');
      await p2.waitForSelector('#models-note[data-state="ok"]', { state: 'attached' });
      assert.deepEqual(await p2.locator('#models option').evaluateAll((os) => os.map((o) => o.value)), ['any', 'slow']);
      assert.equal(await p2.textContent('#models-note'), '');
      assert.deepEqual(asked, [null, `Bearer ${KEY}`]);
      const { answer } = await send('Now with the key', { p: p2 });
      assert.equal(answer.state, 'done', JSON.stringify(answer));
    } finally {
      await p2.close();
      await stopAndCheck(sl2, { secrets: [KEY] });
    }
  });

  test('phone width (390×844): no sideways scroll, message box and Send/Stop in view, settings folded', async () => {
    await page.click('#clear');
    await setModel('markdown'); /* while the settings are in view */
    await page.setViewportSize(PHONE);
    try {
      const { answer } = await send('What is sluice?');
      assert.equal(answer.state, 'done');
      const layout = () => page.evaluate(() => {
        const box = (sel) => {
          const r = document.querySelector(sel).getBoundingClientRect();
          return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, w: r.width };
        };
        return { scrollWidth: document.documentElement.scrollWidth, innerWidth, innerHeight,
          send: box('#send'), stop: box('#stop'), prompt: box('#prompt'), model: box('#model') };
      });
      const inView = (l, name) => {
        const b = l[name];
        assert.ok(b.left >= 0 && b.right <= l.innerWidth && b.top >= 0 && b.bottom <= l.innerHeight, `${name} out of view: ${JSON.stringify(b)}`);
      };
      let l = await layout();
      assert.equal(l.innerWidth, PHONE.width);
      assert.ok(l.scrollWidth <= l.innerWidth, `scrollWidth ${l.scrollWidth} > ${l.innerWidth}`);
      for (const name of ['send', 'stop', 'prompt']) inView(l, name);
      assert.ok(l.prompt.w >= 150, `the message box is usable: ${l.prompt.w}px`);
      assert.equal(await page.isVisible('#settings'), false, 'folded away');
      await page.screenshot({ path: PHONE_SCREENSHOT });
      if (DOCS_IMG) await page.screenshot({ path: path.join(DOCS_IMG, 'chat-phone.png') });
      await page.click('#settings-toggle');
      assert.equal(await page.getAttribute('#settings-toggle', 'aria-expanded'), 'true');
      assert.equal(await page.isVisible('#model'), true);
      await page.evaluate(() => window.scrollTo(0, 0));
      l = await layout();
      assert.ok(l.scrollWidth <= l.innerWidth, `open settings: scrollWidth ${l.scrollWidth}`);
      inView(l, 'model');
      inView(l, 'send');
      await page.click('#settings-toggle');
      assert.equal(await page.isVisible('#settings'), false);
    } finally {
      await page.setViewportSize(DESKTOP);
      await setModel('any');
    }
    assert.ok(fs.statSync(PHONE_SCREENSHOT).size > 10_000);
  });

  test('screenshot: a fresh conversation with a streamed answer and an error', async () => {
    await page.click('#clear');
    await send('What is sluice?');
    await page.uncheck('#streaming');
    await send('And without streaming?');
    await page.check('#streaming');
    await setModel('nowhere');
    await send('Ask a model nobody serves');
    await setModel('any');
    await page.focus('#prompt');
    await page.screenshot({ path: SCREENSHOT, fullPage: false });
    assert.ok(fs.statSync(SCREENSHOT).size > 10_000);
    if (!DOCS_IMG) return;
    // For the README: one streamed markdown answer with its code block and stats line.
    await page.click('#clear');
    await setModel('markdown');
    const { answer } = await send('What is sluice, and how do I call it from Python?');
    assert.equal(answer.state, 'done');
    await setModel('any');
    await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, document.scrollingElement.scrollHeight); });
    assert.ok(await page.locator('.msg.assistant .stats').last().isVisible());
    await page.screenshot({ path: path.join(DOCS_IMG, 'chat.png') });
  });

  test('nothing left sluice\'s origin, no CSP violation, no script error', () => {
    assert.deepEqual(offOrigin, []);
    // The 404 and 503 the error tests provoke are logged by Chromium as failed resources.
    const real = problems.filter((p) => !/status of (404|503)/.test(p));
    assert.deepEqual(real, []);
  });
});

ctx.testCleanExit();
