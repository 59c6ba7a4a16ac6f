#!/usr/bin/env bash
# Checks that the design citations in the source resolve, and that the project's docs stand
# alone. Usage: scripts/check-design-refs.sh   (from anywhere; needs bash, coreutils, grep, sed, awk)
#
# 1. Every citation of the design in src/ must name a section that docs/DESIGN.md has a heading
#    for ("## 6. ..." for §6, "### 3.2 ..." for §3.2). Citations look like:
#      DESIGN §3.2        DESIGN §6, §8        DESIGN §4/§8        (DESIGN\n * §11)
#      (§3.4)             (§3.5, §3.7)         (DESIGN §3, "What real clients require")
#    A § number belongs to the nearest citation before it — "DESIGN" or "RFC <n>" — when that
#    is at most two lines up, and otherwise to the design: the tree cites RFC sections only as
#    "RFC 9110 §5.3" or right after such a citation (e.g. "RFC 7239 §4" ... "(§6.2, §6.3)").
#    A quoted name after the number ("§3, "What real clients require"") must also appear in a
#    heading of that section.
# 2. No file under src/ or docs/ may point outside the project ("../shared", "shared/DESIGN"):
#    a fresh clone has nothing there.
#
# Prints "design refs: N resolved" (N = citations found) and exits 0, or prints each problem
# as file:line: what and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C # byte semantics: § is matched as its two UTF-8 bytes

design=docs/DESIGN.md
status=0

if [ ! -s "$design" ]; then
  echo "check-design-refs: $design is missing or empty" >&2
  exit 1
fi

# ---- 2. nothing outside the project ----
outside=$(grep -rnIF -e '../shared' -e 'shared/DESIGN' src docs || true)
if [ -n "$outside" ]; then
  printf '%s\n' "$outside" |
    awk -F: '{ print $1 ":" $2 ": points outside the project (../shared or shared/DESIGN); docs/ must stand alone" }'
  status=1
fi

# ---- 1a. the citations: file<TAB>line<TAB>section<TAB>quoted name ("" if none) ----
# shellcheck disable=SC2016 # an awk program: $ is awk's
extract='
FNR == 1 { ctx = ""; ctx_line = -100 }
{
  rest = $0
  while (match(rest, /DESIGN|RFC ?[0-9]+|§[0-9]+(\.[0-9]+)*/)) {
    tok = substr(rest, RSTART, RLENGTH)
    rest = substr(rest, RSTART + RLENGTH)
    if (tok == "DESIGN") { ctx = "DESIGN"; ctx_line = FNR; continue }
    if (tok ~ /^RFC/)    { ctx = "RFC";    ctx_line = FNR; continue }
    owner = (FNR - ctx_line <= 2) ? ctx : "DESIGN"
    if (owner != "DESIGN")
      continue
    sec = substr(tok, 3) # after the two bytes of §
    name = ""
    if (match(rest, /^, *"[^"]+"/)) {
      name = substr(rest, 1, RLENGTH)
      sub(/^, *"/, "", name)
      sub(/"$/, "", name)
    }
    printf "%s\t%d\t%s\t%s\n", FILENAME, FNR, sec, name
  }
}'
shopt -s globstar nullglob
files=()
for f in src/**; do
  if [ -f "$f" ]; then files+=("$f"); fi
done
refs=""
if [ "${#files[@]}" -gt 0 ]; then
  refs=$(awk "$extract" "${files[@]}")
fi

# ---- 1b. resolve them against the headings of docs/DESIGN.md ----
# shellcheck disable=SC2016
resolve='
BEGIN { FS = "\t"; resolved = 0 }
FNR == NR {
  # headings: "## 6. Policy ...", "### 3.2 Coalesce writes", "### What real clients require"
  if ($0 !~ /^##+ /)
    next
  text = $0
  sub(/^#+ +/, "", text)
  if (match(text, /^[0-9]+(\.[0-9]+)*/)) {
    id = substr(text, 1, RLENGTH)
    have[id] = 1
    if ($0 ~ /^## /)
      top = id
  }
  if (top != "")
    heads[top] = heads[top] "\n" tolower(text)
  next
}
$0 == "" { next }
{
  file = $1; line = $2; sec = $3; name = $4
  if (!(sec in have)) {
    printf "%s:%s: DESIGN §%s: docs/DESIGN.md has no heading for section %s\n", file, line, sec, sec
    next
  }
  if (name != "") {
    t = sec
    sub(/\..*/, "", t)
    if (index(heads[t], tolower(name)) == 0) {
      printf "%s:%s: DESIGN §%s, \"%s\": no heading of section %s of docs/DESIGN.md says \"%s\"\n", file, line, sec, name, t, name
      next
    }
  }
  resolved++
}
END { print "resolved " resolved }'
result=$(printf '%s\n' "$refs" | awk "$resolve" "$design" -)
problems=$(printf '%s\n' "$result" | grep -v '^resolved ' || true)
count=$(printf '%s\n' "$result" | sed -n 's/^resolved //p')
if [ -n "$problems" ]; then
  printf '%s\n' "$problems"
  status=1
fi

if [ "$status" -ne 0 ]; then
  exit 1
fi
echo "design refs: $count resolved"
