// The client's request body after the exchange takes it over from the connection (the
// connection keeps no copy while the answer streams): it still reaches the upstream byte for
// byte on the passthrough path, large or oddly formatted; a retry and a fallback after a 500
// send the same request again; concurrent requests on one worker never see each other's bodies;
// and a connection that goes on to a next request after a taken body parses it afresh.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { completionFor } from './lib/fake-upstream.mjs';
import { useSluice, baseConfig, UPSTREAM_KEY } from './lib/sluice.mjs';

const ctx = useSluice((up) => baseConfig({
  upstreamPort: up.port,
  workers: 1, // every request below shares one worker's buffers
  limits: { max_body: '2MiB' },
  providers: {
    second: { type: 'openai', base_url: `http://127.0.0.1:${up.port}/v1`, api_key: UPSTREAM_KEY, breaker: { failures: 0 } },
  },
  models: { 'fb-*': [{ provider: 'fake', model: 'status-500', retries: 1 }, { provider: 'second' }] },
}));

let seq = 0;
const rid = (p) => `${p}-${process.pid}-${++seq}`;

async function post(text, id) {
  const r = await fetch(`${ctx.sl.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id }, body: text,
  });
  return { status: r.status, text: await r.text() };
}

/* Key order, spacing, escapes and a field sluice does not know: what a parse-and-rebuild loses. */
function oddBody(model, prompt, extra = '') {
  return `{ "messages" : [ {"role":"user",  "content": ${JSON.stringify(prompt)} } ],\n` +
    `  "x_vendor_field": {"nested": [1, 2.50, "\\u00e9"]}, "temperature": 0.70,\n  "model": "${model}"${extra} }`;
}

describe('the request body, taken over by the exchange', { timeout: 60_000 }, () => {
  test('non-streaming passthrough: the upstream receives exactly the bytes sent, 1.5 MB prompt too', async () => {
    for (const size of [10, 1_500_000]) {
      const id = rid('raw');
      const text = oddBody('ok', 'é'.repeat(size / 2) + ' hello');
      const r = await post(text, id);
      assert.equal(r.status, 200, r.text.slice(0, 300));
      const [rec] = ctx.up.withRequestId(id);
      assert.ok(rec, 'the request reached the upstream');
      assert.equal(Buffer.compare(rec.rawBody, Buffer.from(text)), 0, `byte for byte (${text.length} chars)`);
      assert.deepEqual(JSON.parse(r.text), completionFor(JSON.parse(text)));
    }
  });

  test('streaming passthrough: the client\'s bytes follow the usage request sluice adds', async () => {
    const id = rid('rawst');
    const text = oddBody('ok', 'stream me', ', "stream": true');
    const r = await post(text, id);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.match(r.text, /data: \[DONE\]\n\n$/);
    const sent = ctx.up.withRequestId(id)[0].rawBody.toString();
    assert.ok(sent.endsWith(text.slice(1)), `the rest of the body as sent: ${sent.slice(0, 200)}`);
    assert.equal(JSON.parse(sent).stream_options.include_usage, true);
  });

  test('a 500, its retry and the fallback each send the whole request again', async () => {
    const id = rid('fb');
    const prompt = 'x'.repeat(300_000) + ' fallback';
    const text = oddBody('fb-a', prompt);
    const r = await post(text, id);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const recs = ctx.up.withRequestId(id);
    assert.deepEqual(recs.map((x) => x.body?.model), ['status-500', 'status-500', 'fb-a'], 'A, A\'s retry, then B');
    const want = JSON.parse(text);
    for (const rec of recs) {
      const got = rec.body;
      assert.equal(got.messages[0].content, prompt, 'the whole prompt');
      assert.deepEqual(got.x_vendor_field, want.x_vendor_field, 'unknown fields kept');
      assert.equal(got.temperature, 0.7);
    }
    assert.deepEqual(JSON.parse(r.text), completionFor(recs[2].body));
  });

  test('40 concurrent requests on one worker, each with its own body, get their own answers', async () => {
    const jobs = Array.from({ length: 40 }, (_, i) => {
      const id = rid('conc');
      const stream = i % 2 === 0;
      const text = oddBody('ok', `prompt number ${i} ${'y'.repeat(i * 997)}`, stream ? ', "stream": true' : '');
      return post(text, id).then((r) => ({ r, id, text, stream }));
    });
    for (const { r, id, text, stream } of await Promise.all(jobs)) {
      assert.equal(r.status, 200, r.text.slice(0, 300));
      const rec = ctx.up.withRequestId(id)[0];
      assert.equal(rec.body.messages[0].content, JSON.parse(text).messages[0].content, id);
      if (!stream) assert.deepEqual(JSON.parse(r.text), completionFor(JSON.parse(text)));
      else assert.match(r.text, /data: \[DONE\]\n\n$/);
    }
  });

  test('keep-alive: requests after one whose body was taken are read whole', async () => {
    const bodies = [oddBody('ok', 'first'), oddBody('ok', 'second ' + 'z'.repeat(5000)), oddBody('ok', 'third')];
    const ids = bodies.map(() => rid('ka'));
    const wire = bodies.map((b, i) => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `X-Request-Id: ${ids[i]}\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`).join('');
    const sock = net.connect(Number(new URL(ctx.sl.url).port), '127.0.0.1');
    let got = '';
    sock.on('data', (d) => { got += d; });
    sock.write(wire); // pipelined: all three in one write
    await ctx.up.waitFor(() => ids.every((id) => ctx.up.withRequestId(id).length), 5000, 'three requests upstream');
    await new Promise((resolve) => { const t = setInterval(() => { if ((got.match(/HTTP\/1\.1 200/g) || []).length === 3) { clearInterval(t); resolve(); } }, 20); });
    sock.destroy();
    ids.forEach((id, i) => assert.equal(Buffer.compare(ctx.up.withRequestId(id)[0].rawBody, Buffer.from(bodies[i])), 0, id));
  });

  ctx.testCleanExit();
});
