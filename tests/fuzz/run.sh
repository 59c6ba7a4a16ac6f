#!/usr/bin/env bash
# Runs the libFuzzer targets built in BUILD_DIR (make fuzz-build), one at a time, and ends with
# one summary line: "N passed, N failed" (a target passes when it ran clean: no crash, leak,
# undefined behaviour, failed invariant or hang).
#
#   tests/fuzz/run.sh --smoke BUILD_DIR [NAME...]     each target (all without names) over its seed corpus, then
#       FUZZ_RUNS new inputs (default 20000) or FUZZ_SMOKE_SECONDS (default 8), whichever comes
#       first, from a fixed seed (FUZZ_SEED, default 1); nothing is written to the source tree
#   tests/fuzz/run.sh --seconds N BUILD_DIR [NAME...] each target for N seconds, growing
#       BUILD_DIR/corpus/NAME (seeded from tests/fuzz/corpus/NAME)
#
# A failing input is saved as BUILD_DIR/artifacts/NAME-crash-... (or leak-, timeout-, oom-);
# rerun it with BUILD_DIR/fuzz_NAME FILE.
set -uo pipefail
cd "$(dirname "$0")/../.."

mode=${1:-}; shift || true
case "$mode" in
  --smoke) seconds=${FUZZ_SMOKE_SECONDS:-8}; runs=${FUZZ_RUNS:-20000}; seed=${FUZZ_SEED:-1} ;;
  --seconds) seconds=$1; shift; runs=-1; seed=0 ;;
  *) echo "usage: $0 --smoke|--seconds N BUILD_DIR [NAME...]" >&2; exit 2 ;;
esac
dir=$1; shift
# No names: every target there is a source for.
[ $# -gt 0 ] || set -- $(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')
art="$dir/artifacts"
mkdir -p "$art"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0; failed=0; failures=()
for name in "$@"; do
  bin="$dir/fuzz_$name"
  seeds="tests/fuzz/corpus/$name"
  if [ "$mode" = --smoke ]; then
    work="$tmp/$name"          # new inputs of this run: thrown away
  else
    work="$dir/corpus/$name"   # kept: the next `make fuzz` starts where this one ended
  fi
  mkdir -p "$work" "$seeds"
  log="$tmp/$name.log"
  t0=$(date +%s.%N)
  "$bin" -runs="$runs" -max_total_time="$seconds" -seed="$seed" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/$name-" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  units=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    awk -v n="$name" -v u="${units:-0}" -v s="$secs" \
      'BEGIN { printf "fuzz/%s: ok (%d inputs in %.1f s, %.0f/s)\n", n, u, s, u / (s + 0.001) }'
  else
    failed=$((failed + 1)); failures+=("$name")
    grep -aE 'ERROR|SUMMARY|fuzz invariant|runtime error|#[0-9]+ 0x.* in (sl_|[a-z_]+ /)|Test unit written' \
      "$log" | grep -v 'fuzzer::' | head -30
    echo "fuzz/$name: FAILED (exit $rc; the input is in $art)"
  fi
done
[ ${#failures[@]} -gt 0 ] && echo "failing: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
