// The chat page (web/, embedded in sluice) in a real headless Chromium (Debian's, driven by
// playwright-core): streaming answers that grow on screen, the non-streaming switch, Stop
// cancelling the upstream, sanitized markdown, errors from the HTTP status and from inside the
// stream, the stats line, and no request leaving sluice's origin. Ends with a screenshot in
// /tmp/sluice-chat.png.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { useSluice } from '../integ/lib/sluice.mjs';
import { browserConfig, mockAnswer } from './lib/config.mjs';

// playwright-core is a dev dependency of tests/integ (one node_modules for every node test).
const require = createRequire(new URL('../integ/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const SCREENSHOT = '/tmp/sluice-chat.png';

const ctx = useSluice((up) => browserConfig(up), { secrets: ['sk-page-test'] });
let browser; /* a persistent context on a fresh profile */
let profile;
let page;
let full; /* the mock's whole answer */
const offOrigin = [];
const problems = []; /* console errors, CSP violations, uncaught exceptions */

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: scripts/deps.sh installs Debian's chromium`);
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 860 },
    timeout: 30_000,
  });
  page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(10_000);
});

after(async () => {
  await browser?.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

/* The last assistant message's state, text and stats. */
const lastAnswer = () => page.evaluate(() => {
  const m = [...document.querySelectorAll('.msg.assistant')].at(-1);
  if (!m) return null;
  const err = m.querySelector('.error');
  return {
    state: m.dataset.state,
    text: m.querySelector('.body').textContent,
    html: m.querySelector('.body').innerHTML,
    error: err.hidden ? null : err.textContent,
    ttft: m.dataset.ttftMs,
    total: m.dataset.totalMs,
    chunks: m.dataset.chunks,
    stats: m.querySelector('.stats').hidden ? null : m.querySelector('.stats').textContent,
  };
});

/*
 * Sends text and samples the new answer's text length in the page every 15 ms until it
 * settles (done, stopped or error). onStreaming runs once the first token is on screen.
 */
async function send(text, { onStreaming } = {}) {
  const n = await page.locator('.msg.assistant').count();
  const sampling = page.evaluate((count) => new Promise((resolve) => {
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
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  if (onStreaming) {
    await page.waitForFunction((count) => {
      const all = document.querySelectorAll('.msg.assistant');
      return all.length > count && all[all.length - 1].dataset.state === 'streaming' &&
        all[all.length - 1].querySelector('.body').textContent.length > 0;
    }, n);
    await onStreaming();
  }
  const samples = await sampling;
  return { samples, answer: await lastAnswer() };
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
    const res = await page.goto(`${ctx.sl.url}/`, { waitUntil: 'load' });
    assert.equal(res.status(), 200);
    assert.equal(res.headers()['content-security-policy']?.startsWith("default-src 'self'"), true);
    assert.equal(res.headers()['x-content-type-options'], 'nosniff');
    await page.waitForFunction(() => globalThis.sluiceChat && globalThis.marked && globalThis.DOMPurify);
    assert.equal(await page.inputValue('#model'), 'any');
    assert.equal(await page.isChecked('#streaming'), true);
    assert.equal(await page.isDisabled('#stop'), true);
    assert.equal(await page.locator('script:not([src])').count(), 0, 'no inline script');
    assert.equal(await page.title(), 'sluice chat');
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
    assert.match(answer.stats, /tokens 30/, 'usage asked with stream_options is shown');
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
        await page.click('#stop');
      },
    });
    assert.equal(answer.state, 'stopped', JSON.stringify(answer));
    assert.ok(answer.text.length > 0 && answer.text.length < 400 * 3, `partial text kept (${answer.text.length} chars)`);
    assert.match(answer.stats, /stopped/);
    assert.equal(await page.isDisabled('#stop'), true);
    assert.equal(await page.isDisabled('#send'), false);
    const line = await ctx.sl.waitForLog((l, i) => i >= before && l.model === 'slow', 3000, 'the stopped request');
    assert.equal(line.cancelled, true);
    assert.equal(line.stream, true);
    const kept = (await lastAnswer()).text;
    await page.waitForTimeout(150); // a few tokens' time at 20/s: nothing more may arrive
    assert.equal((await lastAnswer()).text, kept);
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
    // document) and reports it refused: expected here, and nowhere else.
    await page.waitForTimeout(50);
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

  test('the API key is sent as a Bearer token and kept in sessionStorage only', async () => {
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
    const stored = await page.evaluate(() => ({ s: sessionStorage.getItem('sluice.apiKey'), l: JSON.stringify(localStorage) }));
    assert.equal(stored.s, 'sk-page-test');
    assert.doesNotMatch(stored.l, /sk-page-test/);
    await page.fill('#apikey', '');
    await page.dispatchEvent('#apikey', 'change');
  });

  test('/sluice-client.js works in the browser (import + streamChat)', async () => {
    const text = await page.evaluate(async () => {
      const m = await import('/sluice-client.js');
      return m.streamChat({ body: { model: 'any', messages: [{ role: 'user', content: 'hi' }] } });
    });
    assert.equal(text, full);
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
  });

  test('nothing left sluice\'s origin, no CSP violation, no script error', () => {
    assert.deepEqual(offOrigin, []);
    // The 404s the error tests provoke are logged by Chromium as failed resources; nothing else.
    const real = problems.filter((p) => !/status of 404/.test(p));
    assert.deepEqual(real, []);
  });
});

ctx.testCleanExit();
