#!/usr/bin/env bash
# Long soak (not in CI): the tests/hardening_soak.rs load — eight source
# addresses, mixed allow/log/block over HTTP keep-alive and CONNECT with a
# real TLS exchange, a reload at half time, once by address and once with
# every client signed in as a user — for SECS seconds (default 60)
# in release mode. It fails if any answer is wrong, if the access-log record
# count differs from the request count by even one, if logged statuses differ
# from answered ones, or (from 30 s on) if resident memory at the end is more
# than 25 % + 16 MiB above its half-time level (the memory baseline check).
#
# Usage: bench/soak/run.sh [SECS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
echo "soak: ${secs}s, release build"
start=$(date +%s)
SOCIALGATE_SOAK_SECS="$secs" cargo test --release --test hardening_soak -- --nocapture
echo "soak: passed in $(( $(date +%s) - start ))s"
