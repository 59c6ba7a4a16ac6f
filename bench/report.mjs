// Turns the raw measurements of bench/run.sh into bench/out/results.json and the
// "Latest run" section of bench/RESULTS.md (the rest of that file is left as it is).
// usage: node bench/report.mjs RAW.jsonl META_JSON RESULTS.json RESULTS.md
import fs from 'node:fs';

const [rawPath, metaJson, jsonOut, mdPath] = process.argv.slice(2);
const meta = JSON.parse(metaJson);
const raw = fs.readFileSync(rawPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

const TARGETS = {
  rps_per_cpu_ratio: 1.5, // sluice ≥ 1.5 × nginx requests per CPU-second
  added_p99_us: 300, // non-streaming, at the fixed rate, over direct
  added_ttft_p99_us: 500,
  idle_stream_kib: 4,
  many_streams: 10000, // concurrent slow streams, 0 errors
  cancel_p99_us: 2000, // client disconnect -> upstream connection closed, p99
};

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const r1 = (x) => (x == null || !Number.isFinite(x) ? null : Math.round(x * 10) / 10);
const r2 = (x) => (x == null || !Number.isFinite(x) ? null : Math.round(x * 100) / 100);
const errorsOf = (l) => (l.failed ? 1 : l.errors || 0);

// ---- 1. throughput per CPU-second ----
const throughput = {};
const tpRows = raw.filter((r) => r.test === 'throughput');
for (const wl of [...new Set(tpRows.map((r) => r.workload))]) {
  for (const t of ['direct', 'nginx', 'sluice']) {
    const rs = tpRows.filter((r) => r.workload === wl && r.target === t);
    if (!rs.length) continue;
    const sum = (fn) => rs.reduce((a, r) => a + (fn(r) || 0), 0);
    const ok = sum((r) => r.load.ok);
    const cpu = sum((r) => r.cpu_ticks / r.clk_tck);
    const elapsed = sum((r) => r.load.elapsed_s);
    const perRound = rs.map((r) => (r.cpu_ticks > 0 ? Math.round((r.load.ok || 0) / (r.cpu_ticks / r.clk_tck)) : null));
    (throughput[wl] ||= {})[t] = {
      rounds: rs.length,
      ok,
      errors: sum((r) => errorsOf(r.load)),
      rps: r1(ok / (elapsed || 1)),
      cpu_s: r2(cpu),
      cpu_util: r2(cpu / (elapsed || 1)),
      req_per_cpu_s: cpu > 0 ? Math.round(ok / cpu) : null,
      req_per_cpu_s_per_round: perRound,
      latency_p50_us: r1(median(rs.map((r) => r.load.latency_us?.p50))),
      events_per_response: rs[0].load.events_per_response,
      upstream_connections: sum((r) => r.upstream?.connections),
      // the fake upstream and the load generator share a CPU (unless nproc ≥ 4): near 1.0 means
      // the client side, not the gateway, limited the request rate
      client_side_cpu_util: r2((sum((r) => r.upstream_cpu_ticks / r.clk_tck) + sum((r) => r.load.cpu_s)) / (elapsed || 1)),
    };
  }
}
for (const w of Object.values(throughput)) {
  const s = w.sluice?.req_per_cpu_s, n = w.nginx?.req_per_cpu_s;
  w.sluice_vs_nginx = s && n ? r2(s / n) : null;
}

// ---- 2. latency at a fixed rate ----
// A run is "clean" when the load generator itself kept to its schedule (send lag p99 under
// clean_lag_us) and other processes used < 10% of one CPU during it. Percentiles are the
// median over a target's clean runs (over all its runs when none was clean); "added" is
// that minus direct's.
const latRows = raw.filter((r) => r.test === 'latency');
const cleanLag = meta.params.clean_lag_us;
const foreignCpu = (r) => {
  if (r.sys_busy_ticks == null) return null;
  const ours = r.cpu_ticks + (r.target === 'direct' ? 0 : r.upstream_cpu_ticks || 0);
  return Math.max(0, (r.sys_busy_ticks - ours) / r.clk_tck - (r.load.cpu_s || 0));
};
const isClean = (r) => {
  const lag = r.load.send_lag_us?.p99, fc = foreignCpu(r);
  return !r.load.failed && lag != null && lag <= cleanLag && (fc == null || fc <= 0.1 * (r.load.elapsed_s || 1));
};
const latency = {};
for (const wl of ['nonstream', 'stream']) {
  const metric = wl === 'stream' ? 'ttfb_us' : 'latency_us';
  const byT = {};
  for (const t of ['direct', 'nginx', 'sluice']) {
    const rs = latRows.filter((r) => r.workload === wl && r.target === t);
    const clean = rs.filter(isClean);
    const use = (clean.length ? clean : rs).filter((r) => r.load[metric]?.n);
    const ok = rs.reduce((a, r) => a + (r.load.ok || 0), 0);
    const cpu = rs.reduce((a, r) => a + (r.cpu_ticks ?? 0) / r.clk_tck, 0);
    byT[t] = {
      runs: rs.length,
      clean_runs: clean.length,
      errors: rs.reduce((a, r) => a + errorsOf(r.load), 0),
      p50: r1(median(use.map((r) => r.load[metric].p50))),
      p90: r1(median(use.map((r) => r.load[metric].p90))),
      p99: r1(median(use.map((r) => r.load[metric].p99))),
      p99_all_runs: r1(median(rs.map((r) => r.load[metric]?.p99))),
      p99_per_run: rs.map((r) => `${r1(r.load[metric]?.p99)}${isClean(r) ? '' : '*'}`),
      send_lag_p99_per_run: rs.map((r) => r1(r.load.send_lag_us?.p99)),
      other_cpu_s_per_run: rs.map((r) => r2(foreignCpu(r))),
      // gateway CPU per request at the fixed rate: a second, load-independent cost measure
      cpu_us_per_request: ok ? r1((cpu / ok) * 1e6) : null,
    };
  }
  for (const t of ['nginx', 'sluice']) {
    const x = byT[t], d = byT.direct;
    const sub = (a, b) => (a == null || b == null ? null : r1(a - b));
    x.added = { p50: sub(x.p50, d.p50), p90: sub(x.p90, d.p90), p99: sub(x.p99, d.p99), p99_all_runs: sub(x.p99_all_runs, d.p99_all_runs) };
    x.trustworthy = x.clean_runs > 0 && d.clean_runs > 0;
  }
  latency[wl] = {
    metric: wl === 'stream' ? 'time to first SSE data byte' : 'time to complete response',
    rate: meta.params.lat_rate,
    targets: byT,
    cpu_per_request_sluice_vs_nginx:
      byT.sluice.cpu_us_per_request && byT.nginx.cpu_us_per_request ? r2(byT.sluice.cpu_us_per_request / byT.nginx.cpu_us_per_request) : null,
  };
}

// ---- 3. memory per idle stream ----
const memory = {};
for (const r of raw.filter((r) => r.test === 'idle_memory')) {
  const open = r.load.streams_open ?? 0;
  memory[r.target] = {
    streams_requested: r.streams,
    streams_open: open,
    errors: errorsOf(r.load),
    rss_before_kib: r.rss_before_kib,
    rss_open_kib: r.rss_open_kib,
    rss_after_close_kib: r.rss_after_kib,
    kib_per_stream: open > 0 ? r2((r.rss_open_kib - r.rss_before_kib) / open) : null,
  };
}
if (memory.sluice?.kib_per_stream != null && memory.nginx?.kib_per_stream)
  memory.sluice_vs_nginx = r2(memory.sluice.kib_per_stream / memory.nginx.kib_per_stream);

// ---- 4. many concurrent slow streams ----
const many = {};
for (const r of raw.filter((r) => r.test === 'many_streams')) {
  const l = r.load;
  many[r.via] = {
    target: r.target,
    streams: r.streams,
    ok: l.ok ?? 0,
    errors: errorsOf(l),
    error_kinds: l.error_kinds,
    events_per_stream: l.events_per_response,
    ttft_p50_ms: l.ttfb_us?.n ? r1(l.ttfb_us.p50 / 1e3) : null,
    ttft_p99_ms: l.ttfb_us?.n ? r1(l.ttfb_us.p99 / 1e3) : null,
    duration_p99_s: l.latency_us?.n ? r2(l.latency_us.p99 / 1e6) : null,
    cpu_s: r2(r.cpu_ticks / r.clk_tck),
    cpu_util: r.wall_s ? r2(r.cpu_ticks / r.clk_tck / r.wall_s) : null,
    cpu_ms_per_stream: l.ok ? r2((r.cpu_ticks / r.clk_tck / l.ok) * 1e3) : null,
    rss_before_kib: r.rss_before_kib,
    rss_peak_kib: r.rss_peak_kib,
    // after an earlier run the allocator reuses the memory it kept: only a rise is a measurement
    kib_per_stream: r.streams && r.rss_peak_kib - r.rss_before_kib > 1024 ? r2((r.rss_peak_kib - r.rss_before_kib) / r.streams) : null,
  };
}

// ---- 5. disconnect -> upstream close ----
const cancel = {};
for (const r of raw.filter((r) => r.test === 'cancel')) {
  const l = r.load, d = l.cancel_us;
  (cancel[r.condition] ||= {})[r.target] = {
    cancels: l.cancels ?? 0,
    timed: d?.n ?? 0,
    unseen: l.failed ? l.cancels ?? 1 : l.cancel_unseen ?? 0,
    errors: errorsOf(l),
    p50: d?.n ? d.p50 : null,
    p90: d?.n ? d.p90 : null,
    p99: d?.n ? d.p99 : null,
    max: d?.n ? d.max : null,
  };
}
const cancelWorst = () => {
  const xs = Object.values(cancel).map((c) => c.sluice).filter(Boolean);
  if (!xs.length) return null;
  if (xs.some((x) => x.unseen || x.errors || x.p99 == null)) return { value: null, bad: true };
  return { value: Math.max(...xs.map((x) => x.p99)), bad: false };
};

// ---- verdicts ----
const verdict = (ok) => (ok == null ? 'n/a' : ok ? 'met' : 'NOT met');
const latCheck = (wl, name, limit) => {
  const x = latency[wl].targets.sluice;
  const v = x.added.p99;
  return { name: name + (x.trustworthy ? '' : ' (no clean runs: machine noise)'), value: v, target: `≤ ${limit} µs`, unit: ' µs',
    ok: v == null ? null : v <= limit, nginx: latency[wl].targets.nginx.added.p99 };
};
const checks = [
  { name: 'requests per CPU-second, non-streaming (sluice / nginx)', value: throughput.nonstream?.sluice_vs_nginx, target: `≥ ${TARGETS.rps_per_cpu_ratio}×`, unit: '×',
    ok: throughput.nonstream?.sluice_vs_nginx == null ? null : throughput.nonstream.sluice_vs_nginx >= TARGETS.rps_per_cpu_ratio },
  { name: `requests per CPU-second, ${meta.params.stream_chunks}-chunk streams (sluice / nginx)`, value: throughput.stream?.sluice_vs_nginx, target: `≥ ${TARGETS.rps_per_cpu_ratio}×`, unit: '×',
    ok: throughput.stream?.sluice_vs_nginx == null ? null : throughput.stream.sluice_vs_nginx >= TARGETS.rps_per_cpu_ratio },
  latCheck('nonstream', `added p99 latency at ${meta.params.lat_rate} req/s, non-streaming`, TARGETS.added_p99_us),
  latCheck('stream', `added TTFT p99 at ${meta.params.lat_rate} req/s`, TARGETS.added_ttft_p99_us),
  (() => {
    const a = many.sluice, b = many.sluice_mock;
    const n = Math.max(a?.ok ?? 0, b?.ok ?? 0);
    const errs = (a?.errors ?? 0) + (b?.errors ?? 0);
    const short = meta.params.proxied_streams < meta.params.many_streams ? ` (proxied: ${a?.streams}, capped by RLIMIT_NOFILE ${meta.params.nofile})` : '';
    return { name: `concurrent slow streams finished whole, 0 errors${short}`, value: a || b ? `${n} (errors ${errs})` : null, target: `${TARGETS.many_streams}, 0 errors`, unit: '',
      ok: a || b ? errs === 0 && n >= Math.min(TARGETS.many_streams, meta.params.mock_streams) : null };
  })(),
  (() => {
    const w = cancelWorst();
    return { name: 'client disconnect → upstream closed, p99 (worst condition)', value: w?.value ?? (w ? 'unseen closes' : null), target: `≤ ${TARGETS.cancel_p99_us} µs`, unit: w?.value != null ? ' µs' : '',
      ok: w == null ? null : !w.bad && w.value <= TARGETS.cancel_p99_us };
  })(),
  { name: 'memory per idle open stream', value: memory.sluice?.kib_per_stream, target: `≤ ${TARGETS.idle_stream_kib} KiB`, unit: ' KiB',
    ok: memory.sluice?.kib_per_stream == null ? null : memory.sluice.kib_per_stream <= TARGETS.idle_stream_kib },
];
const totalErrors = { nginx: 0, sluice: 0, direct: 0 };
for (const r of raw) if (r.load) totalErrors[r.target] += errorsOf(r.load) + (r.load.cancel_unseen || 0);

const results = { meta, targets: TARGETS, throughput, latency, memory, many_streams: many, cancel, checks, total_errors: totalErrors };
fs.writeFileSync(jsonOut, JSON.stringify(results, null, 2) + '\n');

// ---- RESULTS.md ----
const f = (x, d = 1) => (x == null ? '—' : typeof x === 'number' ? x.toFixed(d) : String(x));
const fi = (x) => (x == null ? '—' : Math.round(x).toLocaleString('en-US'));
const p = meta.params;
const L = [];
L.push('<!-- BEGIN latest run (generated by bench/run.sh; edits inside are overwritten) -->');
L.push('## Latest run', '');
L.push(`- date: ${meta.date}`);
L.push(`- machine: ${meta.nproc} CPUs, ${meta.cpu}, Linux ${meta.kernel}; nginx ${meta.nginx}; sluice ${meta.sluice_commit}`);
L.push(`- command: \`make bench\` (= \`bench/run.sh\`)`);
L.push(`- pinning: gateway on CPU ${meta.pinning.gateway}, fake upstream on CPU ${meta.pinning.upstream}, load generator on CPU ${meta.pinning.load}; nginx 1 worker, sluice \`workers: 1\``);
const itf = meta.interference || {};
L.push(`- interference: other processes used ${f(itf.other_cpu_s, 1)} CPU-s and the hypervisor stole ${f(itf.steal_cpu_s, 1)} CPU-s during the ${f(itf.wall_s, 0)} s of measurements (machine capacity ${f((itf.wall_s || 0) * meta.nproc, 0)} CPU-s); ${f(itf.waited_for_quiet_s, 1)} s spent waiting for a quiet machine`);
L.push('', '### Against the targets (DESIGN §12)', '');
L.push('| check | sluice | target | verdict |', '|---|---|---|---|');
for (const c of checks) L.push(`| ${c.name} | ${c.value == null ? '—' : c.value + c.unit} | ${c.target} | ${verdict(c.ok)} |`);
L.push(`| errors seen by the load generator (all tests) | ${totalErrors.sluice} (nginx ${totalErrors.nginx}, direct ${totalErrors.direct}) | 0 | ${verdict(totalErrors.sluice === 0)} |`);

L.push('', `### 1. Requests per gateway CPU-second (closed loop, ${p.tp_conns} connections, ${p.tp_rounds} × ${p.tp_secs} s per target)`, '');
L.push('CPU = utime+stime of the gateway process(es) from /proc/PID/stat over the run. For `direct` the "gateway" column is the fake upstream itself.', '');
L.push('| workload | target | req/s | errors | CPU-s | CPU util | req per CPU-s (per round) | p50 µs | upstream conns opened | upstream+load CPU util |', '|---|---|---|---|---|---|---|---|---|---|');
for (const [wl, w] of Object.entries(throughput))
  for (const t of ['direct', 'nginx', 'sluice']) {
    const x = w[t];
    if (!x) continue;
    L.push(`| ${wl === 'stream' ? `stream (${p.stream_chunks} chunks)` : 'non-streaming'} | ${t} | ${fi(x.rps)} | ${x.errors} | ${f(x.cpu_s, 2)} | ${f(x.cpu_util, 2)} | ${fi(x.req_per_cpu_s)} (${x.req_per_cpu_s_per_round.map(fi).join(', ')}) | ${f(x.latency_p50_us)} | ${fi(x.upstream_connections)} | ${f(x.client_side_cpu_util, 2)} |`);
  }
for (const [wl, w] of Object.entries(throughput)) L.push('', `sluice / nginx, ${wl}: **${f(w.sluice_vs_nginx, 2)}×** requests per CPU-second (target ≥ ${TARGETS.rps_per_cpu_ratio}×)`);

L.push('', `### 2. Latency at a fixed ${p.lat_rate} req/s (open loop, ${p.lat_conns} connections, ${p.lat_secs} s × ${p.lat_rounds} rounds per target)`, '');
L.push(`Latency counts from the scheduled send time (no coordinated omission); for streams it is the time to the first \`data:\` byte (TTFT). A run is *clean* when the load generator kept its schedule (send lag p99 ≤ ${cleanLag} µs) and other processes used < 10% of a CPU meanwhile; p50/p90/p99 are medians over clean runs (all runs if none), "added" subtracts direct. Runs marked * were noisy.`, '');
L.push('| workload | target | clean runs | p50 µs | p90 µs | p99 µs | added p50 | added p90 | added p99 | added p99, all runs | p99 per run | CPU µs/req | errors |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const [wl, w] of Object.entries(latency))
  for (const t of ['direct', 'nginx', 'sluice']) {
    const x = w.targets[t], d = x.added;
    L.push(`| ${wl === 'stream' ? 'stream TTFT' : 'non-streaming'} | ${t} | ${x.clean_runs}/${x.runs} | ${f(x.p50)} | ${f(x.p90)} | ${f(x.p99)} | ${d ? f(d.p50) : ''} | ${d ? f(d.p90) : ''} | ${d ? f(d.p99) : ''} | ${d ? f(d.p99_all_runs) : ''} | ${x.p99_per_run.join(', ')} | ${f(x.cpu_us_per_request)} | ${x.errors} |`);
  }
L.push('', `Gateway CPU per request at ${p.lat_rate} req/s, sluice / nginx: non-streaming ${f(latency.nonstream.cpu_per_request_sluice_vs_nginx, 2)}×, streams ${f(latency.stream.cpu_per_request_sluice_vs_nginx, 2)}× (for direct the column is the fake upstream's own CPU).`);
L.push('', `### 3. Memory per idle open stream (${p.idle_streams} streams, upstream sends one chunk every ${p.idle_interval_ms / 1000} s)`, '');
L.push('| target | streams open | errors | RSS before KiB | RSS with streams KiB | RSS after close KiB | KiB per stream |', '|---|---|---|---|---|---|---|');
for (const t of ['nginx', 'sluice']) {
  const m = memory[t];
  if (m) L.push(`| ${t} | ${m.streams_open} / ${m.streams_requested} | ${m.errors} | ${fi(m.rss_before_kib)} | ${fi(m.rss_open_kib)} | ${fi(m.rss_after_close_kib)} | ${f(m.kib_per_stream, 2)} |`);
}
L.push('', `sluice / nginx memory per stream: **${f(memory.sluice_vs_nginx, 2)}×** (target: ≤ ${TARGETS.idle_stream_kib} KiB per stream; nginx reference ~17 KiB). nginx RSS is master + worker.`);
L.push('', `### 4. Many concurrent slow streams (${p.many_chunks} chunks, ${p.many_interval_ms} ms apart, all opened at once)`, '');
L.push(`Each stream must end whole (\`data: [DONE]\`). Through the fake upstream every stream holds two gateway descriptors (client and upstream socket); through sluice's built-in \`mock\` provider one. RLIMIT_NOFILE here: ${p.nofile}${p.proxied_streams < p.many_streams ? `, so the proxied runs carry ${p.proxied_streams - 10} streams, not ${p.many_streams} (raising the hard limit needs CAP_SYS_RESOURCE)` : ''}. TTFT counts from the request's send, so it includes the open burst; CPU util is the gateway's CPU-s over the run's wall time (1.00 = its one core saturated). nginx's error log is kept in \`bench/out/nginx-error.log\`. KiB per stream is the RSS rise over the run; "—" where the process reused memory its allocator kept from an earlier run (test 3 is the clean memory figure).`, '');
L.push('| via | streams | finished whole | errors | events/stream | TTFT p50 ms | TTFT p99 ms | CPU-s | CPU util | CPU ms/stream | RSS before KiB | RSS peak KiB | KiB per stream |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const [via, m] of Object.entries(many))
  L.push(`| ${via === 'sluice_mock' ? 'sluice → mock' : via === 'sluice' ? 'sluice → upstream' : 'nginx → upstream'} | ${fi(m.streams)} | ${fi(m.ok)} | ${m.errors} | ${f(m.events_per_stream, 1)} | ${f(m.ttft_p50_ms)} | ${f(m.ttft_p99_ms)} | ${f(m.cpu_s, 2)} | ${f(m.cpu_util, 2)} | ${f(m.cpu_ms_per_stream, 3)} | ${fi(m.rss_before_kib)} | ${fi(m.rss_peak_kib)} | ${f(m.kib_per_stream, 2)} |`);
L.push('', `### 5. Client disconnect → upstream connection closed (${p.cancels} hang-ups per row, one at a time)`, '');
L.push('The client closes its socket at its first SSE event; the fake upstream notes when its own connection to the gateway closes (CLOCK_MONOTONIC, both sides). *quiet*: nothing else running; *under …*: while the streams of test 4 run through that gateway. `direct` is client → upstream with no gateway: the kernel\'s and the upstream\'s own share. "unseen": the upstream connection was still open 1 s later.', '');
L.push('| condition | target | timed | unseen | p50 µs | p90 µs | p99 µs | max µs |', '|---|---|---|---|---|---|---|---|');
for (const [cond, byT] of Object.entries(cancel))
  for (const [t, c] of Object.entries(byT))
    L.push(`| ${cond.replace(/_/g, ' ').replace('under sluice mock', 'under sluice → mock')} | ${t} | ${c.timed} / ${c.cancels} | ${c.unseen} | ${f(c.p50)} | ${f(c.p90)} | ${f(c.p99)} | ${f(c.max)} |`);
L.push('', 'Machine-readable: `bench/out/results.json` (raw load-generator output: `bench/out/raw.jsonl`).');
L.push('<!-- END latest run -->');
const section = L.join('\n') + '\n';

let md = fs.existsSync(mdPath) ? fs.readFileSync(mdPath, 'utf8') : '';
const re = /<!-- BEGIN latest run[\s\S]*?<!-- END latest run -->\n?/;
if (re.test(md)) md = md.replace(re, section);
else md = (md || '# sluice benchmark results\n\n') + (md.endsWith('\n\n') || !md ? '' : '\n') + section;
fs.writeFileSync(mdPath, md);
process.stdout.write(section.replace(/<!--.*-->\n?/g, ''));
