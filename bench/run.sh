#!/usr/bin/env bash
# bench/run.sh — socialgate vs Squid vs tinyproxy vs direct, on loopback, in one run (issue 6).
#
# Usage (from anywhere, as root for apt-get; ~10 minutes):
#   bench/run.sh                 # install peers, build, measure, write bench/results/latest.md
#   ROUNDS=3 SECS=5 bench/run.sh # counted rounds per figure (after 1 discarded warm-up), seconds per measurement
#   SKIP_INSTALL=1 bench/run.sh  # do not call apt-get
#   OUT=name bench/run.sh        # results to bench/results/name.md instead of latest.md
#   FIGURES="download" bench/run.sh  # only some figures (memory http setup bulk download twocore)
#   SG_CLIENT_CC=cubic bench/run.sh  # socialgate with [proxy] client_congestion_control (not its default;
#                                    # noted in the results: the peers keep the system's algorithm)
#
# Method: each proxy (all threads and children) pinned to core 0 with taskset, the load generator
# and origin to core 1; figures measured one after another, targets interleaved within each round
# (socialgate, squid, tinyproxy, direct), round 0 discarded. Access logging on for every proxy.
# Only loopback addresses are used. Every wait is bounded.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
CONC_HTTP=${CONC_HTTP:-64}
CONC_SETUP=${CONC_SETUP:-32}
BULK_BYTES=${BULK_BYTES:-1073741824}
IDLE_TUNNELS=${IDLE_TUNNELS:-2000}
FIGURES=${FIGURES:-memory http setup bulk download twocore} # any subset, in this order
SG_CLIENT_CC=${SG_CLIENT_CC:-}
WORK=${WORK:-/tmp/socialgate-bench}
RESULTS="$ROOT/bench/results"
OUT=${OUT:-latest} # results go to bench/results/$OUT.md and $OUT.raw.tsv
RAW="$RESULTS/$OUT.raw.tsv"

ECHO_PORT=18001 BULK_PORT=18002 HTTP_PORT=18080
SG_PORT=13128 SG_ADMIN=19090 SQUID_PORT=13129 TINY_PORT=13130
ORIGIN_NAME=origin.bench
PROXY_CORE=0 CLIENT_CORE=1

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

mkdir -p "$RESULTS"
rm -rf "$WORK"
mkdir -p "$WORK"/{sg,squid,tiny}
chmod 0777 "$WORK/squid" "$WORK/tiny"
: >"$RAW"
NOTES="$WORK/notes.txt"
: >"$NOTES"
note() { log "$*"; printf -- '- %s\n' "$*" >>"$NOTES"; }

PIDS=()
cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    if [ -n "${HOSTS_ADDED:-}" ]; then
        sed -i "/# socialgate-bench\$/d" /etc/hosts 2>/dev/null
    fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ install and build
if [ -z "${SKIP_INSTALL:-}" ]; then
    for pkg in wrk squid tinyproxy; do
        if ! command -v "$pkg" >/dev/null 2>&1; then
            log "installing $pkg"
            DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" >"$WORK/apt-$pkg.log" 2>&1 ||
                { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" >"$WORK/apt-$pkg.log" 2>&1; } ||
                note "$pkg could not be installed (see $WORK/apt-$pkg.log); measuring the rest"
        fi
    done
fi
HAVE_WRK=1; command -v wrk >/dev/null 2>&1 || { HAVE_WRK=; note "wrk missing: HTTP forward figures skipped"; }
HAVE_SQUID=1; command -v squid >/dev/null 2>&1 || { HAVE_SQUID=; note "squid missing: not measured"; }
HAVE_TINY=1; command -v tinyproxy >/dev/null 2>&1 || { HAVE_TINY=; note "tinyproxy missing: not measured"; }
# Debian's packages start their services on install when systemd runs; we use our own instances on other ports.

log "building socialgate and connect_load (release)"
(cd "$ROOT" && cargo build --release --bin socialgate --example connect_load) >"$WORK/build.log" 2>&1 ||
    { log "build failed, see $WORK/build.log"; tail -20 "$WORK/build.log" >&2; exit 1; }
SG="$ROOT/target/release/socialgate"
LOAD="$ROOT/target/release/examples/connect_load"

# ------------------------------------------------------------------ configs
printf '127.0.0.1 %s\n' "$ORIGIN_NAME" >"$WORK/hosts"
# tinyproxy resolves through the system resolver: /etc/hosts (entry removed on exit).
if ! grep -q "[[:space:]]$ORIGIN_NAME\([[:space:]]\|\$\)" /etc/hosts 2>/dev/null; then
    if printf '127.0.0.1 %s # socialgate-bench\n' "$ORIGIN_NAME" >>/etc/hosts 2>/dev/null; then
        HOSTS_ADDED=1
    else
        note "cannot add $ORIGIN_NAME to /etc/hosts: tinyproxy will fail to resolve it"
    fi
fi

# socialgate: the shipped example company (six departments, schedules) + 100,000 generated
# catalogue domains in 100 services, JSON access log to a file, loopback destinations allowed.
cp -r "$ROOT/config/departments" "$ROOT/config/users.htpasswd" "$WORK/sg/"
cp "$WORK/hosts" "$WORK/sg/hosts"
{
    cat "$ROOT/config/services.toml"
    python3 - <<'EOF'
tlds = ["com", "net", "org", "no", "de", "io"]
for s in range(100):
    print(f"\n[benchsvc{s:03}]\ndomains = [")
    for i in range(s * 1000, (s + 1) * 1000):
        print(f'  "site{i:06}-media.{tlds[i % len(tlds)]}",')
    print("]")
EOF
} >"$WORK/sg/services.toml"
sed -e "s|^listen = \[\"127.0.0.1:3128\"\]|listen = [\"127.0.0.1:$SG_PORT\"]|" \
    -e "s|^connect_ports = .*|connect_ports = [$ECHO_PORT, $BULK_PORT]|" \
    -e "s|^allow_destinations = .*|allow_destinations = [\"127.0.0.0/8\"]|" \
    -e "s|^access_log = .*|access_log = \"access.log\"|" \
    -e "s|^listen = \"127.0.0.1:9090\"|listen = \"127.0.0.1:$SG_ADMIN\"|" \
    "$ROOT/config/socialgate.toml" >"$WORK/sg/socialgate.toml"
if [ -n "$SG_CLIENT_CC" ]; then
    sed -i "s|^# client_congestion_control = .*|client_congestion_control = \"$SG_CLIENT_CC\"|" "$WORK/sg/socialgate.toml"
    grep -q "^client_congestion_control = \"$SG_CLIENT_CC\"" "$WORK/sg/socialgate.toml" ||
        { log "no client_congestion_control line to set in config/socialgate.toml"; exit 1; }
    note "socialgate ran with [proxy] client_congestion_control = \"$SG_CLIENT_CC\" (not its default); the peers and direct use the system's $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null)"
fi
if ! "$SG" check --config "$WORK/sg/socialgate.toml" >"$WORK/sg/check.txt" 2>&1; then
    log "socialgate check failed:"; cat "$WORK/sg/check.txt" >&2; exit 1
fi

cat >"$WORK/squid/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT
acl benchclients src 127.0.0.0/8
acl bench_connect port $ECHO_PORT $BULK_PORT
acl CONNECT method CONNECT
http_access deny CONNECT !bench_connect
http_access allow benchclients
http_access deny all
cache deny all
access_log daemon:$WORK/squid/access.log squid
cache_log $WORK/squid/cache.log
pid_filename $WORK/squid/squid.pid
coredump_dir $WORK/squid
hosts_file $WORK/hosts
max_filedescriptors 16384
shutdown_lifetime 1 seconds
EOF

cat >"$WORK/tiny/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $TINY_PORT
Listen 127.0.0.1
Timeout 600
LogFile "$WORK/tiny/tinyproxy.log"
# Debian's shipped (default) log level.
LogLevel Info
PidFile "$WORK/tiny/tinyproxy.pid"
MaxClients 8192
Allow 127.0.0.0/8
ConnectPort $ECHO_PORT
ConnectPort $BULK_PORT
EOF

for size in small large; do
    cat >"$WORK/abs-$size.lua" <<EOF
-- absolute-form request line, as browsers send to a forward proxy
function init(args)
  req = wrk.format("GET", "http://$ORIGIN_NAME:$HTTP_PORT/$size", { ["Host"] = "$ORIGIN_NAME:$HTTP_PORT" })
end
function request() return req end
EOF
done

# ------------------------------------------------------------------ process control
wait_port() { # port seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# Waits until `pid` itself listens on `port` (not some other process that holds the port).
wait_own_port() { # port pid seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        ss -Hltnp "sport = :$1" 2>/dev/null | grep -q "pid=$2," && return 0
        sleep 0.1
    done
    return 1
}
declare -A PID_OF PORT_OF
PORT_OF[socialgate]=$SG_PORT PORT_OF[squid]=$SQUID_PORT PORT_OF[tinyproxy]=$TINY_PORT

start_proxy() { # name [cores]
    local name=$1 cores=${2:-$PROXY_CORE} pid
    case $name in
        socialgate) (cd "$WORK/sg" && RUST_LOG=warn exec taskset -c "$cores" "$SG" run --config "$WORK/sg/socialgate.toml") >>"$WORK/sg/stderr.log" 2>&1 & pid=$! ;;
        squid) taskset -c "$cores" squid -N -f "$WORK/squid/squid.conf" >>"$WORK/squid/stderr.log" 2>&1 & pid=$! ;;
        tinyproxy) taskset -c "$cores" tinyproxy -d -c "$WORK/tiny/tinyproxy.conf" >>"$WORK/tiny/stderr.log" 2>&1 & pid=$! ;;
    esac
    PIDS+=("$pid")
    if wait_own_port "${PORT_OF[$name]}" "$pid" 20; then
        PID_OF[$name]=$pid
        return 0
    fi
    note "$name did not start (see $WORK); not measured"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget "$pid"
    unset 'PID_OF[$name]'
    return 1
}
forget() { # pid: drop a reaped process from the cleanup list (its id may be reused)
    local kept=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}
stop_proxy() { # name
    local pid=${PID_OF[$1]:-} i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget "$pid"
    unset 'PID_OF[$1]'
    wait_closed "${PORT_OF[$1]}"
}
wait_closed() { local i; for ((i = 0; i < 50; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || return 0; sleep 0.1; done; }

# CPU ticks (utime+stime) of a process and its direct children (Squid's log daemon).
cpu_ticks() {
    local pid=$1 total=0 p
    for p in "$pid" $(cat "/proc/$pid/task/"*/children 2>/dev/null); do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
    done
    echo "$total"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; } # figure target round metric value

targets() {
    local t
    for t in socialgate squid tinyproxy; do [ -n "${PID_OF[$t]:-}" ] && echo "$t"; done
    echo direct
}

# ------------------------------------------------------------------ measurements
wrk_to_us() { # "1.23ms" -> microseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) f = 1; else if (v ~ /ms$/) f = 1000; else if (v ~ /s$/) f = 1000000; else f = 1; printf "%.0f", n * f }'
}

measure_http() { # target size round [figure]
    local t=$1 size=$2 round=$3 fig=${4:-http_$2} out pid before after reqs
    out="$WORK/wrk-$fig-$t-$round.txt"
    pid=${PID_OF[$t]:-}
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    if [ "$t" = direct ]; then
        timeout $((SECS + 30)) taskset -c $CLIENT_CORE wrk -t1 -c"$CONC_HTTP" -d"${SECS}s" --latency \
            -H "Host: $ORIGIN_NAME:$HTTP_PORT" "http://127.0.0.1:$HTTP_PORT/$size" >"$out" 2>&1
    else
        timeout $((SECS + 30)) taskset -c $CLIENT_CORE wrk -t1 -c"$CONC_HTTP" -d"${SECS}s" --latency \
            -s "$WORK/abs-$size.lua" "http://127.0.0.1:${PORT_OF[$t]}/" >"$out" 2>&1
    fi
    reqs=$(awk '/requests in/ {print $1}' "$out")
    record "$fig" "$t" "$round" rps "$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    record "$fig" "$t" "$round" p50_us "$(wrk_to_us "$(awk '$1 == "50%" {print $2}' "$out")")"
    record "$fig" "$t" "$round" p99_us "$(wrk_to_us "$(awk '$1 == "99%" {print $2}' "$out")")"
    record "$fig" "$t" "$round" errors "$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$out")"
    if [ -n "$pid" ] && [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
        after=$(cpu_ticks "$pid")
        record "$fig" "$t" "$round" cpu_us_per_op "$(awk -v d=$((after - before)) -v r="$reqs" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", d * 1e6 / hz / r}')"
    fi
}

kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$2" | head -1; }

measure_setup() { # target round [figure]
    local t=$1 round=$2 fig=${3:-connect_setup} out pid before after n
    out="$WORK/setup-$fig-$t-$round.txt"
    pid=${PID_OF[$t]:-}
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    if [ "$t" = direct ]; then
        timeout $((SECS + 60)) taskset -c $CLIENT_CORE "$LOAD" setup --connect "$ORIGIN_NAME:$ECHO_PORT" \
            --direct "127.0.0.1:$ECHO_PORT" --concurrency "$CONC_SETUP" --duration "$SECS" >"$out" 2>&1
    else
        timeout $((SECS + 60)) taskset -c $CLIENT_CORE "$LOAD" setup --connect "$ORIGIN_NAME:$ECHO_PORT" \
            --proxy "127.0.0.1:${PORT_OF[$t]}" --concurrency "$CONC_SETUP" --duration "$SECS" >"$out" 2>&1
    fi
    n=$(kv tunnels "$out")
    record "$fig" "$t" "$round" rate "$(kv rate "$out")"
    record "$fig" "$t" "$round" p50_us "$(kv p50_us "$out")"
    record "$fig" "$t" "$round" p99_us "$(kv p99_us "$out")"
    record "$fig" "$t" "$round" errors "$(kv errors "$out")"
    if [ -n "$pid" ] && [ -n "$n" ] && [ "$n" -gt 0 ]; then
        after=$(cpu_ticks "$pid")
        record "$fig" "$t" "$round" cpu_us_per_op "$(awk -v d=$((after - before)) -v r="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", d * 1e6 / hz / r}')"
    fi
}

measure_bulk() { # target round
    local t=$1 round=$2 fig=connect_bulk out pid before after
    out="$WORK/bulk-$t-$round.txt"
    pid=${PID_OF[$t]:-}
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    if [ "$t" = direct ]; then
        timeout 120 taskset -c $CLIENT_CORE "$LOAD" bulk --connect "$ORIGIN_NAME:$BULK_PORT" \
            --direct "127.0.0.1:$BULK_PORT" --bytes "$BULK_BYTES" >"$out" 2>&1
    else
        timeout 120 taskset -c $CLIENT_CORE "$LOAD" bulk --connect "$ORIGIN_NAME:$BULK_PORT" \
            --proxy "127.0.0.1:${PORT_OF[$t]}" --bytes "$BULK_BYTES" >"$out" 2>&1
    fi
    if [ "$(kv complete "$out")" = true ]; then
        record "$fig" "$t" "$round" mb_s "$(kv mb_s "$out")"
    else
        record "$fig" "$t" "$round" errors 1
    fi
    if [ -n "$pid" ]; then
        after=$(cpu_ticks "$pid")
        # CPU seconds per GiB moved
        record "$fig" "$t" "$round" cpu_s_per_gib "$(awk -v d=$((after - before)) -v b="$BULK_BYTES" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", d / hz / (b / 1073741824)}')"
    fi
}

measure_download() { # target round: one 1 GiB plain-HTTP download (curl) through the proxy
    local t=$1 round=$2 fig=http_download out pid before after
    out="$WORK/download-$t-$round.txt"
    pid=${PID_OF[$t]:-}
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    if [ "$t" = direct ]; then
        timeout 150 taskset -c $CLIENT_CORE curl -s -o /dev/null --max-time 120 -w '%{speed_download} %{size_download} %{http_code}\n' \
            "http://127.0.0.1:$HTTP_PORT/1gib" >"$out" 2>&1
    else
        timeout 150 taskset -c $CLIENT_CORE curl -s -o /dev/null --max-time 120 -w '%{speed_download} %{size_download} %{http_code}\n' \
            -x "http://127.0.0.1:${PORT_OF[$t]}" "http://$ORIGIN_NAME:$HTTP_PORT/1gib" >"$out" 2>&1
    fi
    read -r speed size code <"$out"
    if [ "${code:-}" = 200 ] && [ "${size:-0}" = 1073741824 ]; then
        record "$fig" "$t" "$round" mb_s "$(awk -v b="$speed" 'BEGIN {printf "%.1f", b / 1e6}')"
    else
        record "$fig" "$t" "$round" errors 1
    fi
    if [ -n "$pid" ]; then
        after=$(cpu_ticks "$pid")
        record "$fig" "$t" "$round" cpu_s_per_gib "$(awk -v d=$((after - before)) -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", d / hz}')"
    fi
}

want() { case " $FIGURES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

measure_memory() { # proxy round: fresh process, idle RSS, then K idle tunnels
    local t=$1 round=$2 fig=memory pid idle_rss base_rss full_rss out i lpid
    start_proxy "$t" || return 0
    pid=${PID_OF[$t]}
    sleep 1
    idle_rss=$(rss_kib "$pid")
    out="$WORK/idle-$t-$round.txt"
    taskset -c $CLIENT_CORE "$LOAD" idle --connect "$ORIGIN_NAME:$ECHO_PORT" --proxy "127.0.0.1:${PORT_OF[$t]}" \
        --tunnels "$IDLE_TUNNELS" --hold 60 >"$out" 2>&1 &
    lpid=$!
    for ((i = 0; i < 600; i++)); do grep -q ready "$out" 2>/dev/null && break; kill -0 "$lpid" 2>/dev/null || break; sleep 0.1; done
    sleep 1
    full_rss=$(rss_kib "$pid")
    kill "$lpid" 2>/dev/null
    wait "$lpid" 2>/dev/null
    record "$fig" "$t" "$round" idle_rss_kib "$idle_rss"
    record "$fig" "$t" "$round" tunnels_rss_kib "$full_rss"
    record "$fig" "$t" "$round" tunnels_open "$(kv tunnels "$out")"
    local open; open=$(kv tunnels "$out")
    if [ -n "$open" ] && [ "$open" -gt 0 ]; then
        record "$fig" "$t" "$round" kib_per_tunnel "$(awk -v a="$full_rss" -v b="$idle_rss" -v n="$open" 'BEGIN {printf "%.2f", (a - b) / n}')"
    fi
    stop_proxy "$t"
}

# ------------------------------------------------------------------ run
log "starting origin on core $CLIENT_CORE"
taskset -c $CLIENT_CORE "$LOAD" origin --echo "127.0.0.1:$ECHO_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --bulk "127.0.0.1:$BULK_PORT" --duration 3600 >"$WORK/origin.log" 2>&1 &
PIDS+=("$!")
wait_port $HTTP_PORT 10 || { log "origin did not start"; cat "$WORK/origin.log" >&2; exit 1; }

START_TS=$(date -u +%FT%TZ)
# Memory first, on fresh processes (idle RSS of a process that has served nothing yet).
want memory && for ((round = 0; round <= ROUNDS; round++)); do
    for t in socialgate squid tinyproxy; do
        case $t in squid) [ -n "$HAVE_SQUID" ] || continue ;; tinyproxy) [ -n "$HAVE_TINY" ] || continue ;; esac
        log "memory round $round: $t"
        measure_memory "$t" "$round"
    done
done

# The same socialgate with only the shipped catalogue (no 100,000 generated domains): idle RSS.
want memory && mkdir -p "$WORK/sg-shipped"
want memory && cp -r "$WORK/sg/departments" "$WORK/sg/users.htpasswd" "$WORK/sg/hosts" "$WORK/sg/socialgate.toml" "$WORK/sg-shipped/"
want memory && cp "$ROOT/config/services.toml" "$WORK/sg-shipped/services.toml"
want memory && for ((round = 1; round <= ROUNDS; round++)); do
    (cd "$WORK/sg-shipped" && RUST_LOG=warn exec taskset -c $PROXY_CORE "$SG" run --config "$WORK/sg-shipped/socialgate.toml") >>"$WORK/sg-shipped/stderr.log" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    if wait_port $SG_PORT 20; then
        sleep 1
        record memory "socialgate (shipped catalogue)" "$round" idle_rss_kib "$(rss_kib "$spid")"
    fi
    kill -TERM "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    forget "$spid"
    wait_closed $SG_PORT
done

start_proxy socialgate
[ -n "$HAVE_SQUID" ] && start_proxy squid
[ -n "$HAVE_TINY" ] && start_proxy tinyproxy

if [ -n "$HAVE_WRK" ] && want http; then
    for size in small large; do
        for ((round = 0; round <= ROUNDS; round++)); do
            for t in $(targets); do log "http $size round $round: $t"; measure_http "$t" "$size" "$round"; done
        done
    done
fi
want setup && for ((round = 0; round <= ROUNDS; round++)); do
    for t in $(targets); do log "connect setup round $round: $t"; measure_setup "$t" "$round"; done
done
want bulk && for ((round = 0; round <= ROUNDS; round++)); do
    for t in $(targets); do log "connect bulk round $round: $t"; measure_bulk "$t" "$round"; done
done
want download && for ((round = 0; round <= ROUNDS; round++)); do
    for t in $(targets); do log "http 1 GiB download round $round: $t"; measure_download "$t" "$round"; done
done

# socialgate on both cores (the load generator shares core 1): the two-core figure beside the headline.
if want twocore && stop_proxy socialgate && start_proxy socialgate "0,1"; then
    for ((round = 0; round <= ROUNDS; round++)); do
        log "two-core socialgate round $round"
        if [ -n "$HAVE_WRK" ]; then measure_http socialgate small "$round" http_small_2core; fi
        measure_setup socialgate "$round" connect_setup_2core
    done
fi

# ------------------------------------------------------------------ report
{
    echo "machine=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), TCP congestion control $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null)"
    echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "socialgate=$("$SG" --version 2>/dev/null) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null))"
    [ -n "$HAVE_SQUID" ] && echo "squid=$(squid -v | head -1)"
    [ -n "$HAVE_TINY" ] && echo "tinyproxy=$(tinyproxy -v 2>&1 | head -1)"
    [ -n "$HAVE_WRK" ] && echo "wrk=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "rustc=$(rustc --version)"
    echo "start=$START_TS"
    echo "end=$(date -u +%FT%TZ)"
    echo "settings=ROUNDS=$ROUNDS SECS=$SECS CONC_HTTP=$CONC_HTTP CONC_SETUP=$CONC_SETUP BULK_BYTES=$BULK_BYTES IDLE_TUNNELS=$IDLE_TUNNELS"
} >"$WORK/meta.txt"
python3 "$ROOT/bench/summarise.py" "$RAW" "$WORK/meta.txt" "$NOTES" >"$RESULTS/$OUT.md" &&
    log "results: $RESULTS/$OUT.md" && cat "$RESULTS/$OUT.md"
