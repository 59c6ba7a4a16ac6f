// bench/ops_report.mjs RAW META JSON_OUT RESULTS_MD
// Turns bench/out/ops_raw.jsonl (written by bench/ops.sh) into bench/out/ops.json and the
// "Operations benchmarks (make bench-ops)" section of bench/RESULTS.md (between its markers;
// the rest of the file, including bench/run.sh's "Latest run" section, is left alone).
import fs from 'node:fs';

const [rawPath, metaJson, jsonOut, mdPath] = process.argv.slice(2);
if (!mdPath) {
  console.error('usage: node bench/ops_report.mjs RAW META JSON_OUT RESULTS_MD');
  process.exit(2);
}
const raw = fs.readFileSync(rawPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const meta = JSON.parse(metaJson);

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const sum = (xs) => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
const r1 = (x) => (x == null ? null : Math.round(x * 10) / 10);
const r2 = (x) => (x == null ? null : Math.round(x * 100) / 100);
const r3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);
const int = (x) => (x == null ? '–' : Math.round(x).toLocaleString('en-US'));
const fx = (x, d = 1) => (x == null ? '–' : x.toFixed(d));
const errs = (l) => (l && !l.failed ? l.errors : NaN);
const answered = (l) => (l && !l.failed ? l.ok + (l.error_kinds?.status ?? 0) : NaN);

const NAMES = {
  a: 'a: bare (metrics off, access log off, no auth, no limits; usage store on)',
  b: 'b: metrics + access log (defaults)',
  c: 'c: b + auth key + rate limits per_key/per_ip (never refusing)',
  d: 'd: c + store.redis (limits in Redis)',
};
const WL = { nonstream: 'non-streaming', stream: `stream (${meta.params.stream_chunks} chunks)` };

// ---- 1-3: requests per gateway CPU-second ----
// Two passes: "closed" (as fast as each variant goes) and "fixed" (one open-loop rate for all).
const MODES = ['closed', 'fixed'];
const cpuRuns = raw.filter((r) => r.test === 'cpu');
const cpu = {};
for (const mode of MODES) {
  cpu[mode] = {};
  for (const wl of ['nonstream', 'stream']) {
    cpu[mode][wl] = {};
    for (const v of ['a', 'b', 'c', 'd']) {
      const runs = cpuRuns.filter((r) => (r.mode ?? 'closed') === mode && r.workload === wl && r.variant === v)
        .sort((x, y) => x.round - y.round);
      const per = runs.map((r) => (r.load.failed || !r.gw_cpu_ns ? NaN : r.load.ok / (r.gw_cpu_ns / 1e9)));
      const perInclRedis = runs.map((r) =>
        r.load.failed || !r.gw_cpu_ns ? NaN : r.load.ok / ((r.gw_cpu_ns + r.redis_cpu_ns) / 1e9));
      const other = runs.map((r) =>
        Math.max(0, r.sys_busy_ns - r.our_servers_ns - (r.load.cpu_s ?? 0) * 1e9) / 1e9 / (r.load.elapsed_s || 1));
      cpu[mode][wl][v] = {
        rounds: runs.length,
        req_per_cpu_s: r1(median(per)),
        req_per_cpu_s_rounds: per.map(r1),
        req_per_cpu_s_incl_redis: v === 'd' ? r1(median(perInclRedis)) : undefined,
        rps: r1(median(runs.map((r) => r.load.rps))),
        gw_cpu_util: r2(median(runs.map((r) => r.gw_cpu_ns / 1e9 / (r.load.elapsed_s || 1)))),
        gw_cpu_us_per_req: r1(median(runs.map((r) => r.gw_cpu_ns / 1e3 / r.load.ok))),
        redis_cpu_us_per_req: v === 'd' ? r1(median(runs.map((r) => r.redis_cpu_ns / 1e3 / r.load.ok))) : undefined,
        redis_cpu_util: v === 'd' ? r2(median(runs.map((r) => r.redis_cpu_ns / 1e9 / (r.load.elapsed_s || 1)))) : undefined,
        redis_commands_per_req: v === 'd' ? r2(median(runs.map((r) => r.redis_commands / r.load.ok))) : undefined,
        access_log_bytes_per_req: r1(median(runs.map((r) => r.access_log_bytes / Math.max(1, r.load.ok)))),
        p50_us: r1(median(runs.map((r) => (wl === 'stream' && mode === 'fixed' ? r.load.ttfb_us?.p50 : r.load.latency_us?.p50)))),
        p99_us: r1(median(runs.map((r) => (wl === 'stream' && mode === 'fixed' ? r.load.ttfb_us?.p99 : r.load.latency_us?.p99)))),
        send_lag_p99_us: mode === 'fixed' ? r1(median(runs.map((r) => r.load.send_lag_us?.p99))) : undefined,
        errors: sum(runs.map((r) => errs(r.load))),
        failed_runs: runs.filter((r) => r.load.failed).length,
        other_cpu_util: r2(median(other)),
        requests: sum(runs.map((r) => (r.load.failed ? NaN : r.load.ok))),
      };
    }
  }
}
// Ratio of medians (headline) and the per-round paired ratios (same round = adjacent runs).
const ratio = (mode, wl, num, den, key = 'req_per_cpu_s') => {
  const n = cpu[mode][wl][num], d = cpu[mode][wl][den];
  const head = n[key] && d[key] ? n[key] / d[key] : null;
  const paired = n.req_per_cpu_s_rounds.map((x, i) => (x && d.req_per_cpu_s_rounds[i] ? x / d.req_per_cpu_s_rounds[i] : null));
  return { ratio: r3(head), per_round: paired.map(r3) };
};
const modeLabel = (mode, wl) => mode === 'closed' ? 'closed loop'
  : `fixed ${wl === 'stream' ? meta.params.fix_rate_stream : meta.params.fix_rate_nonstream} req/s`;
const checks = [];
const cpuCheck = (id, label, num, den, target) => {
  for (const mode of MODES) {
    for (const wl of ['nonstream', 'stream']) {
      if (!cpu[mode][wl][num].rounds) continue;
      const r = ratio(mode, wl, num, den);
      checks.push({ id: `${id}_${mode}_${wl}`, label: `${label}, ${WL[wl]}, ${modeLabel(mode, wl)}`, value: r.ratio,
        per_round: r.per_round, target: `≥ ${target}×`, met: r.ratio != null && r.ratio >= target, unit: '×' });
    }
  }
};
cpuCheck('observability', 'req per CPU-s: metrics + access log (b) / bare (a)', 'b', 'a', 0.9);
cpuCheck('policy', 'req per CPU-s: auth + rate limits + usage (c) / bare (a)', 'c', 'a', 0.9);
cpuCheck('redis', 'req per CPU-s: Redis limits (d) / local limits (c)', 'd', 'c', 0.8);
const redisInfo = {};
for (const mode of MODES) {
  redisInfo[mode] = {};
  for (const wl of ['nonstream', 'stream']) {
    const d = cpu[mode][wl].d, c = cpu[mode][wl].c;
    redisInfo[mode][wl] = {
      ratio_incl_redis_cpu: d.req_per_cpu_s_incl_redis && c.req_per_cpu_s ? r3(d.req_per_cpu_s_incl_redis / c.req_per_cpu_s) : null,
      throughput_ratio: d.rps && c.rps ? r3(d.rps / c.rps) : null,
    };
  }
}

// Redis commands by name (INFO commandstats; commands run inside a Lua script count too), per
// request through variant d, summed over its measured runs.
const parseCs = (t) => Object.fromEntries((t || '').split(',').filter(Boolean).map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
const redisCommands = {};
{
  const dRuns = cpuRuns.filter((r) => r.variant === 'd' && !r.load.failed && r.redis_cmdstats);
  const nreq = sum(dRuns.map((r) => r.load.ok));
  const tot = {};
  for (const r of dRuns) {
    const b = parseCs(r.redis_cmdstats[0]), a = parseCs(r.redis_cmdstats[1]);
    for (const k of Object.keys(a)) tot[k] = (tot[k] || 0) + a[k] - (b[k] || 0);
  }
  delete tot.info; // the INFO calls made around each run are ours, not the gateway's
  for (const [k, v] of Object.entries(tot)) if (v > 0 && nreq) redisCommands[k] = r2(v / nreq);
}

// ---- 4: fallback ----
const fbRuns = raw.filter((r) => r.test === 'fallback');
const fallback = {};
for (const wl of ['nonstream', 'stream']) {
  const dist = wl === 'stream' ? 'ttfb_us' : 'latency_us';
  const get = (route) => fbRuns.filter((r) => r.workload === wl && r.route === route).sort((x, y) => x.round - y.round);
  const D = get('direct'), F = get('fallback');
  const q = (runs, k) => runs.map((r) => (r.load.failed ? NaN : r.load[dist]?.[k]));
  const row = (runs) => ({
    rounds: runs.length,
    p50_us: r1(median(q(runs, 'p50'))),
    p90_us: r1(median(q(runs, 'p90'))),
    p99_us: r1(median(q(runs, 'p99'))),
    p99_us_rounds: q(runs, 'p99').map(r1),
    ok: sum(runs.map((r) => r.load.ok)),
    errors: sum(runs.map((r) => errs(r.load))),
    bad_500s: sum(runs.map((r) => r.bad_requests)),
    send_lag_p99_us: r1(median(runs.map((r) => r.load.send_lag_us?.p99))),
    achieved_rps: r1(median(runs.map((r) => r.load.rps))),
  });
  const d = row(D), f = row(F);
  const paired = (k) => F.map((r, i) => (D[i] && !r.load.failed && !D[i].load.failed ? r.load[dist][k] - D[i].load[dist][k] : NaN));
  // A round is clean when both generators kept their schedule (send lag p99 ≤ 250 µs): CPU 0
  // (generators, upstreams) was not stalled by other work meanwhile.
  const clean = F.map((r, i) => !!D[i] && !r.load.failed && !D[i].load.failed &&
    r.load.send_lag_us?.p99 <= 250 && D[i].load.send_lag_us?.p99 <= 250);
  const pairedClean = (k) => paired(k).filter((_, i) => clean[i]);
  fallback[wl] = {
    clean_rounds: clean.filter(Boolean).length,
    clean_round_flags: clean,
    added_p50_us_clean: r1(median(pairedClean('p50'))),
    added_p99_us_clean: r1(median(pairedClean('p99'))),
    metric: wl === 'stream' ? 'time to first token' : 'complete response',
    direct: d,
    fallback: f,
    // the two routes of a round ran at the same time: the median of the paired differences
    added_p50_us: r1(median(paired('p50'))),
    added_p99_us: r1(median(paired('p99'))),
    added_p50_us_rounds: paired('p50').map(r1),
    added_p99_us_rounds: paired('p99').map(r1),
    bad_500s_per_fallback_request: f.ok ? r3(f.bad_500s / f.ok) : null,
    pair_gw_cpu_us_per_req: r1(median(F.map((r, i) => (D[i] ? r.pair_gw_cpu_ns / 1e3 / Math.max(1, r.load.ok + D[i].load.ok) : NaN)))),
  };
  for (const k of ['p50', 'p99']) {
    const f = fallback[wl];
    const v = f.clean_rounds ? f[`added_${k}_us_clean`] : f[`added_${k}_us`];
    checks.push({ id: `fallback_${k}_${wl}`, label: `fallback after an immediate 500: added ${k}, ${f.metric} (${f.clean_rounds ? `${f.clean_rounds} clean rounds` : 'all rounds, none clean'})`,
      value: v, per_round: fallback[wl][`added_${k}_us_rounds`], target: '≤ 1000 µs', met: v != null && v <= 1000, unit: 'µs' });
  }
}
const fbMetrics = raw.find((r) => r.test === 'fallback_metrics') || {};

// ---- 5: SQLite usage rows ----
const s = raw.find((r) => r.test === 'sqlite');
let sqlite = null;
if (s) {
  const l = s.load;
  const ans = answered(l);
  const written = s.rows_final - s.rows_before;
  const samples = s.samples || [];
  let maxRate = 0, maxLag = 0;
  for (let i = 0; i < samples.length; i++) {
    maxLag = Math.max(maxLag, samples[i].answered - samples[i].rows);
    if (i > 0) maxRate = Math.max(maxRate, (samples[i].rows - samples[i - 1].rows) / (samples[i].t - samples[i - 1].t));
  }
  sqlite = {
    target_rate: s.rate,
    achieved_rps: l.failed ? null : r1(l.rps),
    sustained: !l.failed && l.rps >= 0.95 * s.rate,
    send_lag_p99_us: l.failed ? null : l.send_lag_us?.p99,
    secs: l.failed ? null : l.elapsed_s,
    answered: ans,
    load_errors: errs(l),
    answered_per_metrics: s.answered_metric,
    rows_before: s.rows_before,
    rows_before_sigterm: s.rows_before_term - s.rows_before,
    rows_written: written,
    rows_equal_answered: written === ans,
    rows_per_s_overall: l.failed ? null : r1(written / l.elapsed_s),
    rows_per_s_max_1s: r1(maxRate),
    max_lag_rows_during_run: maxLag,
    store_dropped: s.store_dropped,
    sigterm_exit_s: s.term_s,
    exited_after_sigterm: s.exited,
    statuses: s.statuses,
    samples,
    gw_cpu_us_per_req: r1(s.gw_cpu_ns / 1e3 / Math.max(1, ans)),
  };
  checks.push({ id: 'sqlite_rows', label: `SQLite usage rows after SIGTERM == requests answered (${s.rate} req/s target)`,
    value: `${int(written)} / ${int(ans)}`, target: 'equal', met: written === ans, unit: '' });
  checks.push({ id: 'sqlite_dropped', label: 'sluice_store_dropped_total before SIGTERM', value: s.store_dropped,
    target: '0', met: s.store_dropped === 0, unit: '' });
  checks.push({ id: 'sqlite_rate', label: 'load generator sustained the fixed rate', value: `${fx(sqlite.achieved_rps, 0)} req/s`,
    target: `≥ 95% of ${s.rate}`, met: sqlite.sustained, unit: '' });
}

const totalErrors = sum(cpuRuns.map((r) => errs(r.load))) + sum(fbRuns.map((r) => errs(r.load))) + (s ? errs(s.load) || 0 : 0);
checks.push({ id: 'errors', label: 'errors seen by the load generator (all tests)', value: totalErrors, target: '0', met: totalErrors === 0, unit: '' });

const results = { meta, gateway_log: raw.find((r) => r.test === 'gateway_log') ?? null, checks, cpu, redis: { ...redisInfo, commands_per_request: redisCommands }, fallback, fallback_metrics: fbMetrics.metrics ?? null,
  fallback_bad_requests_total: fbMetrics.bad_requests_total ?? null, sqlite };
fs.writeFileSync(jsonOut, JSON.stringify(results, null, 2) + '\n');

// ---- markdown ----
const p = meta.params;
const L = [];
L.push('<!-- BEGIN ops run (generated by bench/ops.sh; edits inside are overwritten) -->');
L.push('## Operations benchmarks (make bench-ops)');
L.push('');
L.push('What the operational features cost, measured by `bench/ops.sh` (+ `bench/ops_report.mjs`) in one run');
L.push('against the same fake upstream as `make bench`; every sluice is `workers: 1` pinned to its own CPU.');
L.push('The SQLite usage store cannot be turned off in sluice, so even the "bare" variant writes one usage');
L.push('row per request (its store thread is part of the gateway CPU below). Access logs go to a file.');
L.push('');
L.push(`- date: ${meta.date}`);
L.push(`- machine: ${meta.nproc} CPUs, ${meta.cpu}, Linux ${meta.kernel}; redis-server ${meta.redis}; node ${meta.node}; sluice ${meta.sluice_commit} (${meta.sluice_version}, binary built ${meta.sluice_mtime})`);
L.push('- command: `make bench-ops` (= `bench/ops.sh`)');
L.push(`- pinning: sluice on CPU ${meta.pinning.gateway}; fake upstream, 500-responder, redis-server on CPU ${meta.pinning.upstream}; load generator on CPU ${meta.pinning.load}`);
L.push(`- machine load: ${meta.wall_s} s of measurements, whole machine busy ${meta.machine_busy_s} CPU-s (of ${r1(meta.wall_s * meta.nproc)}), steal ${meta.steal_s} s, ${meta.waited_for_quiet_s} s spent waiting for a quiet machine; other sessions were running test suites`);
L.push('');
L.push('### Against the targets');
L.push('');
L.push('| check | result | per round | target | verdict |');
L.push('|---|---|---|---|---|');
for (const c of checks) {
  const val = typeof c.value === 'number' ? `${c.unit === '×' ? fx(c.value, 2) : fx(c.value, c.unit === 'µs' ? 1 : 0)}${c.unit === '×' ? '×' : c.unit ? ' ' + c.unit : ''}` : (c.value ?? '–');
  const pr = c.per_round ? c.per_round.map((x) => (x == null || Number.isNaN(x) ? '–' : c.unit === '×' ? fx(x, 2) : fx(x, 0))).join(', ') : '';
  L.push(`| ${c.label} | ${val} | ${pr} | ${c.target} | ${c.met ? 'met' : '**NOT met**'} |`);
}
L.push('');
L.push(`### 1–3. Requests per gateway CPU-second (${p.tp_conns} connections; closed loop ${p.tp_rounds} rounds × ${p.tp_secs} s, then open loop at a fixed rate ${p.fix_rounds} rounds × ${p.fix_secs} s, per variant; order rotated each round)`);
L.push('');
L.push('CPU = on-CPU time of all sluice threads (`/proc/PID/task/*/schedstat`) over the run; medians over rounds. The closed loop runs each variant as fast as it goes (as `make bench` does); the fixed rate offers every variant the same load, so all batch work alike (a closed loop through d waits on Redis, keeps the gateway less busy, and a less busy event loop spends more CPU per request). Redis CPU is the redis-server process, *not* included in the gateway column. "others\' CPU" is what the rest of the machine used meanwhile, in CPUs (2 in all).');
L.push('');
L.push('| pass | workload | variant | req/s | req per CPU-s (per round) | gateway CPU util | µs CPU/req | access log B/req | Redis µs CPU/req | Redis cmds/req | p50 µs | p99 µs | errors | others\' CPU |');
L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const mode of MODES) {
  for (const wl of ['nonstream', 'stream']) {
    for (const v of ['a', 'b', 'c', 'd']) {
      const x = cpu[mode][wl][v];
      if (!x.rounds) continue;
      L.push(`| ${modeLabel(mode, wl)} | ${WL[wl]} | ${NAMES[v]} | ${int(x.rps)} | ${int(x.req_per_cpu_s)} (${x.req_per_cpu_s_rounds.map(int).join(', ')}) | ${fx(x.gw_cpu_util, 2)} | ${fx(x.gw_cpu_us_per_req)} | ${fx(x.access_log_bytes_per_req, 0)} | ${v === 'd' ? fx(x.redis_cpu_us_per_req) : ''} | ${v === 'd' ? fx(x.redis_commands_per_req, 2) : ''} | ${fx(x.p50_us)} | ${fx(x.p99_us)} | ${x.errors} | ${fx(x.other_cpu_util, 2)} |`);
    }
  }
}
L.push('');
for (const mode of MODES) {
  for (const wl of ['nonstream', 'stream']) {
    if (!cpu[mode][wl].a.rounds) continue;
    const ri = redisInfo[mode][wl];
    L.push(`${WL[wl]}, ${modeLabel(mode, wl)}: b/a **${fx(ratio(mode, wl, 'b', 'a').ratio, 2)}×**, c/a **${fx(ratio(mode, wl, 'c', 'a').ratio, 2)}×**, c/b ${fx(ratio(mode, wl, 'c', 'b').ratio, 2)}×, d/c **${fx(ratio(mode, wl, 'd', 'c').ratio, 2)}×** (gateway CPU only); counting redis-server\'s CPU as well, d/c = ${fx(ri.ratio_incl_redis_cpu, 2)}× (Redis used ${fx(cpu[mode][wl].d.redis_cpu_util, 2)} of a CPU)${mode === 'closed' ? `; throughput d/c = ${fx(ri.throughput_ratio, 2)}×` : ''}.`);
    L.push('');
  }
}
if (Object.keys(redisCommands).length)
  L.push(`Redis commands per request through d (INFO commandstats, Lua-internal calls included): ${Object.entries(redisCommands).map(([k, v]) => `${k} ${fx(v, 2)}`).join(', ')}.`, '');
L.push(`### 4. Fallback after an immediate upstream 500 (open loop, both routes at once at ${p.fb_rate} req/s each, ${p.fb_conns} connections each, ${p.fb_rounds} rounds × ${p.fb_secs} s, variant b)`);
L.push('');
L.push('Model `fallback*` → `[ {provider: bad}, {provider: good} ]`, where `bad` (a few lines of node: `bench/out/upstream` cannot answer 500) answers every request `500` at once and has `breaker: { failures: 0 }` so it is never skipped; versus model `bench` → `[ {provider: good} ]` on the same sluice, the two load generators running at the same time so machine noise hits both alike. Latency counts from the scheduled send time; for streams it is time to the first `data:` byte. p50/p90/p99 are medians of the per-round percentiles; "added" is the median over rounds of (fallback − direct) in the same round; rounds marked * were noisy (send lag p99 of a load generator > 250 µs, i.e. CPU 0 was stalled by other work). The added time includes a whole extra HTTP exchange with the node responder, which shares CPU 0 with the generators and the fake upstream.');
L.push('');
L.push('| workload | route | p50 µs | p90 µs | p99 µs | p99 per round | 500s from bad per request | send lag p99 µs | errors |');
L.push('|---|---|---|---|---|---|---|---|---|');
for (const wl of ['nonstream', 'stream']) {
  const f = fallback[wl];
  for (const route of ['direct', 'fallback']) {
    const x = f[route];
    L.push(`| ${WL[wl]} (${f.metric}) | ${route === 'direct' ? 'bench → good' : 'fallback → bad (500), good'} | ${fx(x.p50_us)} | ${fx(x.p90_us)} | ${fx(x.p99_us)} | ${x.p99_us_rounds.map((y) => fx(y, 0)).join(', ')} | ${x.ok ? fx(x.bad_500s / x.ok, 2) : '–'} | ${fx(x.send_lag_p99_us)} | ${x.errors} |`);
  }
}
L.push('');
for (const wl of ['nonstream', 'stream']) {
  const f = fallback[wl];
  const star = (arr) => arr.map((y, i) => fx(y, 0) + (f.clean_round_flags[i] ? '' : '*')).join(', ');
  L.push(`${WL[wl]}: the fallback adds **${fx(f.added_p50_us)} µs at p50** (per round ${star(f.added_p50_us_rounds)}) and **${fx(f.added_p99_us)} µs at p99** (per round ${star(f.added_p99_us_rounds)}); over the ${f.clean_rounds} clean round(s) only: ${f.clean_rounds ? `${fx(f.added_p50_us_clean)} µs at p50, ${fx(f.added_p99_us_clean)} µs at p99` : 'none was clean'}. Gateway CPU for both routes together: ${fx(f.pair_gw_cpu_us_per_req)} µs per request.`);
  L.push('');
}
if (results.fallback_metrics) {
  L.push('sluice\'s own count afterwards: `' + results.fallback_metrics.split('\n').join('`, `') + '`.');
  L.push('');
}
if (sqlite) {
  L.push(`### 5. SQLite usage rows (open loop, ${sqlite.target_rate} req/s target, ${p.sql_conns} connections, ${p.sql_secs} s, fresh sluice with defaults, then SIGTERM)`);
  L.push('');
  L.push('| target rate | achieved req/s | send lag p99 µs | answered | rows before SIGTERM | rows after exit | rows == answered | rows/s overall | rows/s best 1 s | max lag during run (rows) | sluice_store_dropped_total | exit after SIGTERM |');
  L.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  L.push(`| ${int(sqlite.target_rate)} | ${int(sqlite.achieved_rps)} | ${fx(sqlite.send_lag_p99_us)} | ${int(sqlite.answered)} | ${int(sqlite.rows_before_sigterm)} | ${int(sqlite.rows_written)} | ${sqlite.rows_equal_answered ? 'yes' : '**no**'} | ${int(sqlite.rows_per_s_overall)} | ${int(sqlite.rows_per_s_max_1s)} | ${int(sqlite.max_lag_rows_during_run)} | ${sqlite.store_dropped} | ${sqlite.exited_after_sigterm ? fx(sqlite.sigterm_exit_s, 2) + ' s' : '**did not exit**'} |`);
  L.push('');
  L.push(`Status of the rows: ${sqlite.statuses || '–'}. "max lag" = requests counted in \`sluice_requests_total\` minus rows in the file, sampled once a second during the run (the file was read by the \`sqlite3\` CLI meanwhile, WAL mode). ${sqlite.sustained ? `The load generator kept the ${int(sqlite.target_rate)} req/s schedule.` : `**The load generator did not sustain ${int(sqlite.target_rate)} req/s on this machine** (achieved ${int(sqlite.achieved_rps)}); the row check holds at the rate achieved.`}`);
  L.push('');
}
const gl = raw.find((r) => r.test === 'gateway_log');
if (gl) {
  L.push(`sluice's own log lines during the run (stderr minus access-log lines; count, variant: line; timestamps and durations blanked): ${gl.lines ? '' : 'none.'}`);
  if (gl.lines) {
    L.push('');
    L.push('```');
    for (const l of gl.distinct) L.push(l.trim().slice(0, 200));
    L.push('```');
  }
  L.push('');
}
L.push('Machine-readable: `bench/out/ops.json` (raw: `bench/out/ops_raw.jsonl`).');
L.push('<!-- END ops run -->');
L.push('');

let md = fs.existsSync(mdPath) ? fs.readFileSync(mdPath, 'utf8') : '';
const re = /<!-- BEGIN ops run[\s\S]*?<!-- END ops run -->\n?/;
const section = L.join('\n');
if (re.test(md)) md = md.replace(re, section);
else md = md.replace(/\n*$/, '\n\n') + section;
fs.writeFileSync(mdPath, md);
console.log(checks.map((c) => `${c.met ? 'met    ' : 'NOT met'}  ${c.label}: ${typeof c.value === 'number' ? r3(c.value) : c.value} (target ${c.target})`).join('\n'));
