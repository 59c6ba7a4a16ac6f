// The package as a package: test/types-usage.ts type-checks with `tsc --noEmit --strict` against
// sluice-client.d.ts (resolved through package.json's exports, by the package's own name), the
// .d.ts declares every runtime export, and package.json's entry points are the module itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as client from '../src/sluice-client.js';

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dts = fs.readFileSync(path.join(pkgDir, 'src/sluice-client.d.ts'), 'utf8');
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));

test('tsc --noEmit --strict accepts test/types-usage.ts (and its @ts-expect-error lines are errors)', { timeout: 120_000 }, () => {
  const tsc = path.join(pkgDir, 'node_modules/.bin/tsc');
  assert.ok(fs.existsSync(tsc), `${tsc} is missing: run npm ci in clients/js (scripts/deps.sh --npm does)`);
  const r = spawnSync(tsc, ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext',
    '--moduleResolution', 'nodenext', '--lib', 'es2022,dom,dom.iterable,dom.asynciterable',
    'test/types-usage.ts'], { cwd: pkgDir, encoding: 'utf8', timeout: 110_000 });
  assert.equal(r.error, undefined, String(r.error));
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
});

test('the .d.ts declares every export of the module, and nothing it lacks', () => {
  const declared = new Set([...dts.matchAll(/^export (?:declare )?(?:function|class|const) (\w+)/gm)].map((m) => m[1]));
  assert.deepEqual([...declared].sort(), Object.keys(client).sort());
});

test('package.json: ESM, exports and types point at the module and its .d.ts, react an optional peer', async () => {
  assert.equal(pkg.name, 'sluice-client');
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.exports['.'].types, './src/sluice-client.d.ts');
  assert.equal(pkg.exports['.'].default, './src/sluice-client.js');
  assert.equal(pkg.types, './src/sluice-client.d.ts');
  for (const f of pkg.files) assert.ok(fs.existsSync(path.join(pkgDir, f)), `${f} is listed in files but missing`);
  assert.equal(pkg.peerDependenciesMeta.react.optional, true);
  assert.equal(pkg.dependencies, undefined, 'no runtime dependencies');
  for (const [name, v] of Object.entries(pkg.devDependencies)) assert.match(v, /^\d+\.\d+\.\d+$/, `${name} is pinned exactly`);
  const self = await import('sluice-client'); /* the package's own name, through its exports */
  assert.equal(self.streamChat, client.streamChat);
});

test('the module imports nothing (a browser loads it as is)', () => {
  const src = fs.readFileSync(path.join(pkgDir, 'src/sluice-client.js'), 'utf8');
  assert.doesNotMatch(src, /^\s*import\s|\bimport\s*\(|\brequire\s*\(/m);
});
