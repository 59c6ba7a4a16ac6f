// The sluice these tests run: the mock provider as the brief's page sees it (ttft 50ms,
// 100 tokens/s, 30 tokens) behind model "any" (the page's default), a slow mock for Stop,
// the fake upstream for an in-stream error, and no "*" route, so an unknown model is a 404.
export function browserConfig(up) {
  return {
    listen: '127.0.0.1:0',
    workers: 2,
    timeouts: { connect: '2s', first_byte: '5s', idle: '5s', drain: '5s' },
    providers: {
      mock: { type: 'mock', ttft: '50ms', tokens_per_s: 100, tokens: 30 },
      slow: { type: 'mock', ttft: '50ms', tokens_per_s: 20, tokens: 400 },
      ...(up ? { fake: { type: 'openai', base_url: `http://127.0.0.1:${up.port}/v1`, api_key: 'sk-upstream-xyz' } } : {}),
    },
    models: {
      any: [{ provider: 'mock' }],
      slow: [{ provider: 'slow' }],
      ...(up ? { 'drop-mid*': [{ provider: 'fake' }] } : {}),
    },
    dialects: { aichat: { model: 'any' } },
  };
}

/* The mock's whole answer, as sluice's non-streaming endpoint gives it. */
export async function mockAnswer(sl, model = 'any') {
  const r = await fetch(`${sl.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  if (!r.ok) throw new Error(`mock answer: HTTP ${r.status}`);
  return (await r.json()).choices[0].message.content;
}
