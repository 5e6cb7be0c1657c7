#!/usr/bin/env bash
# Long soak (not in CI), in two parts, release build, loopback only.
#
# 1. The tests/hardening_soak.rs load for SECS seconds (default 60): eight
#    source addresses, mixed allow/log/block over HTTP keep-alive and CONNECT
#    with a real TLS exchange, a log rotation (rename + reopen) at a quarter
#    and a reload at half time, once by address and once with every client
#    signed in. Fails on any wrong answer, if the records in the rotated and
#    the new log together differ from the requests by even one, or if logged
#    statuses differ from answered ones.
# 2. The real binary (`socialgate run`) under curl load for SECS seconds from
#    eight source addresses (HTTP keep-alive and CONNECT, allowed, logged and
#    blocked), with SIGHUP (reload) and `mv access.log` + SIGUSR1 (rotation)
#    in the middle, and /healthz on the admin endpoint polled all along.
#    Checks: every answer is the policy's, records across both log files ==
#    requests, /healthz never failed, and resident memory (VmRSS of the
#    process) after a settle period returns near the baseline taken before
#    the load: at most baseline * 1.5 + 16 MiB. Prints the numbers.
#
# Usage: bench/soak/run.sh [SECS] [SETTLE_SECS]
#   SKIP_TEST=1: part 2 only;  SOCIALGATE_BIN=path: use that binary (no build).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
settle="${2:-20}"
start=$(date +%s)

if [ "${SKIP_TEST:-0}" != 1 ]; then
    echo "soak 1/2: in-process suite, ${secs}s, release build"
    SOCIALGATE_SOAK_SECS="$secs" cargo test --release --test hardening_soak -- --nocapture
fi

echo "soak 2/2: the binary under curl load, ${secs}s, settle ${settle}s"
if [ -n "${SOCIALGATE_BIN:-}" ]; then
    bin="$SOCIALGATE_BIN"
else
    cargo build --release --bin socialgate
    bin="${CARGO_TARGET_DIR:-target}/release/socialgate"
fi
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
proxy_port=$(free_port); admin_port=$(free_port); origin_port=$(free_port)

# A keep-alive HTTP/1.1 origin on loopback answering every GET with 2 bytes.
cat > "$work/origin.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
class S(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
python3 "$work/origin.py" "$origin_port" &
pids+=($!)

mkdir -p "$work/departments"
cat > "$work/socialgate.toml" <<EOF
[proxy]
listen = ["127.0.0.1:$proxy_port"]
connect_ports = [$origin_port]
allow_destinations = ["127.0.0.0/8"]
hosts_file = "hosts"
[log]
access_log = "access.log"
[admin]
listen = "127.0.0.1:$admin_port"
[limits]
idle_timeout = "5s"
EOF
printf '127.0.0.1 www.facebook.com\n127.0.0.1 example.test\n127.0.0.1 twitter.com\n' > "$work/hosts"
echo 'default = "allow"
[services]
facebook = "block"' > "$work/departments/default.toml"
echo 'networks = ["127.0.0.2/32", "127.0.0.3/32", "127.0.0.4/32"]
default = "allow"
[services]
facebook = "log"' > "$work/departments/sales.toml"
echo 'networks = ["127.0.0.5/32", "127.0.0.6/32"]
default = "allow"
[services]
twitter = "block"' > "$work/departments/engineering.toml"

"$bin" run --config "$work/socialgate.toml" 2> "$work/proxy.err" &
proxy_pid=$!
pids+=("$proxy_pid")
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$admin_port/healthz" &&
        curl -s -o /dev/null "http://127.0.0.1:$origin_port/ready" && break
    sleep 0.1
done
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$proxy_pid/status"; }
fds() { ls "/proc/$proxy_pid/fd" | wc -l; }
rss_start=$(rss); fds_start=$(fds)

# The status a client on 127.0.0.N must get for HOST.
want() {
    local n=$1 host=$2
    case "$host" in
        www.facebook.com) [ "$n" -ge 7 ] && echo 403 || echo 200 ;;
        twitter.com) { [ "$n" = 5 ] || [ "$n" = 6 ]; } && echo 403 || echo 200 ;;
        *) echo 200 ;;
    esac
}

# Worker on 127.0.0.N: batches of 20 keep-alive GETs in one curl, then one
# CONNECT (curl -p) per host; writes "host want got" per request.
worker() {
    local n=$1 until=$2 out="$work/worker.$1" i=0
    while [ "$(date +%s)" -lt "$until" ]; do
        for host in example.test www.facebook.com twitter.com; do
            args=()
            for _ in $(seq 20); do
                i=$((i + 1))
                args+=(-o /dev/null "http://$host:$origin_port/$n/$i")
            done
            curl -s --max-time 20 --interface "127.0.0.$n" -x "http://127.0.0.1:$proxy_port" \
                -w '%{http_code}\n' "${args[@]}" |
                while read -r got; do echo "$host $(want "$n" "$host") $got"; done >> "$out" || true
            got=$(curl -s --max-time 20 -p --interface "127.0.0.$n" -x "http://127.0.0.1:$proxy_port" \
                -o /dev/null -w '%{http_connect}' "http://$host:$origin_port/tunnel" || true)
            echo "$host $(want "$n" "$host") $got" >> "$out"
        done
    done
}

until=$(( $(date +%s) + secs ))
workers=()
for n in 2 3 4 5 6 7 8 9; do
    worker "$n" "$until" &
    workers+=($!)
done

# /healthz all along: every answer must be 200.
(
    while [ "$(date +%s)" -lt "$until" ]; do
        curl -s --max-time 5 -o /dev/null -w '%{http_code} %{time_total}\n' \
            "http://127.0.0.1:$admin_port/healthz" >> "$work/healthz" || echo "000 5" >> "$work/healthz"
        sleep 0.25
    done
) &
health=$!

sleep $(( secs / 3 ))
echo 'networks = ["127.0.0.5/32", "127.0.0.6/32"]
default = "allow"
[services]
twitter = "block"
linkedin = "block"' > "$work/departments/engineering.toml"
kill -HUP "$proxy_pid"
echo "  reload (SIGHUP) at $(( $(date +%s) - until + secs ))s"
sleep $(( secs / 6 ))
mv "$work/access.log" "$work/access.log.1"
kill -USR1 "$proxy_pid"
echo "  rotation (mv + SIGUSR1) at $(( $(date +%s) - until + secs ))s"

for w in "${workers[@]}"; do wait "$w"; done
wait "$health"
rss_load=$(rss); fds_load=$(fds)
sleep "$settle"
rss_settled=$(rss); fds_settled=$(fds)
# Open connections from the proxy to the origin (pooled upstream keep-alive).
upstream_settled=$(ss -Htn state established "( dport = :$origin_port )" 2>/dev/null | wc -l || echo "?")
kill -TERM "$proxy_pid"
wait "$proxy_pid" || { echo "FAIL: the proxy exited non-zero"; cat "$work/proxy.err"; exit 1; }

cat "$work"/worker.* > "$work/answers"
requests=$(wc -l < "$work/answers")
wrong=$(awk '$2 != $3' "$work/answers" | wc -l)
old=$(wc -l < "$work/access.log.1")
new=$(wc -l < "$work/access.log")
health_n=$(wc -l < "$work/healthz")
health_bad=$(awk '$1 != 200' "$work/healthz" | wc -l)
health_max=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$work/healthz")

echo "soak 2/2 results:"
echo "  requests=$requests wrong=$wrong records=$((old + new)) (rotated=$old new=$new)"
echo "  healthz polls=$health_n failed=$health_bad slowest=${health_max}s"
echo "  rss_kib start=$rss_start after_load=$rss_load after_settle=$rss_settled"
echo "  fds start=$fds_start after_load=$fds_load after_settle=$fds_settled (upstream connections still open: $upstream_settled)"
fail=0
[ "$wrong" = 0 ] || { echo "FAIL: wrong answers:"; awk '$2 != $3' "$work/answers" | sort | uniq -c | head; fail=1; }
[ "$((old + new))" = "$requests" ] || { echo "FAIL: records differ from requests"; fail=1; }
[ "$old" -gt 0 ] && [ "$new" -gt 0 ] || { echo "FAIL: a log file is empty after the rotation"; fail=1; }
[ "$health_bad" = 0 ] || { echo "FAIL: /healthz failed $health_bad times"; fail=1; }
limit=$(( rss_start * 3 / 2 + 16384 ))
[ "$rss_settled" -le "$limit" ] || { echo "FAIL: memory did not return near its baseline (limit ${limit} KiB)"; fail=1; }
[ "$fail" = 0 ] || { echo "(the access logs, for a look: KEEP=1 keeps $work)"; exit 1; }
echo "soak: passed in $(( $(date +%s) - start ))s"
