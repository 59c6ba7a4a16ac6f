// The command line: --check-config validates and says "FILE: ok" or "FILE:LINE:COL: message";
// --config with a bad file refuses to start with the same kind of message.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import os from 'node:os';
import { runSluiceSync, tempFile, toYAML, baseConfig, SLUICE_BIN, assertBinary } from './lib/sluice.mjs';

function check(text) {
  const file = tempFile('check.yaml', text);
  return { file, ...runSluiceSync(['--check-config', file]) };
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/* Asserts exit 1 and a "file:line:col: message" on stderr; line/col: a number, a regex
 * source, or null (any). */
function assertConfigError(r, line, col) {
  assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
  const l = line === null ? '\\d+' : String(line);
  const c = col === null ? '\\d+' : String(col);
  assert.match(r.stderr, new RegExp(`${escape(r.file)}:${l}:${c}: \\S`), `stderr: ${r.stderr}`);
}

describe('--check-config', { timeout: 60_000 }, () => {
  test('a valid file: exit 0 and "FILE: ok"', () => {
    const r = check(`${toYAML(baseConfig({ upstreamPort: 9, auth: true }))}\n`);
    assert.equal(r.code, 0, `stderr: ${r.stderr}`);
    assert.ok(`${r.stdout}${r.stderr}`.includes(`${r.file}: ok`), `output: ${r.stdout}${r.stderr}`);
  });

  test('the example config of the interface, as written', () => {
    const r = check([
      'listen: 127.0.0.1:0',
      'workers: 2',
      'limits: { max_body: 1MiB, max_header: 16KiB, stream_buffer: 256KiB }',
      'timeouts: { connect: 2s, first_byte: 2s, idle: 2s, keepalive: 500ms, client_header: 5s, drain: 5s }',
      'auth: { keys: [ { name: dev, key: sk-test-123 } ] }',
      'providers:',
      '  fake: { type: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-upstream-xyz }',
      '  mock: { type: mock, ttft: 50ms, tokens_per_s: 200, tokens: 20 }',
      'models:',
      '  mock-*: [ { provider: mock } ]',
      '  renamed: [ { provider: fake, model: upstream-name } ]',
      '  "*": [ { provider: fake } ]',
      '',
    ].join('\n'));
    assert.equal(r.code, 0, `stderr: ${r.stderr}`);
    assert.ok(r.stderr.length === 0 || !/error/i.test(r.stderr), r.stderr);
  });

  test('an unknown key at line 3, column 1 → exit 1 naming FILE:3:1', () => {
    assertConfigError(check('listen: 127.0.0.1:0\nworkers: 2\nbogus_key: 1\n'), 3, 1);
  });

  test('a wrong type → exit 1 naming the value\'s line and column', () => {
    assertConfigError(check('listen: 127.0.0.1:0\nworkers: many\n'), 2, 10);
  });

  test('a bad duration → exit 1 naming its position', () => {
    assertConfigError(check('listen: 127.0.0.1:0\ntimeouts:\n  idle: forever\n'), 3, 9);
  });

  test('a bad size → exit 1 naming its position', () => {
    assertConfigError(check('limits:\n  max_body: 1 gigabyte please\n'), 2, 13);
  });

  test('a model routed to an unknown provider → exit 1 naming its line', () => {
    assertConfigError(check('providers:\n  m: { type: mock }\nmodels:\n  x:\n    - provider: nope\n'), '[45]', null);
  });

  test('a YAML syntax error → exit 1 with file:line:col', () => {
    assertConfigError(check('listen: [127.0.0.1:0\nworkers: 2\n'), null, null);
  });

  test('a missing file → exit 1 naming the path', () => {
    const file = path.join(os.tmpdir(), 'sluice-integ-no-such-dir', 'nope.yaml');
    const r = runSluiceSync(['--check-config', file]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(file), `stderr: ${r.stderr}`);
  });
});

describe('--config', { timeout: 60_000 }, () => {
  test('a bad file: sluice refuses to start and names FILE:3:1', async () => {
    assertBinary();
    const file = tempFile('bad.yaml', 'listen: 127.0.0.1:0\nworkers: 2\nbogus_key: 1\n');
    const proc = spawn(SLUICE_BIN, ['--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => { stderr += d; });
    let timer;
    const code = await Promise.race([
      new Promise((resolve) => proc.on('exit', (c) => resolve(c))),
      new Promise((resolve) => { timer = setTimeout(() => { proc.kill('SIGKILL'); resolve('timeout'); }, 5000); }),
    ]);
    clearTimeout(timer);
    assert.notEqual(code, 'timeout', 'sluice started (or hung) with a bad config');
    assert.notEqual(code, 0);
    assert.match(stderr, new RegExp(`${escape(file)}:3:1: \\S`));
    assert.doesNotMatch(stderr, /listening on/);
  });
});
