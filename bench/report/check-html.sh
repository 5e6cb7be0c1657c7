#!/usr/bin/env bash
# Renders `socialgate report --format html` in headless Chromium and fails if
# the page does not render: the screenshot must exist and not be blank, and
# the DOM Chromium built must hold both SVG charts.
#
# Usage: bench/report/check-html.sh [LOG...]   (default: the test fixture)
# Needs: chromium (Debian: apt-get install -y chromium), a built binary
# (SOCIALGATE=path, default target/release/socialgate, else target/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${SOCIALGATE:-}"
if [[ -z "$bin" ]]; then
  if [[ -x target/release/socialgate ]]; then bin=target/release/socialgate; else bin=target/debug/socialgate; fi
fi
browser="$(command -v chromium || command -v chromium-browser || true)"
if [[ -z "$browser" ]]; then
  echo "check-html: chromium not found (apt-get install -y chromium)" >&2
  exit 1
fi
logs=("$@")
[[ ${#logs[@]} -gt 0 ]] || logs=(tests/fixtures/report/access.log)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" report --format html "${logs[@]}" > "$work/report.html" 2> "$work/report.stderr"

if grep -Eq 'https?://|src=' "$work/report.html"; then
  echo "check-html: the page references external resources" >&2
  exit 1
fi

flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars
       --user-data-dir="$work/profile")
timeout 60 "$browser" "${flags[@]}" --window-size=1200,2000 --screenshot="$work/shot.png" \
  "file://$work/report.html" > "$work/chromium.log" 2>&1 || true
timeout 60 "$browser" "${flags[@]}" --dump-dom "file://$work/report.html" > "$work/dom.html" 2>> "$work/chromium.log" || true

if [[ ! -s "$work/shot.png" ]]; then
  echo "check-html: no screenshot; chromium said:" >&2
  cat "$work/chromium.log" >&2
  exit 1
fi
size=$(stat -c %s "$work/shot.png")
# A blank 1200x2000 PNG compresses to a few kB; a rendered report is far larger.
if (( size < 20000 )); then
  echo "check-html: screenshot is only $size bytes (blank page?)" >&2
  exit 1
fi
svgs=$(grep -o '<svg' "$work/dom.html" | wc -l)
if (( svgs < 2 )); then
  echo "check-html: chromium's DOM holds $svgs <svg> elements, expected 2" >&2
  exit 1
fi
if [[ -n "${KEEP_SCREENSHOT:-}" ]]; then cp "$work/shot.png" "$KEEP_SCREENSHOT"; fi
echo "check-html: ok (screenshot $size bytes, $svgs charts in the DOM)"
