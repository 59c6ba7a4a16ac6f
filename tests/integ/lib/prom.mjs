// Prometheus text exposition format 0.0.4: a strict parser (the grammar, HELP/TYPE rules, one
// group per family, no duplicate series, histogram invariants), promtool's own parser and
// linter when /usr/bin/promtool is there (Debian package `prometheus`), and small helpers to
// read values and deltas out of scrapes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { request } from './raw-http.mjs';
import { pollUntil } from './poll.mjs';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s) {
  if (s === 'NaN') return NaN;
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

/* Parses `{a="x",b="y"}` starting at s[i] === '{'; returns [labels, index after '}']. */
function parseLabels(s, i, err) {
  const labels = {};
  i++;
  for (;;) {
    while (s[i] === ' ' || s[i] === '\t') i++;
    if (s[i] === '}') return [labels, i + 1];
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) throw err(`bad label name at column ${i + 1}`);
    const name = m[0];
    if (name.startsWith('__')) throw err(`reserved label name ${name}`);
    i += name.length;
    while (s[i] === ' ') i++;
    if (s[i] !== '=') throw err(`expected = after label ${name}`);
    i++;
    while (s[i] === ' ') i++;
    if (s[i] !== '"') throw err(`expected " to open the value of label ${name}`);
    i++;
    let v = '';
    for (;;) {
      if (i >= s.length) throw err(`unterminated value of label ${name}`);
      const c = s[i];
      if (c === '\\') {
        const n = s[i + 1];
        if (n === '\\') v += '\\';
        else if (n === '"') v += '"';
        else if (n === 'n') v += '\n';
        else throw err(`bad escape \\${n} in label ${name}`);
        i += 2;
        continue;
      }
      if (c === '"') { i++; break; }
      v += c;
      i++;
    }
    if (name in labels) throw err(`label ${name} twice`);
    labels[name] = v;
    while (s[i] === ' ') i++;
    if (s[i] === ',') { i++; continue; }
    if (s[i] === '}') return [labels, i + 1];
    throw err(`expected , or } after label ${name}`);
  }
}

/* The family a sample name belongs to, given the declared types. */
function familyOf(name, types) {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = types.get(base);
      if (t === 'histogram' || (t === 'summary' && suffix !== '_bucket')) return base;
    }
  }
  return name;
}

export const labelKey = (labels) => JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));

/*
 * Parses an exposition. Returns {samples: [{name, family, labels, value}], families:
 * Map(name → {help, type, samples}), errors: [string]}. Never throws: every violation is an
 * entry in errors.
 */
export function parseExposition(text) {
  const errors = [];
  const samples = [];
  const families = new Map();
  const types = new Map();
  const helps = new Set();
  const seenSeries = new Set();
  const closed = new Set(); // families whose group of lines has ended
  let current = null;
  if (text.length && !text.endsWith('\n')) errors.push('the exposition does not end with a newline');
  const fam = (name) => {
    if (!families.has(name)) families.set(name, { name, help: null, type: 'untyped', samples: [] });
    return families.get(name);
  };
  const enter = (name, lineNo) => {
    if (current === name) return;
    if (closed.has(name)) errors.push(`line ${lineNo}: family ${name} appears in two separate groups`);
    if (current !== null) closed.add(current);
    current = name;
  };
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, idx) => {
    const lineNo = idx + 1;
    const err = (msg) => new Error(`line ${lineNo}: ${msg}: ${JSON.stringify(line)}`);
    try {
      if (line.trim() === '') return;
      if (line.startsWith('#')) {
        const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
        if (!m) return; // a comment
        const [, kw, name, rest = ''] = m;
        if (!NAME.test(name)) throw err(`bad metric name ${name}`);
        if (kw === 'HELP') {
          if (helps.has(name)) throw err(`second HELP for ${name}`);
          helps.add(name);
          if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw err('bad escape in HELP');
          fam(name).help = rest;
          enter(name, lineNo);
          return;
        }
        const type = rest.trim();
        if (!TYPES.has(type)) throw err(`unknown type ${type}`);
        if (types.has(name)) throw err(`second TYPE for ${name}`);
        if (fam(name).samples.length) throw err(`TYPE for ${name} after its samples`);
        types.set(name, type);
        fam(name).type = type;
        enter(name, lineNo);
        return;
      }
      const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
      if (!m) throw err('bad metric name');
      const name = m[0];
      let i = name.length;
      let labels = {};
      if (line[i] === '{') [labels, i] = parseLabels(line, i, err);
      const rest = line.slice(i);
      if (!/^[ \t]/.test(rest)) throw err('expected a space before the value');
      const parts = rest.trim().split(/[ \t]+/);
      if (parts.length < 1 || parts.length > 2) throw err('expected a value and an optional timestamp');
      const value = parseValue(parts[0]);
      if (value === undefined) throw err(`bad value ${parts[0]}`);
      if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw err(`bad timestamp ${parts[1]}`);
      const family = familyOf(name, types);
      enter(family, lineNo);
      const key = name + labelKey(labels);
      if (seenSeries.has(key)) throw err('duplicate series');
      seenSeries.add(key);
      const s = { name, family, labels, value };
      samples.push(s);
      fam(family).samples.push(s);
      const t = types.get(family) ?? 'untyped';
      if (t === 'counter' && !(value >= 0)) throw err('a counter must be a non-negative number');
      if (t === 'histogram' && name === `${family}_bucket` && !('le' in labels)) throw err('a bucket without le');
      if (t === 'histogram' && name === family) throw err('a histogram sample without _bucket/_sum/_count');
    } catch (e) {
      errors.push(e.message);
    }
  });
  for (const f of families.values()) {
    if (f.type === 'histogram') errors.push(...checkHistogram(f));
  }
  return { samples, families, errors };
}

/* Histogram invariants, per label set: le sorted and parseable, cumulative counts, a +Inf bucket
 * equal to _count, a _sum. */
function checkHistogram(f) {
  const errors = [];
  const groups = new Map();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const k = labelKey(rest);
    if (!groups.has(k)) groups.set(k, { buckets: [], sum: undefined, count: undefined, labels: rest });
    const g = groups.get(k);
    if (s.name === `${f.name}_bucket`) g.buckets.push({ le: parseValue(le), raw: le, v: s.value });
    else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
  }
  for (const [k, g] of groups) {
    const where = `${f.name}${k}`;
    if (g.buckets.some((b) => b.le === undefined || Number.isNaN(b.le))) errors.push(`${where}: a bucket with a bad le`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i].le > g.buckets[i - 1].le)) errors.push(`${where}: buckets not in increasing le order (${g.buckets[i - 1].raw}, ${g.buckets[i].raw})`);
      if (g.buckets[i].v < g.buckets[i - 1].v) errors.push(`${where}: bucket counts not cumulative at le=${g.buckets[i].raw}`);
    }
    const inf = g.buckets.find((b) => b.le === Infinity);
    if (!inf) errors.push(`${where}: no le="+Inf" bucket`);
    if (g.count === undefined) errors.push(`${where}: no _count`);
    if (g.sum === undefined) errors.push(`${where}: no _sum`);
    if (inf && g.count !== undefined && inf.v !== g.count) errors.push(`${where}: +Inf bucket ${inf.v} != _count ${g.count}`);
  }
  return errors;
}

export const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool';

/* Runs `promtool check metrics` on text: {available, code, output}. Exit 1: parse error; 3: lint
 * problems. */
export function promtoolCheck(text) {
  if (!fs.existsSync(PROMTOOL)) return { available: false, code: null, output: `${PROMTOOL} not found (Debian package prometheus)` };
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 10000 });
  return { available: true, code: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/* Asserts text is a valid exposition by our parser and by promtool (parse and lint); returns the parse. */
export function assertValidExposition(text) {
  const p = parseExposition(text);
  assert.deepEqual(p.errors, [], `invalid exposition:\n${p.errors.slice(0, 20).join('\n')}`);
  const pt = promtoolCheck(text);
  assert.ok(pt.available, `${pt.output}: install it (apt-get install prometheus) to validate /metrics`);
  assert.equal(pt.code, 0, `promtool check metrics (exit ${pt.code}):\n${pt.output.slice(0, 3000)}`);
  return p;
}

/* The samples named `name` whose labels include every pair of `labels`. */
export function select(p, name, labels = {}) {
  return p.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/* Sum of the samples named `name` matching `labels` (0 when there is none). */
export function total(p, name, labels = {}) {
  return select(p, name, labels).reduce((a, s) => a + s.value, 0);
}

/* GET /metrics: {status, headers, text, p (parsed, not asserted)}. */
export async function scrape(url, headers = {}) {
  const r = await request(url, { path: '/metrics', headers });
  return { ...r, p: parseExposition(r.text) };
}

/*
 * Scrapes until fn(parsed) is truthy (bounded); resolves with the last scrape either way, so
 * the caller asserts on it. Counters are recorded when an exchange ends, which can be a loop
 * turn after the client saw its last byte.
 */
export function scrapeUntil(url, fn, { timeoutMs = 3000, headers = {} } = {}) {
  return pollUntil(() => scrape(url, headers), {
    until: (s) => s.status === 200 && fn(s.p), timeoutMs, intervalMs: 40, what: `a /metrics scrape of ${url}`, returnLast: true,
  });
}
