#!/usr/bin/env node
// Keeps the tree's layering true (docs/ARCHITECTURE.md, "Layers"). Three checks:
//  1. includes point down: every `#include "dir/file.h"` in src/ names a folder of a lower
//     layer than the includer's own folder (or the same folder);
//  2. no module calls back into a module that calls it: from the built objects (nm), module A
//     depends on module B when A uses a symbol B defines; the graph of .c files must have no
//     cycle (strongly connected component of more than one file);
//  3. no src/ file is longer than MAX_LINES.
// Usage: node scripts/layers.mjs BUILD_DIR   (the objects of BUILD_DIR/src/**/*.o)
// Exit 1 with one line per violation; else one summary line.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname, basename } from 'node:path';

const MAX_LINES = 800;
// Bottom to top. Folders on one line are peers: neither may include the other.
const LAYERS = [
  ['core'],
  ['codec', 'http'],
  ['config'],
  ['obs'],
  ['store'],
  ['policy', 'upstream'],
  ['net'],
  ['relay'],
  ['dialect'],
  ['server'],
  ['admin'],
  ['.'], // src/main.c
];
// Module pairs allowed to call each other, each with the reason (none today).
const ALLOWED_CYCLES = [];

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');
const build = process.argv[2];
if (!build) {
  console.error('usage: node scripts/layers.mjs BUILD_DIR');
  process.exit(2);
}
const rank = new Map();
LAYERS.forEach((folders, i) => folders.forEach((f) => rank.set(f, i)));

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

const problems = [];
const files = walk(src).filter((p) => /\.[ch]$/.test(p));
let longest = { file: '', lines: 0 };

for (const path of files) {
  const rel = relative(src, path);
  const folder = dirname(rel);
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const n = lines.length - (text.endsWith('\n') ? 1 : 0);
  if (n > longest.lines) longest = { file: rel, lines: n };
  if (n > MAX_LINES) problems.push(`src/${rel}: ${n} lines (at most ${MAX_LINES})`);
  if (!rank.has(folder)) {
    problems.push(`src/${rel}: folder ${folder}/ has no layer (add it to LAYERS in scripts/layers.mjs)`);
    continue;
  }
  lines.forEach((line, i) => {
    const m = /^\s*#\s*include\s+"([^"]+)"/.exec(line);
    if (!m || !m[1].includes('/')) return;
    const to = dirname(m[1]);
    if (to === folder) return;
    if (!rank.has(to)) {
      problems.push(`src/${rel}:${i + 1}: includes ${m[1]}, outside every layer`);
    } else if (rank.get(to) >= rank.get(folder)) {
      const how = rank.get(to) === rank.get(folder) ? 'a peer' : 'a higher layer';
      problems.push(`src/${rel}:${i + 1}: includes ${m[1]}: ${to}/ is ${how} than ${folder}/`);
    }
  });
}

// ---- calls between modules, from the objects ----
// Only the objects of today's sources: a build tree can hold stale ones of moved files.
const objects = files
  .filter((p) => p.endsWith('.c'))
  .map((p) => join(build, 'src', relative(src, p).replace(/\.c$/, '.o')));
const missing = objects.filter((o) => !existsSync(o));
if (missing.length) {
  console.error(`layers: not built: ${missing.join(' ')}`);
  process.exit(2);
}
const defines = new Map(); // symbol -> module
const uses = new Map(); // module -> Set(symbol)
for (const obj of objects) {
  const mod = relative(join(build, 'src'), obj).replace(/\.o$/, '');
  uses.set(mod, new Set());
  const out = execFileSync('nm', ['--format=posix', obj], { encoding: 'utf8' });
  for (const line of out.split('\n')) {
    const [sym, type] = line.split(' ');
    if (!sym || !type) continue;
    if (type === 'U') uses.get(mod).add(sym);
    else if (/[TDRBCGSV]/.test(type)) defines.set(sym, mod);
  }
}
const edges = new Map();
for (const [mod, syms] of uses) {
  const to = new Set();
  for (const s of syms) {
    const d = defines.get(s);
    if (d && d !== mod) to.add(d);
  }
  edges.set(mod, to);
}
// Tarjan's strongly connected components.
let index = 0;
const idx = new Map(), low = new Map(), stack = [], on = new Set(), sccs = [];
function connect(v) {
  idx.set(v, index); low.set(v, index); index++;
  stack.push(v); on.add(v);
  for (const w of edges.get(v)) {
    if (!idx.has(w)) { connect(w); low.set(v, Math.min(low.get(v), low.get(w))); }
    else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const c = [];
    let w;
    do { w = stack.pop(); on.delete(w); c.push(w); } while (w !== v);
    if (c.length > 1) sccs.push(c.sort());
  }
}
for (const v of edges.keys()) if (!idx.has(v)) connect(v);
for (const c of sccs) {
  const key = c.join(' ');
  if (ALLOWED_CYCLES.some((a) => a.modules.join(' ') === key)) continue;
  const detail = c
    .map((m) => `${m} -> ${[...edges.get(m)].filter((t) => c.includes(t)).join(', ')}`)
    .join('; ');
  problems.push(`call cycle between ${c.length} files: ${detail}`);
}

if (problems.length) {
  for (const p of problems) console.error(`layers: ${p}`);
  process.exit(1);
}
const nedges = [...edges.values()].reduce((a, s) => a + s.size, 0);
console.log(
  `layers: ${files.length} files in ${LAYERS.length} layers, includes point down; ` +
    `${edges.size} modules, ${nedges} call edges, no cycle; longest ${longest.file} ` +
    `(${longest.lines} lines)`,
);
