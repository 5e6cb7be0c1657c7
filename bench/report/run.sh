#!/usr/bin/env bash
# Benchmark of `socialgate report --format json`: generates a synthetic log
# (bench/report/gen.py, 1,000,000 records by default), then runs the release
# binary pinned to one core under /usr/bin/time -v and prints records/s and
# peak RSS. Targets: >= 500,000 records/s, < 64 MiB peak RSS.
#
# Usage: bench/report/run.sh [RECORDS]      (env: CORE=0, KEEP=1 keeps the log)
set -euo pipefail
cd "$(dirname "$0")/../.."

records="${1:-1000000}"
core="${CORE:-0}"
work="${WORK:-$(mktemp -d)}"
log="$work/access-$records.log"

cargo build --release --quiet
bin=target/release/socialgate

if [[ ! -s "$log" ]]; then
  echo "generating $records records into $log ..." >&2
  python3 bench/report/gen.py "$records" > "$log"
fi
size=$(stat -c %s "$log")
cat "$log" > /dev/null # warm the page cache so the run measures parsing, not the disk

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (wall time suffers when others share core $core)"
for run in 1 2 3; do
  /usr/bin/time -v taskset -c "$core" "$bin" report --format json "$log" > "$work/out.json" 2> "$work/time.txt"
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$work/time.txt")
  cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {print s}' "$work/time.txt")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  python3 - "$records" "$secs" "$cpu" "$rss_kb" "$size" "$run" <<'PY'
import sys
records, secs, cpu, rss_kb, size, run = (int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]),
                                         int(sys.argv[5]), sys.argv[6])
rate = records / secs if secs > 0 else float("inf")
cpu_rate = records / cpu if cpu > 0 else float("inf")
print(f"run {run}: {records} records ({size/1e6:.0f} MB): wall {secs:.2f} s = {rate:,.0f} records/s; "
      f"CPU (user+sys) {cpu:.2f} s = {cpu_rate:,.0f} records/s; peak RSS {rss_kb/1024:.1f} MiB")
PY
done
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("report:", d["records"], "records,", len(d["departments"]), "departments")' "$work/out.json"
if [[ -z "${KEEP:-}" && -z "${WORK:-}" ]]; then rm -rf "$work"; fi
