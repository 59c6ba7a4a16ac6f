// Client identity behind proxies (DESIGN §6, issue 11 item 4): only when the TCP peer is inside
// `trusted_proxies` are X-Forwarded-For and Forwarded (RFC 7239) read; walking right to left,
// trusted hops are skipped and the rightmost other address is the client. That client is what
// the per-IP rate limits count, what monoai takes as the user when no user_id is sent, and what
// the access log's "client" field says. Without trusted_proxies (the default) a forged header
// changes nothing; malformed values fall back to the peer, never an error.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from './lib/raw-http.mjs';
import { assertErrorBody } from './lib/checks.mjs';
import { baseConfig, chat } from './lib/sluice.mjs';
import { useSluices, uid, pollUntil, assertJSON, postJSON } from './lib/dialects.mjs';

const config = (up, db, extra = {}) => ({
  ...baseConfig({ upstreamPort: up.port, workers: 2 }),
  rate_limits: { per_ip: { rpm: 2, tpm: 1000000 } },
  store: { sqlite: db },
  dialects: { monoai: { model: 'mock-mono', auth: 'none' } },
  ...extra,
});

const ctx = useSluices({
  trusted: (up, db) => config(up, db, { trusted_proxies: ['10.0.0.0/8', '127.0.0.1/32', '::1/128'] }),
  untrusted: (up, db) => config(up, db),
});

/* One OpenAI-dialect request (mock provider) with extra headers and a request id to find its
 * access-log line by. */
const post = (sl, headers = {}) => {
  const rid = uid('cid');
  return request(sl.url, {
    method: 'POST', path: '/v1/chat/completions', body: chat('mock-cid', 'hi'),
    headers: { 'x-request-id': rid, ...headers },
  }).then((r) => ({ ...r, rid }));
};
const logOf = (sl, rid) => sl.waitForLog((e) => e.request_id === rid, 3000, `the access-log line of ${rid}`);

/* Three requests as one client: two pass (rpm 2), the third is refused by the per-IP limit. */
async function assertOwnBucket(sl, headersOf, label) {
  for (let i = 0; i < 2; i++) assert.equal((await post(sl, headersOf(i))).status, 200, `${label}: request ${i + 1}`);
  const third = await post(sl, headersOf(2));
  assertErrorBody(third, 429, { type: 'rate_limit_error' });
}

describe('trusted_proxies: the forwarded client has its own per-IP bucket', { timeout: 60_000 }, () => {
  test('two clients behind the same proxy (X-Forwarded-For) do not share a bucket', async () => {
    const sl = ctx.sl.trusted;
    await assertOwnBucket(sl, () => ({ 'x-forwarded-for': '203.0.113.1' }), 'client A');
    // A is out of requests; B, behind the same proxy (the same TCP peer), is not.
    const b = await post(sl, { 'x-forwarded-for': '203.0.113.2' });
    assert.equal(b.status, 200, `client B: ${b.status} ${b.text}`);
    assert.equal((await logOf(sl, b.rid)).client, '203.0.113.2');
  });

  test('what the client writes left of the proxy\'s entry is not believed', async () => {
    const sl = ctx.sl.trusted;
    // Each request forges a different first hop; the proxy appended the real one, which also
    // passed a trusted hop (10.1.2.3): one bucket, that of 198.51.100.7.
    await assertOwnBucket(sl, (i) => ({ 'x-forwarded-for': `6.6.6.${i}, 198.51.100.7, 10.1.2.3` }), 'forged prefixes');
    const r = await post(sl, { 'x-forwarded-for': '198.51.100.8, 10.1.2.3' });
    assert.equal(r.status, 200);
    assert.equal((await logOf(sl, r.rid)).client, '198.51.100.8');
  });

  test('several X-Forwarded-For lines read as one list', async () => {
    const sl = ctx.sl.trusted;
    const rid = uid('cid-lines');
    // node:http joins repeated headers given as an array into separate lines
    const r = await request(sl.url, {
      method: 'POST', path: '/v1/chat/completions', body: chat('mock-cid', 'hi'),
      headers: { 'x-request-id': rid, 'x-forwarded-for': ['6.6.6.6', '198.51.100.20, 10.0.0.9'] },
    });
    assert.equal(r.status, 200);
    assert.equal((await logOf(sl, rid)).client, '198.51.100.20');
  });

  test('Forwarded (RFC 7239): quoted IPv6 in brackets with a port', async () => {
    const sl = ctx.sl.trusted;
    const fwd = { forwarded: 'for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"' };
    await assertOwnBucket(sl, () => fwd, 'Forwarded client');
    const other = await post(sl, { forwarded: 'for="[2001:db8:cafe::18]"' });
    assert.equal(other.status, 200);
    assert.equal((await logOf(sl, other.rid)).client, '2001:db8:cafe::18');
  });

  test('malformed, unknown or obfuscated values fall back to the peer, never an error', async () => {
    const sl = ctx.sl.trusted;
    const bad = [
      { 'x-forwarded-for': 'not an address' },
      { 'x-forwarded-for': '1.2.3.4, unknown' },
      { 'x-forwarded-for': `${'9.'.repeat(4000)}9` },
      { forwarded: 'for=_hidden' },
      { forwarded: 'for="[2001:db8::1' },
      { forwarded: 'for=1.2.3.4;for=5.6.7.8' },
    ];
    for (const h of bad) {
      const r = await post(sl, h);
      // The peer (127.0.0.1) has its own bucket too; what matters is the answer and the log.
      assert.ok(r.status === 200 || r.status === 429, `${JSON.stringify(h).slice(0, 80)}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal((await logOf(sl, r.rid)).client, '127.0.0.1', JSON.stringify(h).slice(0, 80));
    }
  });

  test('monoai takes the forwarded client as the user when no user_id is sent', async () => {
    const sl = ctx.sl.trusted;
    const ip = '203.0.113.77';
    assertJSON(await postJSON(sl, '/model', { prompt: 'who am i' }, { 'x-forwarded-for': ip }), 200);
    const st = await pollUntil(async () => assertJSON(await request(sl.url, { path: `/rate-limit/stats/${ip}` }), 200),
      { until: (s) => s.requests >= 1, timeoutMs: 3000, what: `the usage of ${ip}`, returnLast: true });
    assert.equal(st.user_id, ip);
    assert.equal(st.requests, 1, JSON.stringify(st));
  });
});

describe('without trusted_proxies nobody is believed', { timeout: 60_000 }, () => {
  test('a forged X-Forwarded-For or Forwarded is ignored: one bucket, the peer in the log', async () => {
    const sl = ctx.sl.untrusted;
    const forged = [{ 'x-forwarded-for': '203.0.113.1' }, { forwarded: 'for=203.0.113.2' }, { 'x-forwarded-for': '203.0.113.3' }];
    const rs = [];
    for (const h of forged) rs.push(await post(sl, h));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 429], 'three "different" clients share the peer\'s bucket');
    for (const r of rs) assert.equal((await logOf(sl, r.rid)).client, '127.0.0.1');
  });

  test('monoai counts a forged client against the peer\'s bucket', async () => {
    const sl = ctx.sl.untrusted;
    // The test above spent 127.0.0.1's two requests (rpm 2 refills one per 30 s): a monoai
    // request claiming another address is refused from the same bucket, in FastAPI's shape.
    const r = await postJSON(sl, '/model', { prompt: 'forged' }, { 'x-forwarded-for': '203.0.113.99' });
    const j = assertJSON(r, 429, 'monoai with a forged X-Forwarded-For');
    assert.equal(typeof j.detail, 'string');
    const forgedStats = assertJSON(await request(sl.url, { path: '/rate-limit/stats/203.0.113.99' }), 200);
    assert.equal(forgedStats.requests, 0, 'nothing is counted for the forged address');
  });
});

ctx.testCleanExit();
