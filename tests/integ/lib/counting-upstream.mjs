// A small OpenAI-compatible upstream that counts its TCP connections, for the built-in
// upstream client's pool tests (upstream_client.test.mjs). The request's `model` picks:
//   ok          a chat.completion (Content-Length, keep-alive)
//   stream      5 SSE chunks then [DONE] (chunked)
//   hold        SSE headers and one chunk, then nothing until the peer closes
//   drop-reused destroys the socket without an answer if it already served a request
import http from 'node:http';

export async function startCountingUpstream() {
  const st = { connections: 0, closed: 0, requests: 0, sockets: new Set(), holdClosedAt: null };
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => {
      st.requests++;
      const sock = req.socket;
      sock.served = (sock.served ?? 0) + 1;
      let model = 'ok';
      try { model = JSON.parse(raw).model ?? 'ok'; } catch { /* not JSON */ }
      if (model === 'drop-reused' && sock.served > 1) { sock.destroy(); return; }
      const chunk = (i) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model,
        choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: 'x0 ' } : { content: `x${i} ` }, finish_reason: null }] })}\n\n`;
      if (model === 'stream' || model === 'hold') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        if (model === 'hold') {
          res.write(chunk(0));
          sock.on('close', () => { st.holdClosedAt = performance.now(); });
          return;
        }
        for (let i = 0; i < 5; i++) res.write(chunk(i));
        res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model,
          choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
        res.end('data: [DONE]\n\n');
        return;
      }
      const body = JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (sock) => {
    st.connections++;
    st.sockets.add(sock);
    sock.on('close', () => { st.closed++; st.sockets.delete(sock); });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    st,
    /* Closes every connection the server holds (idle ones included), as a restart would. */
    dropAll() { for (const s of st.sockets) s.destroy(); },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}
