#!/usr/bin/env bash
# Installs what building and testing sluice needs and is not yet on this machine:
# Debian packages (apt) and the npm packages of the integration tests. Idempotent and quiet
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential pkg-config clang libclang-rt-14-dev clang-format clang-tidy
  libuv1-dev libcurl4-openssl-dev libjansson-dev libyaml-dev libhttp-parser-dev libcmocka-dev
  libwslay-dev libjwt-dev libsqlite3-dev libssl-dev libhiredis-dev libpq-dev
  python3-websockets prometheus redis-server postgresql sqlite3
  nodejs nginx-light curl ca-certificates chromium)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian (it does on some images): only a missing npm matters.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--npm" ]; then
  if [ ! -d tests/integ/node_modules ] || [ tests/integ/package-lock.json -nt tests/integ/node_modules/.stamp ]; then
    echo "deps: npm ci in tests/integ"
    (cd tests/integ && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
  fi
  # The chat page's marked and DOMPurify (the build also runs this when they are missing).
  if [ ! -f web/node_modules/.stamp ] || [ web/package-lock.json -nt web/node_modules/.stamp ]; then
    echo "deps: npm ci in web"
    (cd web && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
  fi
  # The JS client's tests: React, react-dom and jsdom for the hook, TypeScript for its types.
  if [ ! -f clients/js/node_modules/.stamp ] || [ clients/js/package-lock.json -nt clients/js/node_modules/.stamp ]; then
    echo "deps: npm ci in clients/js"
    (cd clients/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
  fi
fi
