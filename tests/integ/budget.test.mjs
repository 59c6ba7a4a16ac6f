// Token budgets per key (DESIGN §6): a key with budget_tokens (config `budget_tokens:`, or
// `sluice keys create --budget-tokens`) is served while the tokens it spent (prompt + completion,
// from the upstream's usage) are below the budget, and refused with 429 insufficient_quota once
// they reach it — nothing goes upstream then. Keys without a budget are unaffected. The spent
// tokens live in the store: after a restart on the same SQLite file the key is still refused.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { request } from './lib/raw-http.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { usageFor } from './lib/fake-upstream.mjs';
import { runSluiceSync, startSluice, stopAndCheck, baseConfig, chat, CLIENT_KEY } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, assertNothingUpstream, lastUser } from './lib/dialects.mjs';

const BUD = 'sk-budget-150-abcdef';
const BUDGET = 150;
const secrets = [CLIENT_KEY, BUD];
let dbPath;
let issued; // the secret of the key created with --budget-tokens 50
const config = (up, db) => {
  dbPath ??= db;
  return {
    ...baseConfig({ upstreamPort: up.port, workers: 2 }),
    auth: { keys: [{ name: 'dev', key: CLIENT_KEY }, { name: 'bud', key: BUD, budget_tokens: BUDGET }] },
    store: { sqlite: db },
  };
};
const ctx = useSluices({ main: config }, { secrets });

const post = (body, key) => request(ctx.sl.main.url, {
  method: 'POST', path: '/v1/chat/completions', body, headers: { authorization: `Bearer ${key}` },
});

/* The tokens the fake upstream reported for the request whose last user message is tag. */
async function upstreamTokens(tag, completion) {
  const rec = await ctx.up.waitForRequest((r) => lastUser(r.body) === tag, 3000, 0, `the upstream request ${tag}`);
  return usageFor(rec.body, completion).total_tokens;
}

/* 429 insufficient_quota, and nothing reached the upstream (model ok, streaming and not, mock). */
async function assertRefused(key, label) {
  const tag = uid('refused');
  const n = ctx.up.count();
  for (const body of [chat('ok', tag), chat('ok', tag, { stream: true }), chat('mock-b', tag)]) {
    const r = await post(body, key);
    assert.equal(r.status, 429, `${label}, ${body.model}${body.stream ? ' streaming' : ''}: ${r.status} ${r.text.slice(0, 200)}`);
    assertErrorBody(r, 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
  }
  assertNothingUpstream(ctx.up, tag, n);
}

/*
 * Sends 60-token answers on key until refused; while spent < budget every request must pass
 * (spent: the upstream's exact usage); once spent >= budget the refusal must come within 1 s.
 * Returns {spent, lagMs}.
 */
async function spendUntilRefused(key, budget, spent0 = 0) {
  let spent = spent0;
  for (let i = 0; i < 8 && spent < budget; i++) {
    const tag = uid('spend');
    const r = await post(chat('chunks:60', tag), key);
    assert.equal(r.status, 200, `spent ${spent} of ${budget}: must still pass, got ${r.status} ${r.text.slice(0, 200)}`);
    const t = await upstreamTokens(tag, 60);
    assert.equal(r.json.usage.total_tokens, t);
    spent += t;
  }
  assert.ok(spent >= budget, `8 answers did not spend ${budget} tokens`);
  const t0 = performance.now();
  const r = await pollUntil(() => post(chat('ok', uid('over')), key), { until: (x) => x.status === 429, timeoutMs: 1000, what: 'the budget refusal', intervalMs: 100, returnLast: true });
  const lagMs = performance.now() - t0;
  assertErrorBody(r, 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
  return { spent, lagMs };
}

describe('budget_tokens', { timeout: 60_000 }, () => {
  test('served below the budget, 429 insufficient_quota once spent reaches it, nothing upstream', async () => {
    const { spent, lagMs } = await spendUntilRefused(BUD, BUDGET);
    assert.ok(lagMs < 1000, `refused only ${lagMs.toFixed(0)} ms after spending ${spent} of ${BUDGET}`);
    await assertRefused(BUD, 'bud');
  });

  test('a key without a budget is unaffected', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await post(chat('chunks:60', uid('dev')), CLIENT_KEY)).status, 200);
  });

  test('sluice keys create --budget-tokens 50: refused once 50 tokens are spent', async () => {
    const r = runSluiceSync(['keys', 'create', '--name', uid('cli-budget'), '--budget-tokens', '50', '--config', ctx.sl.main.configFile]);
    assert.equal(r.code, 0, `keys create: ${r.code}\n${r.stdout}\n${r.stderr}`);
    const secret = /^sk-sl-[A-Za-z0-9_-]+/m.exec(r.stdout)?.[0];
    assert.ok(secret, `no secret in ${r.stdout}`);
    secrets.push(secret);
    issued = secret;
    const tag = uid('cli-first');
    const first = await pollUntil(() => post(chat('ok', tag), secret), { until: (x) => x.status !== 401, timeoutMs: 1500, what: 'the new key', returnLast: true });
    assert.equal(first.status, 200, `the new key: ${first.status} ${first.text.slice(0, 200)}`);
    const spent = await upstreamTokens(tag, 5);
    const { lagMs } = await spendUntilRefused(secret, 50, spent);
    assert.ok(lagMs < 1000, `refused only ${lagMs.toFixed(0)} ms after the budget was spent`);
    await assertRefused(secret, 'issued key');
  });

  test('the budget survives a restart on the same SQLite file', async () => {
    const old = ctx.sl.main;
    await stopAndCheck(old, { secrets });
    ctx.sl.main = await startSluice({ config: config(ctx.up, dbPath) });
    const tag = uid('after-restart');
    const n = ctx.up.count();
    assertErrorBody(await post(chat('ok', tag), BUD), 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
    if (issued) assertErrorBody(await post(chat('ok', tag), issued), 429, { type: 'insufficient_quota', code: 'insufficient_quota' });
    assertNothingUpstream(ctx.up, tag, n);
    assert.equal((await post(chat('ok', uid('dev-after')), CLIENT_KEY)).status, 200, 'the key without a budget still passes');
  });
});

ctx.testCleanExit();
