// The copy of sluice-client.js that sluice serves at /sluice-client.js, in a real headless
// Chromium (tests/lib/chromium.mjs: Debian's, driven by playwright-core): it is this package's module
// byte for byte; a page imports it with no bundler and streams both dialects with for await;
// leaving the loop cancels the request in sluice; an in-stream error arrives as a SluiceError
// after the text before it; and an app on another origin imports it from sluice and streams
// (CORS configured for that origin).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { launchChromium } from '../../../tests/lib/chromium.mjs';
import { useSluices, clientConfig, API_KEY, jwt, mockAnswer, rid, logLine, MOCK_TOKENS } from './lib/sluices.mjs';

const SOURCE = new URL('../src/sluice-client.js', import.meta.url);

/* Another origin: a blank app page (the "app" that embeds the client from sluice). */
let app;
function startApp() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><html><head><title>an app</title></head><body><div id="out"></div></body></html>');
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

const ctx = useSluices({
  main: async (up, db) => {
    app = await startApp();
    return clientConfig(up, { db, cors: { origins: [app.origin] }, workers: 2 });
  },
}, { secrets: [API_KEY] });

let chromium; /* launchChromium()'s: the browser, its page, close() */
let page;
let full;

before(async () => {
  chromium = await launchChromium({ defaultTimeout: 15_000, profilePrefix: 'sluice-client-chromium-' });
  ({ page } = chromium);
});

after(async () => {
  await chromium?.close();
  await new Promise((r) => (app ? app.server.close(r) : r()));
});

/*
 * In the page: imports the client from `from`, runs `for await` over streamChat(options) and
 * returns the events, the error (name, status, inStream, code, message) and how many events
 * came before a `breakAfter`-th text event ended the loop.
 */
function streamInPage(from, options, breakAfter = 0) {
  return page.evaluate(async ({ from, options, breakAfter }) => {
    const { streamChat, SluiceError } = await import(from);
    const events = [];
    let texts = 0;
    try {
      for await (const ev of streamChat(options)) {
        events.push(ev);
        if (ev.type === 'text' && ++texts === breakAfter) break;
      }
      return { events, error: null };
    } catch (e) {
      return { events, error: { name: e.name, sluice: e instanceof SluiceError, status: e.status, inStream: e.inStream, code: e.code, message: e.message } };
    }
  }, { from, options, breakAfter });
}
const texts = (events) => events.filter((e) => e.type === 'text').map((e) => e.text);

describe('/sluice-client.js in Chromium', { timeout: 120_000 }, () => {
  test('sluice serves this package\'s module, byte for byte, as JavaScript', async () => {
    const r = await fetch(`${ctx.sl.main.url}/sluice-client.js`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(await r.text(), fs.readFileSync(SOURCE, 'utf8'),
      'the embedded copy differs from clients/js/src/sluice-client.js: rebuild sluice');
  });

  test('same origin: import(\'/sluice-client.js\') and for await over the OpenAI dialect', async () => {
    full = await mockAnswer(ctx.sl.main);
    await page.goto(`${ctx.sl.main.url}/sluice-client.js`);
    const { events, error } = await streamInPage('/sluice-client.js',
      { body: { model: 'any', messages: [{ role: 'user', content: 'hi' }] }, apiKey: API_KEY });
    assert.equal(error, null, JSON.stringify(error));
    assert.equal(texts(events).length, MOCK_TOKENS);
    assert.equal(texts(events).join(''), full);
    assert.deepEqual(events.at(-2), { type: 'finish', reason: 'stop', choice: 0 });
    assert.equal(events.at(-1).usage.completion_tokens, MOCK_TOKENS);
  });

  test('the aichat dialect with a JWT', async () => {
    const { events, error } = await streamInPage('/sluice-client.js',
      { dialect: 'aichat', message: 'hi', history: [], sessionId: 'browser-1', token: jwt() });
    assert.equal(error, null, JSON.stringify(error));
    assert.equal(texts(events).join(''), full);
    assert.equal(events.length, MOCK_TOKENS);
  });

  test('break after 3 deltas: sluice logs the request cancelled', async () => {
    const id = rid('browser-break');
    const { events, error } = await streamInPage('/sluice-client.js',
      { model: 'slow', message: 'stop me', apiKey: API_KEY, headers: { 'X-Request-Id': id } }, 3);
    assert.equal(error, null);
    assert.equal(texts(events).length, 3);
    const line = await logLine(ctx.sl.main, id, 5000);
    assert.equal(line.cancelled, true);
    assert.ok(line.completion_tokens < 100, `stopped early (${line.completion_tokens} tokens)`);
  });

  test('an in-stream error: a SluiceError after the text before it; an HTTP error: its status', async () => {
    const cut = await streamInPage('/sluice-client.js', { model: 'drop-mid:3', message: 'cut', apiKey: API_KEY });
    assert.deepEqual(texts(cut.events), ['cut#0 ', 'cut#1 ', 'cut#2 ']);
    assert.deepEqual([cut.error?.name, cut.error?.sluice, cut.error?.inStream, cut.error?.status, cut.error?.code],
      ['SluiceError', true, true, null, 'upstream_disconnected']);
    const denied = await streamInPage('/sluice-client.js', { model: 'any', message: 'no key' });
    assert.deepEqual([denied.error?.name, denied.error?.status, denied.error?.inStream], ['SluiceError', 401, false]);
  });

  test('another origin imports the client from sluice and streams from it (CORS)', async () => {
    await page.goto(`${app.origin}/`);
    const from = `${ctx.sl.main.url}/sluice-client.js`;
    const { events, error } = await streamInPage(from,
      { baseUrl: ctx.sl.main.url, dialect: 'aichat', message: 'hi', token: jwt() });
    assert.equal(error, null, JSON.stringify(error));
    assert.equal(texts(events).join(''), full);
    const rejected = await streamInPage(from, { baseUrl: ctx.sl.main.url, model: 'status-429', message: 'x', apiKey: API_KEY });
    assert.deepEqual([rejected.error?.status, rejected.error?.code], [429, 'fake_429']);
  });
});

ctx.testCleanExit();
