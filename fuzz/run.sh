#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (not in CI). Needs a
# nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET]   (default 60)
# Crashes land in fuzz/artifacts/<target>/; the corpora grow in fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
status=0
for target in host_parse config_load peek; do
  echo "fuzz: $target for ${secs}s"
  if ! cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=2048; then
    echo "fuzz: $target FOUND A CRASH (see fuzz/artifacts/$target/)"
    status=1
  fi
done
exit $status
