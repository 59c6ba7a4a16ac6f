// The one way the browser tests (tests/browser) and the JS client's tests (clients/js/test)
// start Chromium: Debian's /usr/bin/chromium (scripts/deps.sh installs it; CHROMIUM_BIN to use
// another), driven by playwright-core, which is a dev dependency of tests/integ (one
// node_modules for every node test: no browser download, no second install). Headless, on a
// fresh profile that close() removes, with everything that would make a request of its own
// (sync, component updates, background networking, QUIC) turned off, so a test that watches
// the page's requests sees only the page's.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../integ/package.json', import.meta.url));
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/*
 * Launches Chromium on a new temporary profile (a persistent context: one browser, its first
 * page ready). viewport: as playwright's (its default 1280x720 when not given);
 * defaultTimeout: for every page action and wait; profilePrefix: the temp dir's name.
 * Resolves with { browser (the context), page, profile, close() }; close() is safe to call
 * more than once and after a failed start.
 */
export async function launchChromium({ viewport, defaultTimeout = 10_000, launchTimeout = 30_000, profilePrefix = 'sluice-chromium-' } = {}) {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: scripts/deps.sh installs Debian's chromium (or set CHROMIUM_BIN)`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), profilePrefix));
  let browser;
  const close = async () => {
    await browser?.close();
    browser = null;
    fs.rmSync(profile, { recursive: true, force: true });
  };
  try {
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      ...(viewport ? { viewport } : {}),
      timeout: launchTimeout,
    });
    const page = browser.pages()[0] ?? await browser.newPage();
    page.setDefaultTimeout(defaultTimeout);
    return { browser, page, profile, close };
  } catch (e) {
    await close();
    throw e;
  }
}
