// Many streams at once: each must arrive byte-exact, with its own usage decision, and the
// access log must have one line for each.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertChunks } from './lib/checks.mjs';
import OpenAI from 'openai';
import { expectedClientStream, completionFor } from './lib/fake-upstream.mjs';
import { openStream, dataPayloads } from './lib/sse.mjs';
import { request } from './lib/raw-http.mjs';
import { useSluice, baseConfig, chat } from './lib/sluice.mjs';

// Correctness under load, not deadlines: on a busy 2-core machine under ASan, 200 upstream
// answers at once can take longer than the 2 s first_byte the other files use.
const ctx = useSluice((up) => baseConfig({ upstreamPort: up.port, timeouts: { first_byte: '20s', idle: '20s' } }));

describe('concurrency', { timeout: 60_000 }, () => {
  test('200 concurrent streams through sluice are each byte-exact', async () => {
    const logsBefore = ctx.sl.accessLog().length;
    const bodies = Array.from({ length: 200 }, (_, i) => chat('chunks:20:10', `conc-${i}-${'x'.repeat(i % 7)}`,
      { stream: true, ...(i % 2 ? { stream_options: { include_usage: true } } : {}) }));
    const streams = bodies.map((b) => openStream(`${ctx.sl.url}/v1/chat/completions`, b));
    const done = await Promise.allSettled(streams.map((s) => s.finished(30000)));
    const bad = [];
    done.forEach((d, i) => {
      const s = streams[i];
      if (d.status === 'rejected') bad.push(`#${i}: ${d.reason.message}`);
      else if (s.status !== 200) bad.push(`#${i}: status ${s.status} ${s.error?.code ?? ''}`);
      else if (s.body() !== expectedClientStream(bodies[i])) bad.push(`#${i}: body differs (${s.raw().length} bytes): ${JSON.stringify(s.text().slice(0, 400))}`);
    });
    assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of 200 streams wrong`);
    await ctx.sl.waitUntil(() => ctx.sl.accessLog().length >= logsBefore + 200, 5000, '200 access-log lines');
    const lines = ctx.sl.accessLog().slice(logsBefore).filter((l) => l.model === 'chunks:20:10');
    assert.equal(lines.length, 200);
    assert.ok(lines.every((l) => l.status === 200 && l.stream === true && l.completion_tokens === 20 && !l.cancelled),
      'every stream logged with 20 completion tokens');
  });

  test('100 concurrent non-streaming requests get their own answers', async () => {
    const bodies = Array.from({ length: 100 }, (_, i) => chat('chunks:3', `plain-${i}`));
    const rs = await Promise.all(bodies.map((body) => request(ctx.sl.url, { method: 'POST', path: '/v1/chat/completions', body })));
    rs.forEach((r, i) => {
      assert.equal(r.status, 200, `#${i}`);
      assert.deepEqual(r.json, completionFor(bodies[i]), `#${i}`);
    });
  });

  test('50 concurrent mock streams through the official SDK are well-formed', async () => {
    const sdk = new OpenAI({ apiKey: 'sk-any', baseURL: ctx.sl.baseURL, maxRetries: 0, timeout: 20000 });
    const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const chunks = [];
      for await (const c of await sdk.chat.completions.create({ ...chat(`mock-c${i}`, `m${i}`), stream: true })) chunks.push(c);
      return chunks;
    }));
    results.forEach((chunks, i) => {
      assertChunks(chunks, { model: `mock-c${i}`, finish: 'stop', label: `stream ${i}` });
      assert.equal(chunks.filter((c) => c.choices[0]?.delta?.content).length, 20);
    });
    // the same request gives the same deterministic text
    const text = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.ok(text(results[0]).length > 0);
  });

  test('a stalled stream does not hold up the others', async () => {
    const stalled = openStream(`${ctx.sl.url}/v1/chat/completions`, chat('hang', 'stuck', { stream: true }));
    try {
      const bodies = Array.from({ length: 20 }, (_, i) => chat('chunks:5', `beside-${i}`, { stream: true }));
      const ss = await Promise.all(bodies.map((b) => openStream(`${ctx.sl.url}/v1/chat/completions`, b).finished(3000)));
      ss.forEach((s, i) => assert.equal(s.body(), expectedClientStream(bodies[i])));
      assert.ok(dataPayloads(ss[0].events).length > 0);
    } finally {
      stalled.destroy();
    }
  });
});

ctx.testCleanExit();
