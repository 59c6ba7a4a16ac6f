// Circuit breakers (DESIGN §5, README "Circuit breakers"): one per target (provider + upstream
// model), shared by the process's workers; only upstream-caused failures count (5xx,
// connect errors, timeouts), never 4xx, 429s or client aborts; a 429 cools its target down for
// its Retry-After; when every target of a route is skipped the request is still tried (fail
// open), unless retry.fail_open is false, and then the 503 says when to come back; half-open
// admits one probe per process.
//
// The upstream is a "lane" server: the upstream model picks a lane, and the test switches a
// lane between healthy and failing while sluice runs, so one target can break and heal.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { planFor, contentPieces } from './lib/fake-upstream.mjs';
import { startScriptedServer } from './lib/scripted-server.mjs';
import { request } from './lib/raw-http.mjs';
import { openStream } from './lib/sse.mjs';
import { useSluice, baseConfig, chat, startSluice, stopAndCheck, UPSTREAM_KEY } from './lib/sluice.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import OpenAI from 'openai';
import { uid } from './lib/dialects.mjs';
import { scrape, scrapeUntil, total } from './lib/prom.mjs';

/* lane (the upstream model) → a fake-upstream scenario: 'ok', 'status-500', 'hang', ... */
const lanes = {};
let laneServer;

async function startLanes() {
  return startScriptedServer((rec) => {
    rec.lane = String(rec.body?.model);
    // A prompt "scenario=NAME ..." picks the scenario itself (the acceptance run's way of
    // failing on purpose on the same model as its ordinary requests).
    const msgs = rec.body?.messages ?? [];
    const asked = /^scenario=(\S+)/.exec(String(msgs.at(-1)?.content ?? ''))?.[1];
    return planFor({ ...rec.body, model: asked ?? lanes[rec.lane] ?? 'ok' });
  });
}

const ctx = useSluice(async () => {
  laneServer = await startLanes();
  const lanesAt = { type: 'openai', base_url: `http://127.0.0.1:${laneServer.port}/v1`, api_key: UPSTREAM_KEY };
  const cfg = baseConfig({ workers: 2, timeouts: { first_byte: '400ms', keepalive: '5s' } });
  cfg.providers = {
    ...cfg.providers,
    up: lanesAt, // the defaults: 5 failures, 10 s cooldown
    alt: lanesAt,
    pr: { ...lanesAt, breaker: { failures: 2, cooldown: '500ms' } },
  };
  cfg.models = {
    'heal-*': [{ provider: 'up', model: 'heal' }],
    'other-*': [{ provider: 'up', model: 'other' }],
    'limit-*': [{ provider: 'up', model: 'limit' }],
    'refuse-*': [{ provider: 'up', model: 'refuse' }],
    'abort-*': [{ provider: 'up', model: 'abort' }],
    'two-*': [{ provider: 'up', model: 'slowbad' }, { provider: 'alt', model: 'good' }],
    'rl2-*': [{ provider: 'up', model: 'rl2' }, { provider: 'alt', model: 'good' }],
    'probe-*': [{ provider: 'pr', model: 'plane' }, { provider: 'alt', model: 'good' }],
    'accept-*': [{ provider: 'up', model: 'accept' }],
    ...cfg.models,
  };
  return cfg;
}, { upstream: false });

const post = (model, rid, extra = {}) => request(ctx.sl.url, {
  method: 'POST', path: '/v1/chat/completions', body: chat(model, rid, extra), headers: { 'x-request-id': rid },
});
const atLane = (lane, rid) => laneServer.requests.filter((r) => r.lane === lane && r.headers['x-request-id'] === rid);
const state = (p, provider, model) => total(p, 'sluice_breaker_target_state', { provider, model });
const opened = (p, provider) => total(p, 'sluice_breaker_opened_total', { provider });

describe('breaker semantics', { timeout: 60_000 }, () => {
  test('five upstream 500s across two workers open the target once; 1 s after the upstream heals a request is answered 200 (fail open), and closes it', async () => {
    lanes.heal = 'status-500';
    const before = opened((await scrape(ctx.sl.url)).p, 'up');
    for (let i = 0; i < 5; i++) {
      const rid = uid('heal-fail');
      const r = await post('heal-x', rid); // a fresh connection each: both workers see them
      assertErrorBody(r, 500);
      assert.equal(atLane('heal', rid).length, 1, `failure ${i + 1} reached the upstream`);
    }
    const m = await scrapeUntil(ctx.sl.url, (p) => state(p, 'up', 'heal') === 1);
    assert.equal(state(m.p, 'up', 'heal'), 1, 'open after 5 failures in the process, whatever worker each landed on');
    assert.equal(total(m.p, 'sluice_breaker_state', { provider: 'up' }), 1);
    assert.equal(opened(m.p, 'up') - before, 1, 'opened exactly once');
    assert.equal(state(m.p, 'up', 'other'), 0, 'another model of the same provider is not affected');
    const o = await post('other-x', uid('other'));
    assert.equal(o.status, 200, o.text.slice(0, 200));

    lanes.heal = 'ok';
    await sleep(1000);
    const rid = uid('heal-ok');
    const r = await post('heal-x', rid);
    assert.equal(r.status, 200, `the only target is open, but tried anyway: ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(atLane('heal', rid).length, 1, 'the request reached the healed upstream');
    assert.equal(r.json.choices[0].message.content, contentPieces(chat('ok', rid)).join(''));
    const m2 = await scrapeUntil(ctx.sl.url, (p) => state(p, 'up', 'heal') === 0);
    assert.equal(state(m2.p, 'up', 'heal'), 0, 'the answer closed the breaker');
    assert.equal(total(m2.p, 'sluice_breaker_state', { provider: 'up' }), 0);
    const line = await ctx.sl.waitForLog((l) => l.request_id === rid, 3000, 'the log line');
    assert.ok(line.attempts.some((a) => a.error === 'circuit_open'), `the skip is logged: ${JSON.stringify(line.attempts)}`);
    assert.ok(ctx.sl.stderr().includes('breaker up/heal: closed -> open'), 'the state change is logged');
    assert.ok(ctx.sl.stderr().includes('breaker up/heal: half-open -> closed') || ctx.sl.stderr().includes('breaker up/heal: open -> closed'),
      'the close is logged');
  });

  test('429s never open a breaker: a client the upstream rate-limits cannot take the target down for others', async () => {
    lanes.limit = 'status-429';
    const before = opened((await scrape(ctx.sl.url)).p, 'up');
    for (let i = 0; i < 12; i++) {
      const r = await post('limit-x', uid('limit'));
      assert.equal(r.status, 429, `429 passes through: ${r.status}`);
      assert.equal(r.headers['retry-after'], '7', 'with its Retry-After');
    }
    const m = await scrape(ctx.sl.url);
    assert.equal(state(m.p, 'up', 'limit'), 0, 'still closed after 12 429s');
    assert.equal(opened(m.p, 'up') - before, 0);
    lanes.limit = 'ok';
    const rid = uid('limit-ok');
    const r = await post('limit-x', rid);
    assert.equal(r.status, 200, 'the only target, cooling down after its 429, is still tried');
    assert.equal(atLane('limit', rid).length, 1);
  });

  test('a 429 routes around its target while another target exists, for its Retry-After', async () => {
    lanes.rl2 = 'status-429';
    const rid = uid('rl2-first');
    const r = await post('rl2-x', rid);
    assert.equal(r.status, 200, 'the second target answered');
    assert.equal(atLane('rl2', rid).length, 1, 'the first target was asked once, not retried');
    assert.equal(atLane('good', rid).length, 1);
    const rid2 = uid('rl2-cool');
    const r2 = await post('rl2-x', rid2);
    assert.equal(r2.status, 200);
    assert.equal(atLane('rl2', rid2).length, 0, 'cooling down for its Retry-After: skipped');
    assert.equal(atLane('good', rid2).length, 1);
  });

  test('4xx answers and client aborts never count', async () => {
    lanes.abort = 'status-400';
    for (let i = 0; i < 7; i++) assertErrorBody(await post('abort-x', uid('abort-400')), 400);
    lanes.abort = 'hang';
    for (let i = 0; i < 7; i++) {
      const rid = uid('abort-gone');
      const ac = new AbortController();
      const p = fetch(`${ctx.sl.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal,
        headers: { 'content-type': 'application/json', 'x-request-id': rid }, body: JSON.stringify(chat('abort-x', rid)) }).catch(() => null);
      await laneServer.waitFor(() => atLane('abort', rid).length === 1, 3000, 'the request upstream');
      ac.abort();
      await p;
      await laneServer.waitFor(() => atLane('abort', rid)[0]?.closed, 3000, 'the upstream call cancelled');
    }
    const m = await scrape(ctx.sl.url);
    assert.equal(state(m.p, 'up', 'abort'), 0, 'neither 4xx nor aborts opened it');
  });

  test('with two targets, once the first is marked bad the second answers without waiting on it', async () => {
    lanes.slowbad = 'hang'; // each attempt costs the first-byte timeout (400 ms)
    for (let i = 0; i < 5; i++) {
      const rid = uid('two-slow');
      const r = await post('two-x', rid);
      assert.equal(r.status, 200, r.text.slice(0, 200));
      assert.ok(r.ms >= 350, `attempt ${i + 1} waited on the bad target (${r.ms.toFixed(0)} ms)`);
    }
    await scrapeUntil(ctx.sl.url, (p) => state(p, 'up', 'slowbad') === 1);
    for (let i = 0; i < 3; i++) {
      const rid = uid('two-fast');
      const r = await post('two-x', rid);
      assert.equal(r.status, 200);
      assert.ok(r.ms < 300, `answered by the second target at once, not after the first's timeout (${r.ms.toFixed(0)} ms)`);
      assert.equal(atLane('slowbad', rid).length, 0, 'the bad target was not called');
      assert.equal(atLane('good', rid).length, 1);
    }
  });

  test('half-open admits one probe per process; its success closes the breaker (failures: 2, cooldown: 500ms)', async () => {
    lanes.plane = 'status-502';
    for (let i = 0; i < 2; i++) assert.equal((await post('probe-x', uid('probe-fail'))).status, 200);
    await scrapeUntil(ctx.sl.url, (p) => state(p, 'pr', 'plane') === 1);
    const openedAt = performance.now();
    const rid0 = uid('probe-open');
    await post('probe-x', rid0);
    assert.equal(atLane('plane', rid0).length, 0, 'open: skipped');
    lanes.plane = 'slow-first:250'; // under the 400 ms first-byte timeout
    await sleep(Math.max(0, openedAt + 650 - performance.now()));
    const rid1 = uid('probe-probe');
    const probe = openStream(`${ctx.sl.url}/v1/chat/completions`, chat('probe-x', rid1, { stream: true }), { headers: { 'x-request-id': rid1 } });
    await laneServer.waitFor(() => atLane('plane', rid1).length === 1, 3000, 'the probe upstream');
    // Two more while the probe is out, on fresh connections (either worker): neither probes.
    for (let i = 0; i < 2; i++) {
      const rid = uid('probe-during');
      const r = await post('probe-x', rid);
      assert.equal(r.status, 200);
      assert.equal(atLane('plane', rid).length, 0, 'one probe per process, not per worker');
      assert.equal(atLane('good', rid).length, 1);
    }
    const s = await probe.finished(5000);
    assert.equal(s.status, 200);
    const rid2 = uid('probe-closed');
    await post('probe-x', rid2);
    assert.equal(atLane('plane', rid2).length, 1, 'closed again: the target is used');
  });
});

describe('an OpenAI-compatible acceptance run (official SDK, default breaker, one target)', { timeout: 60_000 }, () => {
  test('deliberate 5xx, timeouts and aborts, then 40 ordinary requests: all 40 answered', async () => {
    const client = new OpenAI({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 10000 });
    const ask = (content, opts) => client.chat.completions.create({ model: 'accept-x', messages: [{ role: 'user', content }] }, opts);
    for (let i = 0; i < 6; i++) {
      await assert.rejects(ask(`scenario=status-500 ${uid('acc')}`), (e) => e.status === 500);
      await assert.rejects(ask(`scenario=status-503 ${uid('acc')}`), (e) => e.status === 503);
      await assert.rejects(ask(`scenario=hang ${uid('acc')}`), (e) => e.status === 504, 'first-byte timeout');
      const ac = new AbortController();
      const p = ask(`scenario=hang ${uid('acc')}`, { signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await assert.rejects(p);
    }
    let ok = 0;
    for (let i = 0; i < 40; i++) {
      const tag = uid('acc-ok');
      const r = await ask(tag);
      assert.equal(r.choices[0].message.content, contentPieces(chat('ok', tag)).join(''), `ordinary request ${i + 1}`);
      ok++;
    }
    assert.equal(ok, 40);
  });
});

describe('retry.fail_open: false', { timeout: 30_000 }, () => {
  test('every target open: 503 no_provider_available with Retry-After, and no upstream call', async () => {
    const cfg = baseConfig({ workers: 1 });
    cfg.retry = { fail_open: false };
    cfg.providers.up = { type: 'openai', base_url: `http://127.0.0.1:${laneServer.port}/v1`, api_key: UPSTREAM_KEY,
      breaker: { failures: 2, cooldown: '5s' } };
    cfg.models = { 'refuse-*': [{ provider: 'up', model: 'refuse' }], ...cfg.models };
    const sl = await startSluice({ config: cfg });
    try {
      lanes.refuse = 'status-503';
      for (let i = 0; i < 2; i++) {
        const r = await request(sl.url, { method: 'POST', path: '/v1/chat/completions', body: chat('refuse-x', 'x') });
        assertErrorBody(r, 503);
      }
      lanes.refuse = 'ok';
      const rid = uid('refused');
      const r = await request(sl.url, { method: 'POST', path: '/v1/chat/completions', body: chat('refuse-x', rid), headers: { 'x-request-id': rid } });
      assertErrorBody(r, 503, { code: 'no_provider_available' });
      const ra = Number(r.headers['retry-after']);
      assert.ok(ra >= 1 && ra <= 5, `Retry-After is the remaining cooldown: ${r.headers['retry-after']}`);
      assert.equal(atLane('refuse', rid).length, 0, 'refused without calling the upstream');
    } finally {
      await stopAndCheck(sl);
    }
  });
});

test('the lane upstream closes', async () => { await laneServer?.close(); });
ctx.testCleanExit();
