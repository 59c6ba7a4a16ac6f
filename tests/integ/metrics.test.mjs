// Observability (DESIGN §9): GET /metrics is Prometheus text format 0.0.4 (checked by our strict
// parser and by promtool's parser and linter), counters move by exactly what the test did
// (merged across 2 workers), histograms see the delays the fake upstream made, the model label is
// the configured pattern that routed the request (bounded cardinality), active streams and
// cancellations follow clients; /healthz and /readyz answer; every response carries an
// X-Request-Id (the client's when sent), and the upstream receives the same id.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promptTokens, contentPieces, expectedClientStream } from './lib/fake-upstream.mjs';
import { openStream } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat, UPSTREAM_KEY } from './lib/sluice.mjs';
import { uid } from './lib/dialects.mjs';
import { assertValidExposition, scrape, scrapeUntil, total, select } from './lib/prom.mjs';

const ctx = useSluice((up) => {
  const cfg = baseConfig({ upstreamPort: up.port, workers: 2 });
  cfg.retry = { backoff: '20ms', max_backoff: '100ms' };
  cfg.providers.alt = { type: 'openai', base_url: `http://127.0.0.1:${up.port}/v1`, api_key: UPSTREAM_KEY, breaker: { failures: 5, cooldown: '1s' } };
  // models go before "*" (baseConfig puts "*" last)
  const star = cfg.models['*'];
  delete cfg.models['*'];
  cfg.models = {
    ...cfg.models,
    'met-*': [{ provider: 'fake' }],
    'metgap-*': [{ provider: 'fake', model: 'chunks:4:120' }],
    'metfirst-*': [{ provider: 'fake', model: 'slow-first:300' }],
    'metslow-*': [{ provider: 'fake', model: 'chunks:60:50' }],
    'meterr-*': [{ provider: 'fake', model: 'status-500', retries: 0 }],
    'metfb-*': [{ provider: 'fake', model: 'status-500', retries: 1 }, { provider: 'alt', model: 'ok' }],
    '*': star,
  };
  return cfg;
});

const url = () => `${ctx.sl.url}/v1/chat/completions`;
const post = (body, headers = {}) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body, headers });
const m = async () => {
  const s = await scrape(ctx.sl.url);
  assert.equal(s.status, 200, `/metrics: ${s.status} ${s.text.slice(0, 200)}`);
  return s.p;
};
const REQ = 'sluice_requests_total';
const reqLabels = (model, status, stream) => ({ dialect: 'openai', model, provider: 'fake', status: String(status), stream: String(stream) });
const hist = (p, name, labels = {}) => ({ count: total(p, `${name}_count`, labels), sum: total(p, `${name}_sum`, labels) });

describe('health', { timeout: 60_000 }, () => {
  test('GET /healthz → 200 {"status":"ok"}; GET /readyz → 200 {"status":"ready"}', async () => {
    for (const [p, body] of [['/healthz', { status: 'ok' }], ['/readyz', { status: 'ready' }]]) {
      const r = await request(ctx.sl.url, { path: p });
      assert.equal(r.status, 200, `${p}: ${r.status} ${r.text}`);
      assert.match(r.headers['content-type'] ?? '', /^application\/json/, p);
      assert.deepEqual(r.json, body, p);
    }
  });
});

describe('GET /metrics: the format', { timeout: 60_000 }, () => {
  test('text format 0.0.4, valid for our parser and promtool (parse + lint), every required family typed', async () => {
    // something in every family first
    assert.equal((await post(chat('met-warm', 'warm'))).status, 200);
    await openStream(url(), chat('metgap-warm', 'warm', { stream: true })).finished();
    assert.equal((await post(chat('metfb-warm', 'warm'))).status, 200);
    const s = await scrape(ctx.sl.url);
    assert.equal(s.status, 200);
    assert.match(s.headers['content-type'] ?? '', /^text\/plain;\s*version=0\.0\.4/, 'content-type');
    const p = assertValidExposition(s.text);
    const want = {
      sluice_requests_total: ['counter', ['dialect', 'model', 'provider', 'status', 'stream']],
      sluice_time_to_first_token_seconds: ['histogram', []],
      sluice_inter_token_gap_seconds: ['histogram', []],
      sluice_upstream_first_byte_seconds: ['histogram', []],
      sluice_added_latency_seconds: ['histogram', []],
      sluice_active_streams: ['gauge', []],
      sluice_tokens_total: ['counter', ['direction']],
      sluice_upstream_retries_total: ['counter', ['provider']],
      sluice_fallbacks_total: ['counter', ['from', 'to']],
      sluice_breaker_state: ['gauge', ['provider']],
      sluice_cancellations_total: ['counter', []],
      sluice_config_reloads_total: ['counter', ['result']],
      sluice_access_log_dropped_total: ['counter', []],
    };
    for (const [name, [type, labels]] of Object.entries(want)) {
      const f = p.families.get(name);
      assert.ok(f, `no ${name} in /metrics`);
      assert.equal(f.type, type, `${name} type`);
      assert.ok(f.help && f.help.length > 0, `${name} has no HELP`);
      // (nothing was cancelled yet; breaker series are checked below)
      if (!['sluice_cancellations_total', 'sluice_breaker_state'].includes(name)) assert.ok(f.samples.length > 0, `${name} has no samples`);
      for (const smp of f.samples) {
        for (const l of labels) assert.ok(l in smp.labels, `${name}: label ${l} missing in ${JSON.stringify(smp.labels)}`);
      }
    }
    assert.deepEqual(select(p, 'sluice_config_reloads_total').map((x) => x.labels.result).sort(), ['failed', 'ok'],
      'sluice_config_reloads_total has a series for each result, from the start');
    // The access-log writer kept up with this light load: nothing lost.
    assert.deepEqual(select(p, 'sluice_access_log_dropped_total').map((x) => x.value), [0]);
  });

  test('sluice_breaker_state has a series per configured provider, 0 while closed', async () => {
    const p = await m();
    for (const provider of ['fake', 'alt']) {
      const series = select(p, 'sluice_breaker_state', { provider });
      assert.equal(series.length, 1, `sluice_breaker_state{provider="${provider}"}: ${series.length} series`);
      assert.equal(series[0].value, 0, `${provider}'s breaker is closed`);
    }
  });
});

describe('counters move by exactly what was done', { timeout: 60_000 }, () => {
  test('5 OK streams and 3 non-streaming answers: requests_total by pattern/provider/status/stream, tokens', async () => {
    const before = await m();
    const bodies = [];
    for (let i = 0; i < 5; i++) {
      const body = chat('met-ok', uid('met-s'), { stream: true });
      bodies.push(body);
      const s = await openStream(url(), body).finished();
      assert.equal(s.body(), expectedClientStream(body));
    }
    for (let i = 0; i < 3; i++) {
      const body = chat('met-plain', uid('met-p'));
      bodies.push(body);
      assert.equal((await post(body)).status, 200);
    }
    const want = (p) => total(p, REQ, reqLabels('met-*', 200, true)) - total(before, REQ, reqLabels('met-*', 200, true)) === 5
      && total(p, REQ, reqLabels('met-*', 200, false)) - total(before, REQ, reqLabels('met-*', 200, false)) === 3;
    const after = (await scrapeUntil(ctx.sl.url, want)).p;
    const d = (name, labels) => total(after, name, labels) - total(before, name, labels);
    assert.equal(d(REQ, reqLabels('met-*', 200, true)), 5, 'requests_total{model="met-*",status="200",stream="true"}');
    assert.equal(d(REQ, reqLabels('met-*', 200, false)), 3, 'requests_total{model="met-*",status="200",stream="false"}');
    assert.equal(d(REQ, {}), 8, 'no other exchange was counted');
    const completion = bodies.reduce((a, b) => a + contentPieces(b).length, 0);
    const prompt = bodies.reduce((a, b) => a + promptTokens(b), 0);
    assert.equal(d('sluice_tokens_total', { direction: 'completion' }), completion, 'completion tokens = the upstream\'s usage');
    assert.equal(d('sluice_tokens_total', { direction: 'prompt' }), prompt, 'prompt tokens = the upstream\'s usage');
    const ttft = d('sluice_time_to_first_token_seconds_count', {});
    assert.ok(ttft >= 5 && ttft <= 8, `time_to_first_token observations: ${ttft}`);
    assert.ok(d('sluice_upstream_first_byte_seconds_count', { provider: 'fake' }) >= 5, 'upstream_first_byte observed for the streams');
    assert.ok(d('sluice_added_latency_seconds_count', {}) >= 5, 'added_latency observed');
  });

  test('non-streaming upstream calls are observed in upstream_first_byte too', async () => {
    const before = await m();
    for (let i = 0; i < 2; i++) assert.equal((await post(chat('met-fb1', uid('met-fb1')))).status, 200);
    const d = (p) => total(p, 'sluice_upstream_first_byte_seconds_count', { provider: 'fake' }) - total(before, 'sluice_upstream_first_byte_seconds_count', { provider: 'fake' });
    const after = (await scrapeUntil(ctx.sl.url, (p) => d(p) >= 2, { timeoutMs: 1000 })).p;
    assert.equal(d(after), 2, 'sluice_upstream_first_byte_seconds_count{provider="fake"} after 2 non-streaming calls');
  });

  test('include_usage streams: tokens_total moves by the usage the client saw', async () => {
    const before = await m();
    let prompt = 0;
    let completion = 0;
    for (const n of [2, 6]) {
      const s = await openStream(url(), chat('met-u', uid(`met-u${n}`), { stream: true, stream_options: { include_usage: true } })).finished();
      const usage = s.events.filter((e) => e.json?.usage).at(-1)?.json.usage;
      assert.ok(usage, 'a usage chunk');
      prompt += usage.prompt_tokens;
      completion += usage.completion_tokens;
    }
    const after = (await scrapeUntil(ctx.sl.url, (p) => total(p, 'sluice_tokens_total', { direction: 'completion' }) - total(before, 'sluice_tokens_total', { direction: 'completion' }) >= completion)).p;
    assert.equal(total(after, 'sluice_tokens_total', { direction: 'completion' }) - total(before, 'sluice_tokens_total', { direction: 'completion' }), completion);
    assert.equal(total(after, 'sluice_tokens_total', { direction: 'prompt' }) - total(before, 'sluice_tokens_total', { direction: 'prompt' }), prompt);
  });

  test('the model label is the routing pattern, never the client\'s name', async () => {
    const before = await m();
    const names = Array.from({ length: 4 }, (_, i) => `zz-client-name-${i}-${uid('n')}`);
    for (const n of names) assert.equal((await post(chat(n, 'label'))).status, 200);
    const after = (await scrapeUntil(ctx.sl.url, (p) => total(p, REQ, reqLabels('*', 200, false)) - total(before, REQ, reqLabels('*', 200, false)) >= 4)).p;
    assert.equal(total(after, REQ, reqLabels('*', 200, false)) - total(before, REQ, reqLabels('*', 200, false)), 4);
    const leaked = after.samples.filter((s) => Object.values(s.labels).some((v) => names.includes(v)));
    assert.deepEqual(leaked.map((s) => s.name), [], 'a client-chosen model name became a label value');
  });

  test('an upstream 500 is counted with status 500', async () => {
    const before = await m();
    assert.equal((await post(chat('meterr-x', uid('met-err')))).status, 500);
    assert.equal((await post(chat('meterr-x', uid('met-err'), { stream: true }))).status, 500);
    const want = (p) => total(p, REQ, { model: 'meterr-*', status: '500' }) - total(before, REQ, { model: 'meterr-*', status: '500' }) === 2;
    const after = (await scrapeUntil(ctx.sl.url, want)).p;
    assert.equal(total(after, REQ, reqLabels('meterr-*', 500, false)) - total(before, REQ, reqLabels('meterr-*', 500, false)), 1);
    assert.equal(total(after, REQ, reqLabels('meterr-*', 500, true)) - total(before, REQ, reqLabels('meterr-*', 500, true)), 1);
  });

  test('a retry and a fallback: upstream_retries_total{provider} +1, fallbacks_total{from,to} +1', async () => {
    const before = await m();
    const r = await post(chat('metfb-x', uid('met-fb')));
    assert.equal(r.status, 200, r.text.slice(0, 200));
    const d = (p, name, labels) => total(p, name, labels) - total(before, name, labels);
    const after = (await scrapeUntil(ctx.sl.url, (p) => d(p, 'sluice_fallbacks_total', { from: 'fake', to: 'alt' }) >= 1)).p;
    assert.equal(d(after, 'sluice_upstream_retries_total', { provider: 'fake' }), 1, 'upstream_retries_total{provider="fake"}');
    assert.equal(d(after, 'sluice_fallbacks_total', { from: 'fake', to: 'alt' }), 1, 'fallbacks_total{from="fake",to="alt"}');
    assert.equal(d(after, REQ, { model: 'metfb-*', provider: 'alt', status: '200' }), 1, 'the exchange is counted once, for the provider that answered');
  });
});

describe('histograms see the upstream\'s delays', { timeout: 60_000 }, () => {
  test('inter_token_gap: 3 gaps of 120 ms in one stream', async () => {
    const before = await m();
    const s = await openStream(url(), chat('metgap-x', uid('met-gap'), { stream: true })).finished();
    assert.equal(s.status, 200);
    const want = (p) => hist(p, 'sluice_inter_token_gap_seconds').sum - hist(before, 'sluice_inter_token_gap_seconds').sum >= 0.3;
    const after = (await scrapeUntil(ctx.sl.url, want)).p;
    const dCount = hist(after, 'sluice_inter_token_gap_seconds').count - hist(before, 'sluice_inter_token_gap_seconds').count;
    const dSum = hist(after, 'sluice_inter_token_gap_seconds').sum - hist(before, 'sluice_inter_token_gap_seconds').sum;
    assert.ok(dCount >= 3, `gap observations: ${dCount}`);
    assert.ok(dSum >= 0.3 && dSum < 1.5, `gap sum grew by ${dSum} s (3 × 120 ms)`);
    // the gaps land in buckets above 0.1 s
    const le = (p, v) => total(p, 'sluice_inter_token_gap_seconds_bucket', { le: v });
    assert.ok((hist(after, 'sluice_inter_token_gap_seconds').count - le(after, '0.1')) - (hist(before, 'sluice_inter_token_gap_seconds').count - le(before, '0.1')) >= 3,
      'three observations above le="0.1"');
  });

  test('a 300 ms first byte: upstream_first_byte and time_to_first_token grow by ≥ 0.3 s, added latency does not', async () => {
    const before = await m();
    const s = await openStream(url(), chat('metfirst-x', uid('met-first'), { stream: true })).finished();
    assert.equal(s.status, 200);
    const d = (p, name, labels) => ({ count: hist(p, name, labels).count - hist(before, name, labels).count, sum: hist(p, name, labels).sum - hist(before, name, labels).sum });
    const after = (await scrapeUntil(ctx.sl.url, (p) => d(p, 'sluice_time_to_first_token_seconds', { model: 'metfirst-*' }).count >= 1)).p;
    const up = d(after, 'sluice_upstream_first_byte_seconds', { provider: 'fake' });
    const ttft = d(after, 'sluice_time_to_first_token_seconds', { model: 'metfirst-*' });
    const added = d(after, 'sluice_added_latency_seconds', {});
    assert.equal(up.count, 1);
    assert.ok(up.sum >= 0.28 && up.sum < 2, `upstream first byte ${up.sum} s`);
    assert.equal(ttft.count, 1);
    assert.ok(ttft.sum >= 0.28 && ttft.sum < 2, `time to first token ${ttft.sum} s`);
    assert.equal(added.count, 1);
    assert.ok(added.sum < 0.2, `added latency ${added.sum} s: the upstream's wait counted as sluice's`);
  });
});

describe('gauges and cancellations', { timeout: 60_000 }, () => {
  test('active_streams counts open streams; clients leaving bring it back and count 2 cancellations', async () => {
    const before = await m();
    const base = total(before, 'sluice_active_streams');
    const streams = [0, 1].map(() => openStream(url(), chat('metslow-x', uid('met-active'), { stream: true })));
    for (const s of streams) await s.waitFor((x) => x.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length >= 1, 3000, 'a content chunk');
    const during = await m();
    assert.equal(total(during, 'sluice_active_streams'), base + 2, 'sluice_active_streams with two streams open');
    for (const s of streams) s.destroy();
    const cancelled = (p) => total(p, 'sluice_cancellations_total') - total(before, 'sluice_cancellations_total');
    const after = (await scrapeUntil(ctx.sl.url, (p) => total(p, 'sluice_active_streams') === base && cancelled(p) >= 2)).p;
    assert.equal(total(after, 'sluice_active_streams'), base, 'sluice_active_streams after the clients left');
    assert.equal(cancelled(after), 2, 'sluice_cancellations_total');
  });
});

describe('X-Request-Id', { timeout: 60_000 }, () => {
  test('every kind of response carries one; generated ids are unique; the access log uses it', async () => {
    const kinds = [
      { path: '/healthz' }, { path: '/readyz' }, { path: '/metrics' }, { path: '/v1/models' },
      { path: '/v1/nope' }, { method: 'GET', path: '/v1/chat/completions' },
      { method: 'POST', path: '/v1/chat/completions', body: 'not json' },
      { method: 'POST', path: '/v1/chat/completions', body: chat('met-id', 'id') },
      { method: 'POST', path: '/v1/chat/completions', body: chat('meterr-id', 'id') },
      { method: 'POST', path: '/v1/chat/completions', body: chat('mock-id', 'id') },
    ];
    const ids = [];
    for (const k of kinds) {
      const r = await request(ctx.sl.url, k);
      const id = r.headers['x-request-id'];
      assert.ok(typeof id === 'string' && id.length > 0, `${k.method ?? 'GET'} ${k.path} → ${r.status} without X-Request-Id`);
      ids.push(id);
    }
    const s = await openStream(url(), chat('met-id', 'id', { stream: true })).finished();
    ids.push(s.headers['x-request-id']);
    assert.ok(s.headers['x-request-id'], 'a stream without X-Request-Id');
    assert.equal(new Set(ids).size, ids.length, `generated ids repeat: ${ids.join(', ')}`);
    const line = await ctx.sl.waitForLog((l) => l.request_id === s.headers['x-request-id'], 3000, 'the stream\'s log line');
    assert.equal(line.status, 200);
  });

  test("the client's X-Request-Id is echoed and sent upstream, streaming or not, on errors too", async () => {
    for (const [model, stream, status] of [['met-rid', false, 200], ['met-rid', true, 200], ['meterr-rid', false, 500], ['meterr-rid', true, 500]]) {
      const rid = uid('client-rid');
      const headers = { 'x-request-id': rid };
      let got;
      if (stream) {
        const s = await openStream(url(), chat(model, rid, { stream }), { headers }).finished();
        got = { status: s.status, id: s.headers['x-request-id'] };
      } else {
        const r = await post(chat(model, rid), headers);
        got = { status: r.status, id: r.headers['x-request-id'] };
      }
      assert.deepEqual(got, { status, id: rid }, `${model} stream ${stream}`);
      const up = ctx.up.requests.filter((r) => r.body?.messages?.[0]?.content === rid);
      assert.equal(up.length, 1, `${model}: upstream requests`);
      assert.equal(up[0].headers['x-request-id'], rid, 'the upstream receives the same id');
      await ctx.sl.waitForLog((l) => l.request_id === rid, 3000, `the log line of ${rid}`);
    }
  });
});

ctx.testCleanExit();
