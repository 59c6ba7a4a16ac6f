// A real Redis for the scale-out tests: `redis-server` (Debian package) on a free loopback port
// as a child process, no persistence, ready once it answers PING (RESP over a raw socket);
// stopped by PID (SIGTERM, then SIGKILL after a bound) and restartable on the same port.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { pollUntil } from './poll.mjs';

export const REDIS_BIN = process.env.REDIS_SERVER ?? 'redis-server';

const live = new Set();
process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

/* A free TCP port on 127.0.0.1 (bound to port 0, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function encode(args) {
  let s = `*${args.length}\r\n`;
  for (const a of args) {
    const b = Buffer.from(String(a));
    s += `$${b.length}\r\n${b.toString('latin1')}\r\n`;
  }
  return Buffer.from(s, 'latin1');
}

/* Parses one RESP reply from buf at off: {value, end} or null when incomplete. */
function parseReply(buf, off = 0) {
  const le = buf.indexOf('\r\n', off);
  if (le < 0) return null;
  const type = String.fromCharCode(buf[off]);
  const line = buf.subarray(off + 1, le).toString('utf8');
  const next = le + 2;
  switch (type) {
    case '+': return { value: line, end: next };
    case '-': return { value: new Error(line), end: next };
    case ':': return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.subarray(next, next + n).toString('utf8'), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, p);
        if (!r) return null;
        out.push(r.value);
        p = r.end;
      }
      return { value: out, end: p };
    }
    default: throw new Error(`redis: bad reply type ${JSON.stringify(type)}`);
  }
}

/* One command on a fresh connection; resolves with the reply (an Error value for -ERR). */
export function redisCommand(port, args, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`redis ${args[0]}: no answer within ${timeoutMs} ms`)); }, timeoutMs);
    const done = (fn, v) => { clearTimeout(timer); sock.destroy(); fn(v); };
    sock.on('connect', () => sock.write(encode(args)));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r;
      try { r = parseReply(buf); } catch (e) { done(reject, e); return; }
      if (r) done(resolve, r.value);
    });
    sock.on('error', (e) => done(reject, e));
    sock.on('close', () => done(reject, new Error(`redis ${args[0]}: connection closed without an answer`)));
  });
}

/*
 * Starts redis-server; resolves once it answers PING. Returns {port, url, pid, command(args),
 * stop(), kill(), restart(), log()}: stop() by PID (SIGTERM, SIGKILL after killMs), kill() SIGKILL
 * by PID (a crash), restart() stops it if needed and starts a new one on the same port.
 */
export async function startRedis({ port, readyMs = 5000, killMs = 3000 } = {}) {
  port ??= await freePort();
  const r = {
    port, url: `redis://127.0.0.1:${port}`, proc: null, pid: null, output: [],
    log: () => r.output.join(''),
    command: (args, timeoutMs) => redisCommand(port, args, timeoutMs),
  };

  async function launch() {
    const proc = spawn(REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(proc);
    r.proc = proc;
    r.pid = proc.pid;
    let exit = null;
    r.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
      exit = { code, signal };
      live.delete(proc);
      resolve(exit);
    }));
    proc.on('error', (e) => { exit ??= { error: e }; });
    for (const s of [proc.stdout, proc.stderr]) { s.setEncoding('utf8'); s.on('data', (d) => r.output.push(d)); }
    const up = await pollUntil(async () => {
      if (exit) throw new Error(`redis-server exited before answering PING (${JSON.stringify(exit)}):\n${r.log().slice(-2000)}`);
      try {
        return (await redisCommand(port, ['PING'], 500)) === 'PONG';
      } catch { return false; /* not up yet */ }
    }, { timeoutMs: readyMs, intervalMs: 25, what: 'redis-server to answer PING', returnLast: true });
    if (!up) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server did not answer PING within ${readyMs} ms:\n${r.log().slice(-2000)}`);
    }
  }

  r.stop = async () => {
    const proc = r.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    let timer;
    const killed = await Promise.race([r.exited.then(() => false), new Promise((res) => { timer = setTimeout(() => res(true), killMs); })]);
    clearTimeout(timer);
    if (killed) {
      proc.kill('SIGKILL');
      await r.exited;
    }
  };
  /* A crash: SIGKILL by PID, no goodbye to the clients. */
  r.kill = async () => {
    const proc = r.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGKILL');
    await r.exited;
  };
  r.restart = async () => {
    await r.stop();
    await launch();
  };

  await launch();
  assert.ok(r.pid > 0);
  return r;
}
