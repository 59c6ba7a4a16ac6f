// Starts and stops a real sluice process for a test file: config object → YAML in a temp
// file, wait (bounded) for "listening on http://HOST:PORT", capture stderr (access log lines),
// SIGTERM on stop with the exit code checked (under ASan a leak makes it non-zero).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startFakeUpstream } from './fake-upstream.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const INTEG_DIR = path.resolve(here, '..');

/* SLUICE_BIN: absolute, or relative to the current directory; default build/release/sluice. */
export const SLUICE_BIN = process.env.SLUICE_BIN
  ? path.resolve(process.env.SLUICE_BIN)
  : path.resolve(INTEG_DIR, '../../build/release/sluice');

export const CLIENT_KEY = 'sk-test-123';
export const UPSTREAM_KEY = 'sk-upstream-xyz';

const live = new Set();
process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

/* ---------------- YAML ---------------- */

function scalar(v) {
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  if (/^[A-Za-z0-9_.\/][A-Za-z0-9_.\/:@+-]*$/.test(s) && !/^(true|false|yes|no|on|off|null|~)$/i.test(s)) return s;
  return JSON.stringify(s);
}

/* Block-style YAML for plain objects, arrays and scalars (strings quoted only when needed). */
export function toYAML(v, indent = '') {
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return v.map((item) => {
      if (item !== null && typeof item === 'object' && !Array.isArray(item) && Object.keys(item).length) {
        const inner = toYAML(item, indent + '  ').split('\n');
        return `${indent}- ${inner[0].trimStart()}\n${inner.slice(1).join('\n')}`.replace(/\n$/, '');
      }
      return `${indent}- ${toYAML(item, indent + '  ').trimStart()}`;
    }).join('\n');
  }
  if (v !== null && typeof v === 'object') {
    if (!Object.keys(v).length) return '{}';
    return Object.entries(v).map(([k, val]) => {
      if (val !== null && typeof val === 'object' && (Array.isArray(val) ? val.length : Object.keys(val).length)) {
        return `${indent}${scalar(k)}:\n${toYAML(val, indent + '  ')}`;
      }
      return `${indent}${scalar(k)}: ${toYAML(val, indent + '  ').trimStart()}`;
    }).join('\n');
  }
  return scalar(v);
}

/*
 * The suite's standard config. upstreamPort: the fake upstream (provider `fake`).
 * auth: add auth.keys [dev: sk-test-123]. star: route "*" to fake (false: unknown models 404).
 * providers/models: extra entries (models go before "*"). limits/timeouts: overrides.
 */
export function baseConfig({ upstreamPort, auth = false, star = true, providers = {}, models = {},
  limits = {}, timeouts = {}, workers = 2 } = {}) {
  const cfg = {
    listen: '127.0.0.1:0',
    workers,
    limits: { max_body: '1MiB', max_header: '16KiB', stream_buffer: '256KiB', ...limits },
    timeouts: { connect: '2s', first_byte: '2s', idle: '2s', keepalive: '500ms', client_header: '5s', drain: '5s', ...timeouts },
  };
  if (auth) cfg.auth = { keys: [{ name: 'dev', key: CLIENT_KEY }] };
  cfg.providers = {
    // The breaker is off here: these suites provoke upstream failures on purpose, one after
    // another, and each must see its own status (fallback.test.mjs tests the breaker).
    ...(upstreamPort ? { fake: { type: 'openai', base_url: `http://127.0.0.1:${upstreamPort}/v1`, api_key: UPSTREAM_KEY, breaker: { failures: 0 } } } : {}),
    mock: { type: 'mock', ttft: '50ms', tokens_per_s: 200, tokens: 20 },
    ...providers,
  };
  cfg.models = {
    'mock-*': [{ provider: 'mock' }],
    ...(upstreamPort ? { renamed: [{ provider: 'fake', model: 'upstream-name' }] } : {}),
    ...models,
    ...(star && upstreamPort ? { '*': [{ provider: 'fake' }] } : {}),
  };
  return cfg;
}

export function tempFile(name, text) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-integ-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

export function assertBinary() {
  assert.ok(fs.existsSync(SLUICE_BIN), `sluice binary not found at ${SLUICE_BIN} (build it, or set SLUICE_BIN)`);
}

/* Runs the binary to completion (for --check-config and friends), bounded. */
export function runSluiceSync(args, timeoutMs = 10000) {
  assertBinary();
  const r = spawnSync(SLUICE_BIN, args, { encoding: 'utf8', timeout: timeoutMs, env: process.env });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/* ---------------- the process ---------------- */

export class Sluice {
  constructor(proc, configFile) {
    this.proc = proc;
    this.pid = proc.pid;
    this.configFile = configFile;
    this.stderrLines = [];
    this.stdout = '';
    this.exit = null;
    this.events = new EventEmitter();
    this.events.setMaxListeners(0);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(proc);
        this.events.emit('change');
        resolve(this.exit);
      });
    });
  }

  get url() { return `http://${this.host}:${this.port}`; }
  get baseURL() { return `${this.url}/v1`; }
  stderr() { return this.stderrLines.join('\n'); }

  /* The access log: every stderr line starting with {"ts", parsed ({_invalid: line} if it is
   * not JSON). */
  accessLog() {
    this.logCache ??= { n: 0, entries: [] };
    for (; this.logCache.n < this.stderrLines.length; this.logCache.n++) {
      const l = this.stderrLines[this.logCache.n];
      if (!l.startsWith('{"ts"')) continue;
      let e;
      try { e = JSON.parse(l); } catch { e = { _invalid: l }; }
      this.logCache.entries.push(e);
    }
    return this.logCache.entries;
  }

  /* Resolves with the first access-log entry matching pred (bounded). */
  waitForLog(pred, timeoutMs = 3000, label = 'an access-log line') {
    return this.waitUntil(() => this.accessLog().find(pred), timeoutMs, label);
  }

  /* Resolves with fn()'s first truthy value, re-checked on each stderr line and on exit. */
  waitUntil(fn, timeoutMs = 3000, label = 'a sluice condition') {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = fn();
        if (hit) { done(); resolve(hit); return true; }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label}; stderr tail:\n${this.stderrLines.slice(-10).join('\n')}`));
      }, timeoutMs);
      const done = () => { clearTimeout(timer); this.events.off('change', check); };
      if (!check()) this.events.on('change', check);
    });
  }

  /* SIGTERM, then wait (bounded) for the exit. On timeout: SIGKILL and an assertion failure. */
  async stop({ timeoutMs = 10000 } = {}) {
    if (!this.exit) {
      this.proc.kill('SIGTERM');
      let timer;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise((r) => { timer = setTimeout(() => r(true), timeoutMs); }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.proc.kill('SIGKILL');
        await this.exited;
        throw new assert.AssertionError({ message: `sluice did not exit within ${timeoutMs} ms of SIGTERM (killed)` });
      }
    }
    await this.stderrClosed;
    return { ...this.exit, stderr: this.stderr() };
  }
}

/*
 * Starts sluice with `config` (object → YAML) or `yaml` (raw text). Resolves once the
 * listening line names the port; rejects with stderr if it exits first or takes longer than
 * timeoutMs.
 */
export async function startSluice({ config, yaml, args = [], env = {}, timeoutMs = 15000 } = {}) {
  assertBinary();
  const text = yaml ?? `${toYAML(config)}\n`;
  const configFile = tempFile('sluice.yaml', text);
  const proc = spawn(SLUICE_BIN, ['--config', configFile, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
  });
  live.add(proc);
  const sl = new Sluice(proc, configFile);
  const verbose = !!process.env.SLUICE_TEST_VERBOSE;
  let pending = '';
  sl.stderrClosed = new Promise((resolve) => proc.stderr.on('close', resolve));
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    pending += d;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const l of lines) {
      sl.stderrLines.push(l);
      if (verbose) process.stderr.write(`[sluice ${proc.pid}] ${l}\n`);
    }
    sl.events.emit('change');
  });
  proc.stderr.on('close', () => { if (pending) sl.stderrLines.push(pending); pending = ''; sl.events.emit('change'); });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d) => { sl.stdout += d; });

  await new Promise((resolve, reject) => {
    const check = () => {
      for (const l of sl.stderrLines) {
        const m = /listening on http:\/\/(\[[^\]]+\]|[^\s:\/]+):(\d+)/.exec(l);
        if (m) { sl.host = m[1]; sl.port = Number(m[2]); done(); resolve(); return; }
      }
      if (sl.exit) {
        done();
        reject(new Error(`sluice exited (${JSON.stringify(sl.exit)}) before listening; config:\n${text}\nstderr:\n${sl.stderr()}`));
      }
    };
    const timer = setTimeout(() => {
      done();
      proc.kill('SIGKILL');
      reject(new Error(`sluice printed no "listening on" line within ${timeoutMs} ms; stderr:\n${sl.stderr()}`));
    }, timeoutMs);
    const done = () => { clearTimeout(timer); sl.events.off('change', check); };
    sl.events.on('change', check);
    check();
  });
  assert.ok(sl.port > 0, `bad port in listening line: ${sl.port}`);
  return sl;
}

/*
 * The end of every test file: SIGTERM, exit code 0 (ASan reports leaks through the exit code),
 * no sanitizer report, and none of the `secrets` in stderr.
 */
export async function stopAndCheck(sl, { secrets = [CLIENT_KEY], timeoutMs = 10000 } = {}) {
  if (!sl) return null;
  const r = await sl.stop({ timeoutMs });
  const tail = r.stderr.split('\n').slice(-40).join('\n');
  assert.equal(r.signal, null, `sluice died by signal ${r.signal}; stderr tail:\n${tail}`);
  assert.doesNotMatch(r.stderr, /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/, `sanitizer report:\n${tail}`);
  assert.equal(r.code, 0, `sluice exited with ${r.code} after SIGTERM; stderr tail:\n${tail}`);
  for (const s of secrets) assert.ok(!r.stderr.includes(s), `secret ${JSON.stringify(s)} appeared in sluice's stderr`);
  return r;
}

/* A chat body with one user message. */
export function chat(model, content = 'hello', extra = {}) {
  return { model, messages: [{ role: 'user', content }], ...extra };
}

/*
 * The usual test file: a fake upstream and a sluice configured against it, started in
 * before() and torn down in after(). config(up) builds the config object (may be async: node 20
 * does not wait for one root before() hook before starting the next, so a file must not
 * prepare config in a before() of its own). Call
 * ctx.testCleanExit() as the file's last test: it SIGTERMs sluice and asserts exit code 0.
 */
export function useSluice(config = (up) => baseConfig({ upstreamPort: up.port }), { upstream = true, secrets, start = {} } = {}) {
  const ctx = { up: null, sl: null };
  before(async () => {
    if (upstream) ctx.up = await startFakeUpstream();
    ctx.sl = await startSluice({ config: await config(ctx.up), ...start });
  });
  after(async () => {
    if (ctx.sl && !ctx.sl.exit) {
      ctx.sl.proc.kill('SIGKILL');
      await ctx.sl.exited;
    }
    await ctx.up?.close();
  });
  ctx.testCleanExit = () => test('SIGTERM: sluice exits 0, no sanitizer report, no key in stderr', async () => {
    assert.ok(ctx.sl, 'sluice never started');
    await stopAndCheck(ctx.sl, { secrets });
  });
  return ctx;
}
