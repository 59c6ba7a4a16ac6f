#!/usr/bin/env bash
# bench/run.sh (`make bench`): measures sluice against nginx proxy_pass and against talking to
# the upstream directly, side by side in one run, on the same fake upstream (DESIGN.md §12):
#   1. requests per gateway CPU-second, closed loop: non-streaming and 64-chunk streams
#   2. added latency at a fixed rate (open loop): non-streaming p50/p90/p99 and stream TTFT
#   3. gateway memory per idle open stream (N slow streams held open)
#   4. many concurrent slow streams (10 000 by default): errors, gateway CPU and peak memory;
#      through the fake upstream for both gateways, and through sluice's built-in mock
#   5. client disconnect -> upstream connection closed: the distribution, on a quiet gateway
#      and while it carries the streams of 4
# Writes bench/out/results.json and the "Latest run" section of bench/RESULTS.md.
# Every wait is bounded; every process started here is stopped by PID on exit.
# Knobs (environment): see the defaults below; QUICK=1 shortens everything for a smoke test.
# PID lists and flag lists below are word-split on purpose:
# shellcheck disable=SC2046,SC2086
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=bench/out
SLUICE=${SLUICE:-build/release/sluice}
NGINX=${NGINX:-/usr/sbin/nginx}
CC=${CC:-cc}

TP_SECS=${TP_SECS:-4}         # closed-loop measuring time per target, workload and round
TP_ROUNDS=${TP_ROUNDS:-2}
TP_CONNS=${TP_CONNS:-64}      # closed-loop connections
STREAM_CHUNKS=${STREAM_CHUNKS:-64}
LAT_RATE=${LAT_RATE:-2000}    # open-loop requests per second
LAT_SECS=${LAT_SECS:-3}       # per target, workload and round
LAT_ROUNDS=${LAT_ROUNDS:-6}   # rounds, target order rotated each round; medians reported
QUIET_BUDGET_S=${QUIET_BUDGET_S:-60} # total time runs may wait for a quiet machine
CLEAN_LAG_US=${CLEAN_LAG_US:-250}    # a run whose generator sent later than this at p99 is noisy
LAT_CONNS=${LAT_CONNS:-32}
IDLE_STREAMS=${IDLE_STREAMS:-2000}
IDLE_INTERVAL_MS=${IDLE_INTERVAL_MS:-10000}
HOLD_SECS=${HOLD_SECS:-3}
WARM_SECS=${WARM_SECS:-1}
MANY_STREAMS=${MANY_STREAMS:-10000} # concurrent slow streams in test 4
MANY_CHUNKS=${MANY_CHUNKS:-10}      # ... each this many chunks
MANY_INTERVAL_MS=${MANY_INTERVAL_MS:-1000} # ... this far apart: ~10 000 chunks/s in all, a load
                                    # a gateway carries with headroom (test 5 runs beside it)
CANCELS=${CANCELS:-300}             # hang-ups timed in test 5, per target and condition
if [ "${QUICK:-0}" = 1 ]; then
  TP_SECS=2 TP_ROUNDS=1 LAT_SECS=2 LAT_ROUNDS=1 IDLE_STREAMS=500 HOLD_SECS=1 QUIET_BUDGET_S=5
  MANY_STREAMS=2000 CANCELS=100
fi

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- build ----
mkdir -p "$OUT"
BFLAGS="-O2 -Wall -Wextra -Werror -D_GNU_SOURCE"
$CC $BFLAGS -o "$OUT/upstream" bench/upstream.c -lpthread
$CC $BFLAGS -o "$OUT/load" bench/load.c
[ -x "$SLUICE" ] || die "$SLUICE not built (run: make $SLUICE)"
[ -x "$NGINX" ] || die "nginx not found at $NGINX (Debian: apt-get install nginx-light)"
command -v node >/dev/null || die "node is needed for the report (make deps installs it)"
command -v curl >/dev/null || die "curl is needed for readiness probes"

# ---- resources ----
# A proxied stream holds two descriptors in the gateway (client and upstream socket), so
# MANY_STREAMS proxied streams need 2 x MANY_STREAMS + a margin in one process. Raising the hard
# limit needs CAP_SYS_RESOURCE; where it cannot be raised, test 4 proxies as many streams as
# the limit allows and says so (the mock-backed run needs one descriptor per stream).
most=$((IDLE_STREAMS > MANY_STREAMS ? IDLE_STREAMS : MANY_STREAMS))
need_fds=$((most * 2 + 2000))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need_fds" ]; then
  ulimit -Hn "$need_fds" 2>/dev/null || true # raises it where it can (root with the capability)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
  log "warning: ulimit -n is $(ulimit -n), want $need_fds"
  need_fds=$(ulimit -n)
fi
PROXIED_STREAMS=$MANY_STREAMS
if [ $((PROXIED_STREAMS * 2 + 600)) -gt "$need_fds" ]; then
  PROXIED_STREAMS=$(((need_fds - 600) / 2))
  log "test 4: $PROXIED_STREAMS proxied streams, not $MANY_STREAMS: RLIMIT_NOFILE is $need_fds"
fi
MOCK_STREAMS=$MANY_STREAMS
[ $((MOCK_STREAMS + 600)) -le "$need_fds" ] || MOCK_STREAMS=$((need_fds - 600))
NCPU=$(nproc)
# The gateway gets a CPU of its own; the upstream and the load generator share what is left.
if [ "$NCPU" -ge 4 ]; then GW_CPU=1 UP_CPU=2 LOAD_CPU=3
elif [ "$NCPU" -ge 3 ]; then GW_CPU=1 UP_CPU=2 LOAD_CPU=0
elif [ "$NCPU" -ge 2 ]; then GW_CPU=1 UP_CPU=0 LOAD_CPU=0
else GW_CPU=0 UP_CPU=0 LOAD_CPU=0
fi
# Background servers must be started as plain commands (not shell functions), so that $! is the
# server's own PID: taskset execs the program in place.
GW_PIN=() UP_PIN=() LOAD_PIN=()
if command -v taskset >/dev/null; then
  GW_PIN=(taskset -c "$GW_CPU") UP_PIN=(taskset -c "$UP_CPU") LOAD_PIN=(taskset -c "$LOAD_CPU")
fi
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/sluice-bench.XXXXXX)
# As deployed: both gateways write their access log to a file and sluice's SQLite usage store
# lives on disk. bench/out is in the tree, so on disk even where /tmp is a tmpfs.
DISK="$OUT/disk"
rm -rf "$DISK"
mkdir -p "$DISK"
DISK=$(cd "$DISK" && pwd)
RAW="$OUT/raw.jsonl"
: >"$RAW"
PIDS=()
stop_pid() { # TERM, wait up to 5 s, then KILL; only PIDs this script started
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "pid $pid ignored SIGTERM for 5 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$TMP" "$DISK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # port: until something answers HTTP on 127.0.0.1:port, at most 10 s
  local port=$1 i
  for i in $(seq 100); do
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/health" || true)" != 000 ] && return 0
    sleep 0.1
  done
  return 1
}
cpu_ticks() { # utime+stime of the given PIDs (all their threads), in clock ticks
  local t=0 p v
  for p in "$@"; do v=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'); t=$((t + v)); done
  echo "$t"
}
rss_kib() { # summed VmRSS of the given PIDs
  local t=0 p v
  for p in "$@"; do v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"); t=$((t + v)); done
  echo "$t"
}
sys_ticks() { # "busy steal" jiffies of the whole machine: user+nice+system, and steal
  # irq/softirq time is left out: loopback traffic's softirq work is charged there, not to the
  # processes that caused it, so counting it would report this benchmark as interference
  awk '/^cpu / {print $2 + $3 + $4, $9}' /proc/stat
}
children_ticks() { # CPU of every finished child of this shell (load runs, probes), in ticks
  times | awk -v hz="$CLK_TCK" 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%d\n", t * hz }'
}
is_exe() { # pid name: the PID really is that program (not a wrapper shell)
  case "$(readlink "/proc/$1/exe" 2>/dev/null)" in */"$2") return 0 ;; *) return 1 ;; esac
}
alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null || return 1; done; }

# ---- the fake upstream ----
# Streams tagged "cid-K" that lose their client are reported in this FIFO (test 5).
CLOSE_LOG="$TMP/close.fifo"
mkfifo "$CLOSE_LOG"
"${UP_PIN[@]}" "$OUT/upstream" --close-log "$CLOSE_LOG" >"$TMP/upstream.out" 2>"$TMP/upstream.err" &
UP_PID=$!
PIDS+=("$UP_PID")
for _ in $(seq 50); do grep -q listening "$TMP/upstream.out" 2>/dev/null && break; sleep 0.1; done
UP_PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$TMP/upstream.out")
[ -n "$UP_PORT" ] || die "upstream did not start: $(cat "$TMP/upstream.err")"

# ---- nginx: 1 worker, proxy_pass, no buffering, upstream keepalive ----
NGX_DIR="$TMP/nginx"
mkdir -p "$NGX_DIR/logs" "$NGX_DIR/tmp"
NGX_PORT=$("$OUT/load" --free-port)
cat >"$NGX_DIR/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $need_fds;
error_log $NGX_DIR/logs/error.log warn;
pid $NGX_DIR/nginx.pid;
events { worker_connections $need_fds; use epoll; }
http {
    access_log $DISK/nginx-access.log;
    client_body_temp_path $NGX_DIR/tmp/body;
    proxy_temp_path $NGX_DIR/tmp/proxy;
    fastcgi_temp_path $NGX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGX_DIR/tmp/uwsgi;
    scgi_temp_path $NGX_DIR/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    tcp_nodelay on;
    upstream up {
        server 127.0.0.1:$UP_PORT;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGX_PORT backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;
        }
    }
}
EOF
"${GW_PIN[@]}" "$NGINX" -p "$NGX_DIR/" -c "$NGX_DIR/nginx.conf" -e "$NGX_DIR/logs/error.log" \
  >/dev/null 2>"$TMP/nginx.err" &
NGX_PID=$!
PIDS+=("$NGX_PID")
wait_http "$NGX_PORT" || die "nginx did not start: $(cat "$TMP/nginx.err" "$NGX_DIR/logs/error.log" 2>/dev/null)"
NGX_WORKER=$(awk '{print $1}' "/proc/$NGX_PID/task/$NGX_PID/children" 2>/dev/null)
[ -n "$NGX_WORKER" ] || die "cannot find the nginx worker process"
if ! is_exe "$NGX_PID" nginx || ! is_exe "$NGX_WORKER" nginx; then
  die "nginx PIDs $NGX_PID/$NGX_WORKER are not nginx"
fi

# ---- sluice: 1 worker, access log (stderr) to a file, usage store on disk ----
SL_PORT=$("$OUT/load" --free-port)
cat >"$TMP/sluice.yaml" <<EOF
listen: 127.0.0.1:$SL_PORT
workers: 1
limits: { max_connections: $need_fds }
timeouts: { first_byte: 60s, idle: 60s, keepalive: 15s }
providers:
  up: { type: openai, base_url: "http://127.0.0.1:$UP_PORT/v1" }
  # test 4 without an upstream socket per stream; paced like the proxied run
  mock: { type: mock, ttft: 0ms, tokens_per_s: $((1000 / MANY_INTERVAL_MS)), tokens: $((MANY_CHUNKS - 2)) }
models:
  "mock-*": [ { provider: mock } ]
  "*": [ { provider: up } ]
EOF
# Run from $DISK: files sluice writes to its working directory (./sluice.db, the default
# SQLite usage store) are on disk and removed with it instead of landing in the tree.
SLUICE_ABS=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE")
(cd "$DISK" && exec "${GW_PIN[@]}" "$SLUICE_ABS" --config "$TMP/sluice.yaml" >/dev/null 2>"$DISK/sluice.log") &
SL_PID=$!
PIDS+=("$SL_PID")
if ! wait_http "$SL_PORT"; then
  "$SLUICE" --check-config "$TMP/sluice.yaml" >&2 || true
  die "sluice did not start on port $SL_PORT"
fi
is_exe "$SL_PID" "$(basename "$SLUICE")" || die "PID $SL_PID is not sluice"
is_exe "$UP_PID" upstream || die "PID $UP_PID is not the upstream"

declare -A URL=(
  [direct]="http://127.0.0.1:$UP_PORT/v1/chat/completions"
  [nginx]="http://127.0.0.1:$NGX_PORT/v1/chat/completions"
  [sluice]="http://127.0.0.1:$SL_PORT/v1/chat/completions"
)
declare -A GWPIDS=([direct]="$UP_PID" [nginx]="$NGX_PID $NGX_WORKER" [sluice]="$SL_PID")
log "upstream :$UP_PORT (cpu $UP_CPU), nginx :$NGX_PORT pid $NGX_PID/$NGX_WORKER, sluice :$SL_PORT pid $SL_PID (cpu $GW_CPU), load on cpu $LOAD_CPU, ulimit -n $(ulimit -n)"

# Runs the load tool against a target; prints its one JSON line (or a JSON error object).
load() {
  local target=$1; shift
  local out
  out=$("${LOAD_PIN[@]}" "$OUT/load" --url "${URL[$target]}" --label "$target" "$@" 2>>"$TMP/load.err") ||
    out="{\"label\":\"$target\",\"failed\":true}"
  alive ${GWPIDS[$target]} || log "warning: $target process died during: load $*"
  echo "$out"
}
up_stats() { # "connections requests" accepted/served by the upstream so far
  curl -s -m 2 "http://127.0.0.1:$UP_PORT/stats" | sed 's/[^0-9]/ /g' | awk '{print $1, $2}'
}
record() { printf '%s\n' "$1" >>"$RAW"; }
workload_args() { # name -> load flags
  case $1 in
    nonstream) echo "--model bench" ;;
    stream) echo "--stream --model chunks-$STREAM_CHUNKS" ;;
  esac
}

# Interference check: CPU used on this machine by anything other than this benchmark.
read -r busy0 steal0 < <(sys_ticks)
ours0=$(($(cpu_ticks "$UP_PID" "$NGX_PID" "$NGX_WORKER" "$SL_PID") + $(children_ticks)))
wall0=$(date +%s.%N)

# Other processes on a small machine skew every number here (on 2 vCPUs that may be SMT
# siblings, even the gateway's CPU per request), so each measured run first waits, bounded
# by QUIET_BUDGET_S in total, for a quiet machine.
quiet_waited=0 # tenths of a second spent waiting, against QUIET_BUDGET_S
wait_quiet() { # up to 3 s: until a 0.3 s window shows < 10% of one CPU used by others
  local i b0 b1 o0 o1
  for i in 1 2 3 4 5 6 7 8 9 10; do
    [ "$quiet_waited" -lt $((QUIET_BUDGET_S * 10)) ] || return 0
    read -r b0 _ < <(sys_ticks); o0=$(cpu_ticks "$UP_PID" "$NGX_PID" "$NGX_WORKER" "$SL_PID")
    sleep 0.3
    read -r b1 _ < <(sys_ticks); o1=$(cpu_ticks "$UP_PID" "$NGX_PID" "$NGX_WORKER" "$SL_PID")
    [ $(((b1 - b0) - (o1 - o0))) -le $((CLK_TCK * 3 / 100)) ] && return 0
    quiet_waited=$((quiet_waited + 3))
    [ "$i" -lt 10 ] || log "machine busy with other work; measuring anyway"
  done
}

# ---- 1. requests per gateway CPU-second (closed loop) ----
# TP_ROUNDS rounds, target order rotated, so drifting interference hits every target alike.
order=(direct nginx sluice)
for wl in nonstream stream; do
  for target in direct nginx sluice; do
    load "$target" -c "$TP_CONNS" -d "$WARM_SECS" $(workload_args $wl) >/dev/null
  done
  for round in $(seq "$TP_ROUNDS"); do
    for i in 0 1 2; do
      target=${order[$(((i + round - 1) % 3))]}
      wait_quiet
      read -r uc0 ur0 < <(up_stats)
      u0=$(cpu_ticks "$UP_PID")
      t0=$(cpu_ticks ${GWPIDS[$target]})
      res=$(load "$target" -c "$TP_CONNS" -d "$TP_SECS" $(workload_args $wl))
      t1=$(cpu_ticks ${GWPIDS[$target]})
      u1=$(cpu_ticks "$UP_PID")
      read -r uc1 ur1 < <(up_stats)
      # the /stats probe itself is one connection and one request
      up="{\"connections\":$((uc1 - uc0 - 1)),\"requests\":$((ur1 - ur0 - 1))}"
      record "{\"test\":\"throughput\",\"round\":$round,\"workload\":\"$wl\",\"target\":\"$target\",\"cpu_ticks\":$((t1 - t0)),\"upstream_cpu_ticks\":$((u1 - u0)),\"clk_tck\":$CLK_TCK,\"upstream\":$up,\"load\":$res}"
      log "throughput r$round $wl $target: $(echo "$res" | grep -o '"ok":[0-9]*,"errors":[0-9]*'), cpu $((t1 - t0)) ticks, upstream $up"
    done
  done
done

# ---- 2. added latency at a fixed rate (open loop) ----
# Sub-millisecond tails drown in other processes' CPU use: each run records what else ran
# during it, and the report prefers clean runs.
order=(direct nginx sluice)
for round in $(seq "$LAT_ROUNDS"); do
  for wl in nonstream stream; do
    for i in 0 1 2; do
      target=${order[$(((i + round - 1) % 3))]}
      wait_quiet
      read -r b0 _ < <(sys_ticks)
      u0=$(cpu_ticks "$UP_PID")
      t0=$(cpu_ticks ${GWPIDS[$target]})
      res=$(load "$target" -c "$LAT_CONNS" --rate "$LAT_RATE" -d "$LAT_SECS" $(workload_args $wl))
      t1=$(cpu_ticks ${GWPIDS[$target]})
      u1=$(cpu_ticks "$UP_PID")
      read -r b1 _ < <(sys_ticks)
      record "{\"test\":\"latency\",\"round\":$round,\"workload\":\"$wl\",\"target\":\"$target\",\"cpu_ticks\":$((t1 - t0)),\"upstream_cpu_ticks\":$((u1 - u0)),\"sys_busy_ticks\":$((b1 - b0)),\"clk_tck\":$CLK_TCK,\"load\":$res}"
      log "latency r$round $wl $target: $(echo "$res" | grep -o '"latency_us":{[^}]*}' | grep -o '"p99":[0-9.]*'), send lag $(echo "$res" | grep -o '"send_lag_us":{[^}]*}' | grep -o '"p99":[0-9.]*')"
    done
  done
done

# ---- 3. memory per idle open stream ----
for target in nginx sluice; do
  pids=${GWPIDS[$target]}
  rss0=$(rss_kib $pids)
  ready="$TMP/ready.$target"
  rm -f "$ready"
  "${LOAD_PIN[@]}" "$OUT/load" --url "${URL[$target]}" --label "$target" --hold "$HOLD_SECS" \
    -c "$IDLE_STREAMS" --model "slow-$IDLE_INTERVAL_MS" --open-timeout 40 \
    --ready-file "$ready" >"$TMP/hold.$target" 2>>"$TMP/load.err" &
  hold_pid=$!
  PIDS+=("$hold_pid")
  for _ in $(seq 500); do [ -s "$ready" ] && break; kill -0 "$hold_pid" 2>/dev/null || break; sleep 0.1; done
  sleep 1 # let the last streams' buffers settle
  rss1=$(rss_kib $pids)
  for _ in $(seq 600); do kill -0 "$hold_pid" 2>/dev/null || break; sleep 0.1; done
  wait "$hold_pid" || true
  sleep 0.5
  rss2=$(rss_kib $pids)
  res=$(cat "$TMP/hold.$target")
  [ -n "$res" ] || res="{\"label\":\"$target\",\"failed\":true}"
  record "{\"test\":\"idle_memory\",\"target\":\"$target\",\"streams\":$IDLE_STREAMS,\"rss_before_kib\":$rss0,\"rss_open_kib\":$rss1,\"rss_after_kib\":$rss2,\"load\":$res}"
  alive $pids || log "warning: $target died during the idle-stream test"
  log "idle $target: rss $rss0 -> $rss1 -> $rss2 KiB, $(echo "$res" | grep -o '"streams_open":[0-9]*')"
done

# ---- 4. many concurrent slow streams, and 5. disconnect -> upstream close ----
# Every stream must finish whole ([DONE]) with no error. While they run, CANCELS hang-ups are
# timed one at a time (client close -> the fake upstream sees its connection close), which is
# test 5 under load; the same probe on the idle gateway, and straight to the upstream (the
# kernel's and the upstream's own share), gives the quiet figures.
cancel_probe() { # target condition: one line into $RAW
  local target=$1 cond=$2 res
  res=$("${LOAD_PIN[@]}" "$OUT/load" --url "${URL[$target]}" --label "$target" --cancel "$CANCELS" \
    --close-log "$CLOSE_LOG" --model slow-60000 -d 60 2>>"$TMP/load.err") ||
    res="{\"label\":\"$target\",\"failed\":true}"
  record "{\"test\":\"cancel\",\"target\":\"$target\",\"condition\":\"$cond\",\"load\":$res}"
  log "cancel $cond $target: $(echo "$res" | grep -o '"cancel_unseen":[0-9]*'), $(echo "$res" | grep -o '"cancel_us":{[^}]*}' | grep -o '"p99":[0-9.]*')"
}
for target in direct nginx sluice; do
  wait_quiet
  cancel_probe "$target" quiet
done
many_run() { # target label streams model
  local target=$1 label=$2 n=$3 model=$4 pids peak=0 r t0 t1 rss0 many_pid w0
  pids=${GWPIDS[$target]}
  wait_quiet
  rss0=$(rss_kib $pids)
  t0=$(cpu_ticks $pids)
  w0=$(date +%s.%N)
  "${LOAD_PIN[@]}" "$OUT/load" --url "${URL[$target]}" --label "$label" -c "$n" -n "$n" --stream \
    --model "$model" --timeout 60 -d 60 >"$TMP/many.$label" 2>>"$TMP/load.err" &
  many_pid=$!
  PIDS+=("$many_pid")
  # the probe starts once the burst of opens is over and every stream is flowing
  for _ in $(seq 25); do r=$(rss_kib $pids); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.1; done
  cancel_probe "$target" "under_${label}"
  while kill -0 "$many_pid" 2>/dev/null; do r=$(rss_kib $pids); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2; done
  wait "$many_pid" || true
  t1=$(cpu_ticks $pids)
  res=$(cat "$TMP/many.$label")
  [ -n "$res" ] || res="{\"label\":\"$label\",\"failed\":true}"
  record "{\"test\":\"many_streams\",\"target\":\"$target\",\"via\":\"$label\",\"streams\":$n,\"wall_s\":$(awk -v a="$w0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'),\"chunks\":$MANY_CHUNKS,\"interval_ms\":$MANY_INTERVAL_MS,\"rss_before_kib\":$rss0,\"rss_peak_kib\":$peak,\"cpu_ticks\":$((t1 - t0)),\"clk_tck\":$CLK_TCK,\"load\":$res}"
  alive $pids || log "warning: $target died during the many-streams test"
  log "many $label: $n streams, $(echo "$res" | grep -o '"ok":[0-9]*,"errors":[0-9]*'), rss $rss0 -> peak $peak KiB, cpu $((t1 - t0)) ticks"
}
# the probe's own stream needs descriptors too: leave it room under the limit
many_run nginx nginx $((PROXIED_STREAMS - 10)) "chunks-$MANY_CHUNKS-slow-$MANY_INTERVAL_MS"
many_run sluice sluice $((PROXIED_STREAMS - 10)) "chunks-$MANY_CHUNKS-slow-$MANY_INTERVAL_MS"
many_run sluice sluice_mock "$MOCK_STREAMS" mock-many

read -r busy1 steal1 < <(sys_ticks)
ours1=$(($(cpu_ticks "$UP_PID" "$NGX_PID" "$NGX_WORKER" "$SL_PID") + $(children_ticks)))
wall1=$(date +%s.%N)
foreign=$(((busy1 - busy0) - (ours1 - ours0)))
[ "$foreign" -ge 0 ] || foreign=0
INTERFERENCE=$(awk -v f="$foreign" -v s="$((steal1 - steal0))" -v hz="$CLK_TCK" -v w0="$wall0" -v w1="$wall1" \
  -v q="$quiet_waited" 'BEGIN { printf "{\"other_cpu_s\":%.2f,\"steal_cpu_s\":%.2f,\"wall_s\":%.1f,\"waited_for_quiet_s\":%.1f}", f / hz, s / hz, w1 - w0, q / 10 }')
log "interference: $INTERFERENCE"

# ---- report ----
cp "$NGX_DIR/logs/error.log" "$OUT/nginx-error.log" 2>/dev/null || true # explains nginx's errors
alive "$SL_PID" || log "warning: sluice is not running at the end of the benchmark"
META=$(printf '{"interference":%s,"date":"%s","nproc":%s,"cpu":"%s","kernel":"%s","nginx":"%s","sluice_commit":"%s","pinning":{"gateway":%s,"upstream":%s,"load":%s},"params":{"tp_rounds":%s,"tp_secs":%s,"tp_conns":%s,"stream_chunks":%s,"lat_rate":%s,"lat_secs":%s,"lat_rounds":%s,"clean_lag_us":%s,"lat_conns":%s,"idle_streams":%s,"idle_interval_ms":%s,"many_streams":%s,"proxied_streams":%s,"mock_streams":%s,"many_chunks":%s,"many_interval_ms":%s,"cancels":%s,"nofile":%s}}' \
  "$INTERFERENCE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$NCPU" \
  "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/"//g')" "$(uname -r)" \
  "$("$NGINX" -v 2>&1 | sed 's/.*\///')" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet -- src 2>/dev/null || echo +dirty)" \
  "$GW_CPU" "$UP_CPU" "$LOAD_CPU" "$TP_ROUNDS" "$TP_SECS" "$TP_CONNS" "$STREAM_CHUNKS" "$LAT_RATE" "$LAT_SECS" \
  "$LAT_ROUNDS" "$CLEAN_LAG_US" "$LAT_CONNS" "$IDLE_STREAMS" "$IDLE_INTERVAL_MS" \
  "$MANY_STREAMS" "$PROXIED_STREAMS" "$MOCK_STREAMS" "$MANY_CHUNKS" "$MANY_INTERVAL_MS" "$CANCELS" "$(ulimit -n)")
node bench/report.mjs "$RAW" "$META" "$OUT/results.json" bench/RESULTS.md
