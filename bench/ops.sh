#!/usr/bin/env bash
# bench/ops.sh (`make bench-ops`): what sluice's operational features cost, measured side by
# side in one run against the same fake upstream as bench/run.sh, sluice pinned `workers: 1`:
#   1. requests per gateway CPU-second, closed loop, non-streaming and 64-chunk streams:
#      (a) bare: observability.metrics/access_log off, no auth, no limits (the SQLite usage
#          store stays on: it cannot be turned off)   vs (b) metrics + access log (the default)
#   2. (a) vs (c) = (b) + an auth key + rate_limits per_key/per_ip that never refuse
#   3. (c) vs (d) = (c) + store.redis (a real redis-server on a free loopback port); the
#      redis-server's own CPU is measured and reported separately
#   4. fallback cost: a model routed [bad, good] where bad answers HTTP 500 at once, vs a model
#      routed straight to good, open loop at a modest fixed rate: added p50/p99 per request
#   5. SQLite usage rows at a fixed open-loop rate: rows after SIGTERM == requests answered,
#      rows written per second, sluice_store_dropped_total == 0
# Writes bench/out/ops_raw.jsonl, bench/out/ops.json and the "Operations benchmarks" section of
# bench/RESULTS.md (through bench/ops_report.mjs). Every loop is bounded in count and time;
# every process started here is stopped by PID on exit (never by name).
# Knobs (environment): see the defaults below; QUICK=1 is a short smoke run.
# PID lists and flag lists below are word-split on purpose:
# shellcheck disable=SC2046,SC2086
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=bench/out
SLUICE=${SLUICE:-build/release/sluice}
REDIS=${REDIS:-/usr/sbin/redis-server}
command -v "$REDIS" >/dev/null 2>&1 || REDIS=$(command -v redis-server || echo /usr/bin/redis-server)
CC=${CC:-cc}

TP_SECS=${TP_SECS:-3}          # closed loop: seconds per variant, workload and round
TP_ROUNDS=${TP_ROUNDS:-3}      # rounds, variant order rotated each round; medians reported
TP_CONNS=${TP_CONNS:-64}
STREAM_CHUNKS=${STREAM_CHUNKS:-64}
WARM_SECS=${WARM_SECS:-1}
FIX_RATE_NONSTREAM=${FIX_RATE_NONSTREAM:-5000} # second pass: open loop, same rate for every variant
FIX_RATE_STREAM=${FIX_RATE_STREAM:-2000}
FIX_SECS=${FIX_SECS:-2}
FIX_ROUNDS=${FIX_ROUNDS:-3}
FB_RATE=${FB_RATE:-500}        # fallback test: open-loop requests per second, per route (both at once)
FB_SECS=${FB_SECS:-3}
FB_ROUNDS=${FB_ROUNDS:-4}
FB_CONNS=${FB_CONNS:-16}
SQL_RATE=${SQL_RATE:-5000}     # usage-rows test: open-loop requests per second
SQL_SECS=${SQL_SECS:-8}
SQL_CONNS=${SQL_CONNS:-64}
QUIET_BUDGET_S=${QUIET_BUDGET_S:-20} # total time runs may wait for a quiet machine
if [ "${QUICK:-0}" = 1 ]; then
  TP_SECS=1 TP_ROUNDS=1 FIX_SECS=1 FIX_ROUNDS=1 FB_SECS=1 FB_ROUNDS=1 SQL_SECS=2 QUIET_BUDGET_S=2 WARM_SECS=0.5
fi
VARIANTS=(a b c d)

log() { printf 'bench-ops: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- build (as bench/run.sh does) ----
mkdir -p "$OUT"
BFLAGS="-O2 -Wall -Wextra -Werror -D_GNU_SOURCE"
fresh() { [ -x "$1" ] && [ "$1" -nt "$2" ] && [ "$1" -nt bench/bench.h ]; }
if ! fresh "$OUT/upstream" bench/upstream.c; then $CC $BFLAGS -o "$OUT/upstream" bench/upstream.c -lpthread; fi
if ! fresh "$OUT/load" bench/load.c; then $CC $BFLAGS -o "$OUT/load" bench/load.c; fi
# The binary is rebuilt by others at times: wait (bounded) for one that exists and runs.
for i in $(seq 30); do
  [ -x "$SLUICE" ] && "$SLUICE" --version >/dev/null 2>&1 && break
  [ "$i" -lt 30 ] || die "$SLUICE not built or not runnable (run: make $SLUICE)"
  log "waiting for $SLUICE to be (re)built"; sleep 2
done
[ -x "$REDIS" ] || die "redis-server not found (Debian: apt-get install redis-server)"
for c in node curl sqlite3 redis-cli; do command -v $c >/dev/null || die "$c is needed"; done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NCPU=$(nproc)
if [ "$NCPU" -ge 4 ]; then GW_CPU=1 UP_CPU=2 LOAD_CPU=3
elif [ "$NCPU" -ge 3 ]; then GW_CPU=1 UP_CPU=2 LOAD_CPU=0
elif [ "$NCPU" -ge 2 ]; then GW_CPU=1 UP_CPU=0 LOAD_CPU=0
else GW_CPU=0 UP_CPU=0 LOAD_CPU=0
fi
GW_PIN=() UP_PIN=() LOAD_PIN=()
if command -v taskset >/dev/null; then
  GW_PIN=(taskset -c "$GW_CPU") UP_PIN=(taskset -c "$UP_CPU") LOAD_PIN=(taskset -c "$LOAD_CPU")
fi
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/sluice-ops.XXXXXX)
RAW="$OUT/ops_raw.jsonl"
: >"$RAW"
PIDS=()
stop_pid() { # TERM, wait up to 15 s (sluice drains its store), then KILL; only our PIDs
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "pid $pid ignored SIGTERM for 15 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # port: until something answers HTTP on 127.0.0.1:port, at most 10 s
  local port=$1 i
  for i in $(seq 100); do
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)" != 000 ] && return 0
    sleep 0.1
  done
  return 1
}
cpu_ns() { # on-CPU nanoseconds of the given PIDs, all their threads (schedstat; else ticks)
  local t=0 p v
  for p in "$@"; do
    if v=$(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}') && [ -n "$v" ] && [ "$v" != 0 ]; then
      t=$((t + v))
    else
      v=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
      t=$((t + v * 1000000000 / CLK_TCK))
    fi
  done
  echo "$t"
}
sys_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }
is_exe() { case "$(readlink "/proc/$1/exe" 2>/dev/null)" in */"$2") return 0 ;; *) return 1 ;; esac; }
alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null || return 1; done; }
record() { printf '%s\n' "$1" >>"$RAW"; }
jget() { # json key: first numeric value of "key": in the JSON text on stdin
  grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2
}

# ---- the fake upstream ("good") ----
"${UP_PIN[@]}" "$OUT/upstream" >"$TMP/upstream.out" 2>"$TMP/upstream.err" &
UP_PID=$!
PIDS+=("$UP_PID")
for _ in $(seq 50); do grep -q listening "$TMP/upstream.out" 2>/dev/null && break; sleep 0.1; done
UP_PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$TMP/upstream.out")
[ -n "$UP_PORT" ] || die "upstream did not start: $(cat "$TMP/upstream.err")"
is_exe "$UP_PID" upstream || die "PID $UP_PID is not the upstream"

# ---- "bad": answers every chat request with HTTP 500 at once (bench/out/upstream has no
# option for that, so a few lines of node); GET /stats counts what it answered ----
BAD_PORT=$("$OUT/load" --free-port)
cat >"$TMP/bad.js" <<'EOF'
const http = require('http');
let n = 0;
const body = JSON.stringify({ error: { message: 'bench: immediate 500', type: 'server_error' } });
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ requests: n }));
      return;
    }
    n++;
    res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(Number(process.argv[2]), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
EOF
"${UP_PIN[@]}" node "$TMP/bad.js" "$BAD_PORT" >"$TMP/bad.out" 2>"$TMP/bad.err" &
BAD_PID=$!
PIDS+=("$BAD_PID")
for _ in $(seq 50); do grep -q listening "$TMP/bad.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$TMP/bad.out" || die "500 responder did not start: $(cat "$TMP/bad.err")"
bad_requests() { curl -s -m 2 "http://127.0.0.1:$BAD_PORT/stats" | grep -o '[0-9]*' | head -1; }

# ---- redis-server on a free loopback port, no persistence ----
REDIS_PORT=$("$OUT/load" --free-port)
mkdir -p "$TMP/redis"
"${UP_PIN[@]}" "$REDIS" --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --dir "$TMP/redis" --daemonize no --logfile "$TMP/redis/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 50); do [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || die "redis-server did not start: $(tail -5 "$TMP/redis/redis.log")"
is_exe "$REDIS_PID" redis-server || is_exe "$REDIS_PID" redis-check-rdb || die "PID $REDIS_PID is not redis-server"
redis_cmds() { redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; }

# ---- sluice variants: one process each, `workers: 1`, pinned like bench/run.sh ----
# All share the providers and models (including the unused fallback model) so the configs
# differ only in the switch under test. Each runs in its own directory (own sluice.db) with
# stderr (the access log) appended to a file that is measured and emptied after each run.
HI_RPM=100000000 HI_TPM=1000000000000
common_cfg() { # port
  cat <<EOF
listen: 127.0.0.1:$1
workers: 1
limits: { max_connections: 20000 }
timeouts: { first_byte: 60s, idle: 60s, keepalive: 15s }
providers:
  good: { type: openai, base_url: "http://127.0.0.1:$UP_PORT/v1" }
  bad:  { type: openai, base_url: "http://127.0.0.1:$BAD_PORT/v1", breaker: { failures: 0 } }
models:
  "fallback*": [ { provider: bad }, { provider: good } ]
  "*": [ { provider: good } ]
EOF
}
policy_cfg() { # the load generator always sends "Authorization: Bearer sk-bench"
  cat <<EOF
auth:
  keys: [ { name: bench, key: sk-bench } ]
rate_limits:
  per_key: { rpm: $HI_RPM, tpm: $HI_TPM }
  per_ip:  { rpm: $HI_RPM, tpm: $HI_TPM }
EOF
}
declare -A SL_PORT SL_PIDS SL_DIR
SLUICE_ABS=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE")
start_sluice() { # name: writes $TMP/<name>/sluice.yaml first
  local v=$1 dir=$TMP/$1
  (cd "$dir" && exec "${GW_PIN[@]}" "$SLUICE_ABS" --config "$dir/sluice.yaml" >/dev/null 2>>"$dir/stderr.log") &
  SL_PIDS[$v]=$!
  PIDS+=("${SL_PIDS[$v]}")
  if ! wait_http "${SL_PORT[$v]}"; then
    "$SLUICE_ABS" --check-config "$dir/sluice.yaml" >&2 || true
    tail -5 "$dir/stderr.log" >&2 || true
    die "sluice ($v) did not start on port ${SL_PORT[$v]}"
  fi
  is_exe "${SL_PIDS[$v]}" "$(basename "$SLUICE")" || die "PID ${SL_PIDS[$v]} is not sluice"
}
for v in "${VARIANTS[@]}" e; do
  SL_DIR[$v]=$TMP/$v
  mkdir -p "${SL_DIR[$v]}"
  SL_PORT[$v]=$("$OUT/load" --free-port)
  {
    common_cfg "${SL_PORT[$v]}"
    case $v in
      a) echo "observability: { metrics: false, access_log: false }" ;;
      b) ;;
      c) policy_cfg ;;
      d) policy_cfg; echo "store: { redis: \"redis://127.0.0.1:$REDIS_PORT\" }" ;;
      e) echo "store: { sqlite: \"$TMP/e/usage.db\" }" ;;
    esac
  } >"${SL_DIR[$v]}/sluice.yaml"
  "$SLUICE_ABS" --check-config "${SL_DIR[$v]}/sluice.yaml" >/dev/null 2>"$TMP/check.err" ||
    die "config $v refused: $(cat "$TMP/check.err")"
done
for v in "${VARIANTS[@]}"; do start_sluice "$v"; done
log "upstream :$UP_PORT, 500-responder :$BAD_PORT, redis :$REDIS_PORT pid $REDIS_PID (cpu $UP_CPU); sluice a/b/c/d :${SL_PORT[a]}/${SL_PORT[b]}/${SL_PORT[c]}/${SL_PORT[d]} (cpu $GW_CPU); load on cpu $LOAD_CPU"

# ---- sanity: each variant really is what it claims ----
harvest_log() { # variant: keep sluice's own log lines (not access-log lines) before emptying it
  local f=${SL_DIR[$1]}/stderr.log
  [ -f "$f" ] || return 0
  grep -v '^{"ts":[0-9]*,"request_id"' "$f" | head -n 50 | sed "s/^/$1: /" >>"$TMP/gateway_log.txt" || true
  : >"$f"
}
chat_url() { echo "http://127.0.0.1:${SL_PORT[$1]}/v1/chat/completions"; }
probe() { # variant -> {"status":..,"ratelimit_headers":..,"metrics_status":..}
  local v=$1 hdr st rl ms
  hdr=$(curl -s -m 5 -D - -o /dev/null -H 'Content-Type: application/json' -H 'Authorization: Bearer sk-bench' \
    -d '{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":8}' "$(chat_url "$v")" || true)
  st=$(head -1 <<<"$hdr" | awk '{print $2}')
  rl=$(grep -ci '^x-ratelimit-' <<<"$hdr" || true)
  ms=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sk-bench' "http://127.0.0.1:${SL_PORT[$v]}/metrics" || true)
  printf '{"status":%s,"ratelimit_headers":%s,"metrics_status":%s}' "${st:-0}" "${rl:-0}" "${ms:-0}"
}
noauth=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"model":"bench","messages":[{"role":"user","content":"hi"}]}' "$(chat_url c)" || true)
PROBES="{"
for v in "${VARIANTS[@]}"; do PROBES+="\"$v\":$(probe "$v"),"; done
PROBES+="\"c_without_key_status\":${noauth:-0}}"
log "probes: $PROBES"
[ "${noauth:-0}" = 401 ] || log "warning: variant c answered $noauth without a key (expected 401)"
redis_keys=$(redis-cli -p "$REDIS_PORT" dbsize 2>/dev/null || echo 0)
[ "${redis_keys:-0}" -gt 0 ] || log "warning: redis holds no keys after a request through variant d"

url_of() { chat_url "$1"; }
run_load() { # variant label args...: one JSON line (or a JSON error object)
  local v=$1 label=$2 out; shift 2
  out=$("${LOAD_PIN[@]}" "$OUT/load" --url "$(url_of "$v")" --label "$label" "$@" 2>>"$TMP/load.err") ||
    out="{\"label\":\"$label\",\"failed\":true}"
  alive ${SL_PIDS[$v]} || log "warning: sluice $v died during: load $*"
  echo "$out"
}
workload_args() {
  case $1 in
    nonstream) echo "--model bench" ;;
    stream) echo "--stream --model chunks-$STREAM_CHUNKS" ;;
  esac
}

quiet_waited=0 # tenths of a second
ALLPIDS() { echo "$UP_PID $BAD_PID $REDIS_PID ${SL_PIDS[*]}"; }
wait_quiet() { # up to 3 s: until a 0.3 s window shows < 10% of one CPU used by others
  local i b0 b1 o0 o1
  for i in 1 2 3 4 5 6 7 8 9 10; do
    [ "$quiet_waited" -lt $((QUIET_BUDGET_S * 10)) ] || return 0
    read -r b0 _ < <(sys_ticks); o0=$(cpu_ns $(ALLPIDS))
    sleep 0.3
    read -r b1 _ < <(sys_ticks); o1=$(cpu_ns $(ALLPIDS))
    [ $(((b1 - b0) * 1000000000 / CLK_TCK - (o1 - o0))) -le 30000000 ] && return 0
    quiet_waited=$((quiet_waited + 3))
  done
}
redis_cmdstats() { # "cmd=calls,..." from INFO commandstats (commands run inside Lua count too)
  redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\).*/\1=\2/p' | paste -sd, || true
}
read -r busy0 steal0 < <(sys_ticks)
wall0=$(date +%s.%N)

# ---- 1-3. requests per gateway CPU-second, variants a b c d ----
# Two passes: closed loop (each variant as fast as it goes, as in bench/run.sh), then open loop
# at one fixed rate for all variants, so every variant batches work the same way (a closed loop
# through a variant that waits on Redis keeps the gateway less busy, and a less busy event loop
# spends more CPU per request).
for mode in closed fixed; do
  for wl in nonstream stream; do
    if [ $mode = closed ]; then
      margs="-c $TP_CONNS -d $TP_SECS"
      for v in "${VARIANTS[@]}"; do run_load "$v" "warm-$v" -c "$TP_CONNS" -d "$WARM_SECS" $(workload_args $wl) >/dev/null; done
    else
      rate=$FIX_RATE_NONSTREAM
      [ $wl = stream ] && rate=$FIX_RATE_STREAM
      margs="-c $TP_CONNS --rate $rate -d $FIX_SECS"
    fi
    rounds=$TP_ROUNDS
    [ $mode = fixed ] && rounds=$FIX_ROUNDS
    for round in $(seq "$rounds"); do
      for i in 0 1 2 3; do
        v=${VARIANTS[$(((i + round - 1) % 4))]}
        wait_quiet
        harvest_log "$v"
        cs0=; [ "$v" = d ] && cs0=$(redis_cmdstats)
        rc0=$(redis_cmds)
        read -r b0 _ < <(sys_ticks)
        r0=$(cpu_ns "$REDIS_PID")
        u0=$(cpu_ns "$UP_PID")
        t0=$(cpu_ns ${SL_PIDS[$v]})
        res=$(run_load "$v" "$v" $margs $(workload_args $wl))
        t1=$(cpu_ns ${SL_PIDS[$v]})
        u1=$(cpu_ns "$UP_PID")
        r1=$(cpu_ns "$REDIS_PID")
        read -r b1 _ < <(sys_ticks)
        rc1=$(redis_cmds)
        cs1=; [ "$v" = d ] && cs1=$(redis_cmdstats)
        alog=$(stat -c %s "${SL_DIR[$v]}/stderr.log")
        ours=$((t1 - t0 + u1 - u0 + r1 - r0))
        record "{\"test\":\"cpu\",\"mode\":\"$mode\",\"round\":$round,\"workload\":\"$wl\",\"variant\":\"$v\",\"gw_cpu_ns\":$((t1 - t0)),\"upstream_cpu_ns\":$((u1 - u0)),\"redis_cpu_ns\":$((r1 - r0)),\"redis_commands\":$((rc1 - rc0 - 1)),\"sys_busy_ns\":$(((b1 - b0) * 1000000000 / CLK_TCK)),\"our_servers_ns\":$ours,\"access_log_bytes\":$alog,\"redis_cmdstats\":[\"$cs0\",\"$cs1\"],\"load\":$res}"
        ok=$(jget "$res" ok); cpu=$(((t1 - t0) / 1000000))
        log "cpu $mode r$round $wl $v: ok ${ok:-?} errors $(jget "$res" errors), gateway ${cpu} ms CPU, redis $(((r1 - r0) / 1000000)) ms, access log $alog B"
      done
    done
  done
done

# ---- 4. fallback cost: model "fallback*" = [bad (500), good] vs model "bench" = [good] ----
# Both routes run at the same time, each its own open-loop generator at FB_RATE, against the
# same sluice: whatever else the machine does then hits both alike, so the difference between
# their latency distributions is the fallback's cost, not the luck of the time slot.
FB_V=b # defaults: metrics + access log on, so the fallback is also counted there
fb0=$(bad_requests)
for round in $(seq "$FB_ROUNDS"); do
  for wl in nonstream stream; do
    wait_quiet
    read -r b0 _ < <(sys_ticks)
    bq0=$(bad_requests)
    t0=$(cpu_ns ${SL_PIDS[$FB_V]})
    fbp=()
    for route in direct fallback; do
      model=bench
      [ "$route" = fallback ] && model=fallback
      [ "$wl" = stream ] && model=$model-chunks-$STREAM_CHUNKS
      flags="--model $model"
      [ "$wl" = stream ] && flags="--stream $flags"
      "${LOAD_PIN[@]}" "$OUT/load" --url "$(url_of "$FB_V")" --label "$route" -c "$FB_CONNS" \
        --rate "$FB_RATE" -d "$FB_SECS" $flags >"$TMP/fb.$route.json" 2>>"$TMP/load.err" &
      fbp+=($!)
      PIDS+=($!)
    done
    for p in "${fbp[@]}"; do wait "$p" || true; done
    t1=$(cpu_ns ${SL_PIDS[$FB_V]})
    bq1=$(bad_requests)
    read -r b1 _ < <(sys_ticks)
    alive ${SL_PIDS[$FB_V]} || log "warning: sluice $FB_V died during the fallback test"
    for route in direct fallback; do
      res=$(cat "$TMP/fb.$route.json")
      [ -n "$res" ] || res="{\"label\":\"$route\",\"failed\":true}"
      bad=0
      [ "$route" = fallback ] && bad=$((bq1 - bq0))
      record "{\"test\":\"fallback\",\"round\":$round,\"workload\":\"$wl\",\"route\":\"$route\",\"pair_gw_cpu_ns\":$((t1 - t0)),\"bad_requests\":$bad,\"sys_busy_ns\":$(((b1 - b0) * 1000000000 / CLK_TCK)),\"load\":$res}"
      d=latency_us
      [ "$wl" = stream ] && d=ttfb_us
      log "fallback r$round $wl $route: ok $(jget "$res" ok) errors $(jget "$res" errors), p50 $(grep -o "\"$d\":{[^}]*}" <<<"$res" | grep -o '"p50":[0-9.]*' | cut -d: -f2) p99 $(grep -o "\"$d\":{[^}]*}" <<<"$res" | grep -o '"p99":[0-9.]*' | cut -d: -f2) µs, 500s answered by bad: $bad"
    done
  done
done
FB_METRICS=$(curl -s -m 5 "http://127.0.0.1:${SL_PORT[$FB_V]}/metrics" | grep -E '^sluice_fallbacks_total|^sluice_breaker_state' |
  awk '{printf "%s%s", (NR > 1 ? "\\n" : ""), $0}' | sed 's/"/\\"/g' || true)
record "{\"test\":\"fallback_metrics\",\"bad_requests_total\":$(($(bad_requests) - fb0)),\"metrics\":\"$FB_METRICS\"}"

# ---- 5. SQLite usage rows at a fixed rate ----
# A fresh instance (defaults + an explicit sqlite path), the only one loaded meanwhile.
start_sluice e
DB=$TMP/e/usage.db
rows() { sqlite3 -cmd '.timeout 2000' "$DB" 'select count(*) from usage;' 2>/dev/null || echo -1; }
metric_sum() { # metric name prefix: sum over its series in /metrics of instance e
  curl -s -m 5 "http://127.0.0.1:${SL_PORT[e]}/metrics" | awk -v m="$1" '{n = $1; sub(/[{].*/, "", n); if (n == m) s += $NF} END {printf "%.0f", s}'
}
rows0=$(rows)
wait_quiet
t0=$(cpu_ns ${SL_PIDS[e]})
"${LOAD_PIN[@]}" "$OUT/load" --url "$(url_of e)" --label sqlite -c "$SQL_CONNS" --rate "$SQL_RATE" \
  -d "$SQL_SECS" --model bench >"$TMP/sql.json" 2>>"$TMP/load.err" &
SQL_LOAD=$!
PIDS+=("$SQL_LOAD")
poll_t0=$(date +%s.%N)
SAMPLES=""
for _ in $(seq $((SQL_SECS + 20))); do # one sample a second while the load runs, bounded
  sleep 1
  s=$(awk -v a="$poll_t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  SAMPLES+="{\"t\":$s,\"answered\":$(metric_sum sluice_requests_total),\"rows\":$(rows)},"
  kill -0 "$SQL_LOAD" 2>/dev/null || break
done
wait "$SQL_LOAD" || true
t1=$(cpu_ns ${SL_PIDS[e]})
sqlres=$(cat "$TMP/sql.json")
[ -n "$sqlres" ] || sqlres='{"label":"sqlite","failed":true}'
answered_metric=$(metric_sum sluice_requests_total)
dropped=$(curl -s -m 5 "http://127.0.0.1:${SL_PORT[e]}/metrics" | awk '$1 == "sluice_store_dropped_total" {print $2}')
rows_before_term=$(rows)
term_t0=$(date +%s.%N)
stop_pid "${SL_PIDS[e]}"
term_s=$(awk -v a="$term_t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
exited=true
kill -0 "${SL_PIDS[e]}" 2>/dev/null && exited=false
rows_final=$(rows)
span=$(sqlite3 "$DB" 'select coalesce(max(ts) - min(ts), 0) from usage;' 2>/dev/null || echo 0)
statuses=$(sqlite3 "$DB" 'select status || ":" || count(*) from usage group by status;' 2>/dev/null | paste -sd, || true)
record "{\"test\":\"sqlite\",\"rate\":$SQL_RATE,\"secs\":$SQL_SECS,\"gw_cpu_ns\":$((t1 - t0)),\"rows_before\":$rows0,\"rows_before_term\":$rows_before_term,\"rows_final\":$rows_final,\"answered_metric\":${answered_metric:-0},\"store_dropped\":${dropped:--1},\"term_s\":$term_s,\"exited\":$exited,\"ts_span_s\":${span:-0},\"statuses\":\"$statuses\",\"samples\":[${SAMPLES%,}],\"load\":$sqlres}"
log "sqlite: load ok $(jget "$sqlres" ok) errors $(jget "$sqlres" errors) at $(jget "$sqlres" rps) req/s; rows $rows0 -> $rows_before_term (before SIGTERM) -> $rows_final (after, exit took ${term_s}s); dropped ${dropped:-?}"

read -r busy1 steal1 < <(sys_ticks)
wall1=$(date +%s.%N)
for v in "${VARIANTS[@]}" e; do harvest_log "$v"; done
# sluice's own log lines (warnings, errors; not the access log), distinct, with counts
GWLOG=$(sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z?//g; s/[0-9]+(\.[0-9]+)? ?ms/N ms/g' "$TMP/gateway_log.txt" 2>/dev/null |
  sort | uniq -c | sort -rn | head -n 20 | sed 's/\\/\\\\/g; s/"/\\"/g; s/\t/ /g' | awk '{printf "%s\"%s\"", (NR > 1 ? "," : ""), $0}')
record "{\"test\":\"gateway_log\",\"lines\":$(wc -l <"$TMP/gateway_log.txt" 2>/dev/null || echo 0),\"distinct\":[${GWLOG}]}"
for v in "${VARIANTS[@]}"; do alive ${SL_PIDS[$v]} || log "warning: sluice $v is not running at the end"; done

# ---- report ----
SL_VERSION=$("$SLUICE_ABS" --version 2>/dev/null | head -1 || true)
META=$(printf '{"date":"%s","nproc":%s,"cpu":"%s","kernel":"%s","redis":"%s","node":"%s","sluice_commit":"%s","sluice_version":"%s","sluice_mtime":"%s","pinning":{"gateway":%s,"upstream":%s,"load":%s,"redis":%s,"bad":%s},"wall_s":%s,"machine_busy_s":%s,"steal_s":%s,"waited_for_quiet_s":%s,"probes":%s,"redis_keys_after_probe":%s,"params":{"tp_secs":%s,"tp_rounds":%s,"fix_rate_nonstream":%s,"fix_rate_stream":%s,"fix_secs":%s,"fix_rounds":%s,"tp_conns":%s,"stream_chunks":%s,"fb_rate":%s,"fb_secs":%s,"fb_rounds":%s,"fb_conns":%s,"sql_rate":%s,"sql_secs":%s,"sql_conns":%s}}' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$NCPU" "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/"//g')" "$(uname -r)" \
  "$("$REDIS" --version | grep -o 'v=[0-9.]*' | cut -d= -f2)" "$(node --version)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet -- src 2>/dev/null || echo +dirty)" \
  "${SL_VERSION//\"/\\\"}" "$(date -u -r "$SLUICE_ABS" +%Y-%m-%dT%H:%M:%SZ)" \
  "$GW_CPU" "$UP_CPU" "$LOAD_CPU" "$UP_CPU" "$UP_CPU" \
  "$(awk -v a="$wall0" -v b="$wall1" 'BEGIN {printf "%.1f", b - a}')" \
  "$(awk -v t=$((busy1 - busy0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t / hz}')" \
  "$(awk -v t=$((steal1 - steal0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t / hz}')" \
  "$(awk -v q="$quiet_waited" 'BEGIN {printf "%.1f", q / 10}')" "$PROBES" "${redis_keys:-0}" \
  "$TP_SECS" "$TP_ROUNDS" "$FIX_RATE_NONSTREAM" "$FIX_RATE_STREAM" "$FIX_SECS" "$FIX_ROUNDS" "$TP_CONNS" "$STREAM_CHUNKS" "$FB_RATE" "$FB_SECS" "$FB_ROUNDS" "$FB_CONNS" \
  "$SQL_RATE" "$SQL_SECS" "$SQL_CONNS")
node bench/ops_report.mjs "$RAW" "$META" "$OUT/ops.json" bench/RESULTS.md
