#!/usr/bin/env bash
# Lints a Prometheus text exposition read on stdin with `promtool check metrics` (Debian
# package prometheus). Exits 0 when clean, 1 with promtool's findings on stderr otherwise, and
# 77 (the conventional "skipped") when promtool is not installed.
set -uo pipefail
command -v promtool >/dev/null || { echo "promtool_check: promtool not installed" >&2; exit 77; }
promtool check metrics
