#!/usr/bin/env bash
# Runs the unit tests (cmocka) and the integration tests (node:test against a real sluice) for
# each build directory given (plus tests/browser, Chromium, for the release one), and ends
# with one summary line: "N passed, N failed".
# Usage: tests/run-all.sh [--unit-only|--integ-only] BUILD_DIR...
# With FUZZ_DIR set (make test does), the libFuzzer targets built there also run, bounded
# (tests/fuzz/run.sh --smoke), as the suite "fuzz": one pass per target that ran clean.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=all
case "${1:-}" in --unit-only) mode=unit; shift ;; --integ-only) mode=integ; shift ;; esac

passed=0; failed=0; failures=()
log=$(mktemp -d)

# node:test files against $dir/sluice: node_suite NAME CONCURRENCY FILE... (adds to the counts).
node_suite() {
  local name=$1 conc=$2; shift 2
  local tap="$log/${name//\//.}.tap" sanitized="" rc p f
  case "$flavour" in asan*) sanitized=1 ;; esac
  SLUICE_SANITIZED=$sanitized SLUICE_BIN="$PWD/$dir/sluice" node --test --test-concurrency="$conc" \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "$@"
  rc=$?
  p=$(grep -E '^# pass ' "$tap" | grep -oE '[0-9]+' | tail -1); p=${p:-0}
  f=$(grep -E '^# fail ' "$tap" | grep -oE '[0-9]+' | tail -1); f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -ne 0 ] && failures+=("$name")
  echo "$name: $p passed, $f failed"
}
for dir in "$@"; do
  flavour=$(basename "$dir")
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  if [ "$mode" != integ ]; then
    for t in "$dir"/tests/test_*; do
      [ -x "$t" ] || continue
      name="$flavour/unit/$(basename "$t")"
      out="$log/$(basename "$t").$flavour.txt"
      "$t" >"$out" 2>&1; rc=$?
      p=$(grep -oE '^\[  PASSED  \] [0-9]+' "$out" | grep -oE '[0-9]+$' | tail -1)
      f=$(grep -oE '^\[  FAILED  \] [0-9]+' "$out" | grep -oE '[0-9]+$' | tail -1)
      p=${p:-0}; f=${f:-0}
      if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
      passed=$((passed + p)); failed=$((failed + f))
      if [ "$f" -ne 0 ]; then failures+=("$name"); cat "$out"; fi
      echo "$name: $p passed, $f failed"
    done
  fi
  if [ "$mode" != unit ]; then
    node_suite "$flavour/integ" 2 tests/integ/*.test.mjs
    # The chat page in Chromium and the JS client once, on the release build; the embedded
    # files' HTTP answers (C code) under every build.
    if [ "$flavour" = release ]; then
      node_suite "$flavour/browser" 1 tests/browser/*.test.mjs
      node_suite "$flavour/client" 1 clients/js/test/*.test.mjs
    else
      node_suite "$flavour/web" 1 tests/browser/assets.test.mjs
    fi
  fi
done
if [ "$mode" = all ] && [ -n "${FUZZ_DIR:-}" ]; then
  out="$log/fuzz.txt"
  tests/fuzz/run.sh --smoke "$FUZZ_DIR" >"$out" 2>&1; rc=$?
  grep -E '^fuzz/' "$out"
  p=$(tail -1 "$out" | grep -oE '^[0-9]+ passed' | grep -oE '[0-9]+'); p=${p:-0}
  f=$(tail -1 "$out" | grep -oE '[0-9]+ failed$' | grep -oE '[0-9]+'); f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then failures+=("fuzz"); cat "$out"; fi
  echo "fuzz: $p passed, $f failed"
fi
rm -rf "$log"
[ ${#failures[@]} -gt 0 ] && echo "failing: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
