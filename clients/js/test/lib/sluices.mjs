// What the client's tests share: sluice configs (the mock provider for whole answers, a slow mock
// to stop mid-stream, the fault-injecting fake upstream behind "*" for tool calls, HTTP and
// in-stream errors; aichat answered by a chosen model; API-key and JWT auth), the integration
// suite's process helpers, and its bounded poll.
import { signJwt, nowS, useSluices, logLine, assertUpstreamCancelled } from '../../../../tests/integ/lib/dialects.mjs';
import { pollUntil } from '../../../../tests/integ/lib/poll.mjs';

export { useSluices, logLine, assertUpstreamCancelled, pollUntil };

export const API_KEY = 'sk-client-js-test';
export const JWT_SECRET = 'client-js-hs256-secret-0123456789abcdef';
export const MOCK_TOKENS = 30;

/*
 * A sluice config against the fake upstream `up`: models "any" (mock, 30 tokens at 200/s),
 * "paced" (the same 30 tokens at 40/s: time to look at the DOM between them), "slow" (mock,
 * 400 tokens at 20/s: 20 s, time enough to stop it) and everything else to the
 * fake upstream (its scenario is the model name). aichat answers with `aichat`. db: the SQLite
 * file (useSluices passes one in its temp dir). auth: the
 * OpenAI dialect wants API_KEY, aichat a JWT signed with JWT_SECRET (sub = the user).
 */
export function clientConfig(up, { db, aichat = 'any', auth = true, cors, workers = 1 } = {}) {
  const cfg = {
    listen: '127.0.0.1:0',
    workers,
    timeouts: { connect: '2s', first_byte: '5s', idle: '5s', drain: '5s' },
    providers: {
      mock: { type: 'mock', ttft: '30ms', tokens_per_s: 200, tokens: MOCK_TOKENS },
      paced: { type: 'mock', ttft: '30ms', tokens_per_s: 40, tokens: MOCK_TOKENS },
      slow: { type: 'mock', ttft: '30ms', tokens_per_s: 20, tokens: 400 },
      fake: { type: 'openai', base_url: `http://127.0.0.1:${up.port}/v1`, api_key: 'sk-upstream-xyz', breaker: { failures: 0 } },
    },
    models: { any: [{ provider: 'mock' }], paced: [{ provider: 'paced' }], slow: [{ provider: 'slow' }], '*': [{ provider: 'fake' }] },
    dialects: { aichat: { model: aichat } },
  };
  if (auth) {
    cfg.auth = {
      keys: [{ name: 'js', key: API_KEY }],
      jwt: { alg: 'HS256', secret: JWT_SECRET, user_claim: 'sub', leeway: '5s' },
    };
  }
  if (cors) cfg.cors = cors;
  if (db) cfg.store = { sqlite: db }; /* else sluice.db in the current directory */
  return cfg;
}

/* A valid aichat JWT. */
export function jwt(sub = 'user-js') {
  return signJwt({ sub, iat: nowS(), exp: nowS() + 600 }, { alg: 'HS256', key: JWT_SECRET });
}

/* The mock's whole answer, from sluice's non-streaming endpoint. */
export async function mockAnswer(sl) {
  const r = await fetch(`${sl.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: 'any', messages: [{ role: 'user', content: 'reference' }] }),
  });
  if (!r.ok) throw new Error(`mock answer: HTTP ${r.status} ${await r.text()}`);
  const text = (await r.json()).choices[0].message.content;
  if (!text) throw new Error('mock answer: empty');
  return text;
}

let seq = 0;
/* A unique X-Request-Id, so a test finds its own access-log line. */
export const rid = (label) => `js-${label}-${process.pid}-${++seq}`;
