#!/usr/bin/env python3
"""bench/summarise.py RAW.tsv META.txt NOTES.txt -> Markdown on stdout.

Reads the raw per-round measurements written by bench/run.sh (figure, target,
round, metric, value), drops round 0 (warm-up), and prints medians per target
with ratios vs Squid and vs direct, plus the issue-6 targets check.
"""
import statistics
import sys
from collections import defaultdict

raw_path, meta_path, notes_path = sys.argv[1:4]
data = defaultdict(list)  # (figure, target, metric) -> [values]
for line in open(raw_path):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 5:
        continue
    fig, target, rnd, metric, value = parts
    if rnd == "0" or value == "":
        continue
    try:
        data[(fig, target, metric)].append(float(value))
    except ValueError:
        pass

TARGETS = ["socialgate", "squid", "tinyproxy", "direct"]


def med(fig, target, metric):
    v = data.get((fig, target, metric))
    return statistics.median(v) if v else None


def fmt(x, digits=1):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def n_rounds(fig, target, metric):
    return len(data.get((fig, target, metric), []))


meta = dict(l.rstrip("\n").split("=", 1) for l in open(meta_path) if "=" in l)
notes = open(notes_path).read().strip()

out = []
w = out.append
w("# socialgate benchmark run\n")
w(f"- Machine: {meta.get('machine', '?')}; load average at start {meta.get('load_before', '?')}")
for k in ["socialgate", "squid", "tinyproxy", "wrk", "rustc"]:
    if k in meta:
        w(f"- {k}: {meta[k]}")
w(f"- Run: {meta.get('start', '?')} → {meta.get('end', '?')}; settings `{meta.get('settings', '')}`")
w("- Each proxy pinned to core 0 (`taskset -c 0`), load generator and origin on core 1; "
  "round 0 discarded, medians of the counted rounds. Ratios: socialgate's (or the row's) value ÷ Squid's / ÷ direct's.")
if notes:
    w("\nNotes from the run:\n")
    w(notes)
w("")


def table(title, fig, metrics, higher_better_metric):
    w(f"## {title}\n")
    head = "| target | " + " | ".join(label for _, label in metrics) + " | vs Squid | vs direct | rounds |"
    w(head)
    w("|" + "---|" * (len(metrics) + 4))
    sq = med(fig, "squid", higher_better_metric)
    di = med(fig, "direct", higher_better_metric)
    extra = sorted({t for (f, t, _) in data if f == fig and t not in TARGETS})
    for t in TARGETS + extra:
        vals = [med(fig, t, m) for m, _ in metrics]
        if all(v is None for v in vals):
            continue
        main = med(fig, t, higher_better_metric)
        w(f"| {t} | " + " | ".join(fmt(v) for v in vals)
          + f" | {ratio(main, sq)} | {ratio(main, di)} | {max(n_rounds(fig, t, m) for m, _ in metrics)} |")
    w("")


table("1a. HTTP forward, keep-alive, 100 B responses (wrk -c64)", "http_small",
      [("rps", "req/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("cpu_us_per_op", "proxy CPU µs/req"),
       ("errors", "errors")], "rps")
table("1b. HTTP forward, keep-alive, 64 KiB responses (wrk -c64)", "http_large",
      [("rps", "req/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("cpu_us_per_op", "proxy CPU µs/req"),
       ("errors", "errors")], "rps")
table("1c. HTTP forward, one 1 GiB download (curl)", "http_download",
      [("mb_s", "MB/s"), ("cpu_s_per_gib", "proxy CPU s/GiB"), ("errors", "failed")], "mb_s")
table("2. CONNECT bulk: one 1 GiB transfer through a tunnel", "connect_bulk",
      [("mb_s", "MB/s"), ("cpu_s_per_gib", "proxy CPU s/GiB"), ("errors", "failed")], "mb_s")
table("3. CONNECT setup rate, concurrency 32 (open, CONNECT, 200, 16 B echo, close)", "connect_setup",
      [("rate", "tunnels/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("cpu_us_per_op", "proxy CPU µs/tunnel"),
       ("errors", "errors")], "rate")
table("4. Memory: RSS idle (fresh process) and with 2,000 idle tunnels", "memory",
      [("idle_rss_kib", "idle RSS KiB"), ("tunnels_rss_kib", "RSS with tunnels KiB"),
       ("tunnels_open", "tunnels open"), ("kib_per_tunnel", "KiB/tunnel")], "kib_per_tunnel")

w("## Two-core socialgate (taskset -c 0,1; load generator shares core 1)\n")
w("| figure | one core | two cores |")
w("|---|---|---|")
w(f"| HTTP 100 B req/s | {fmt(med('http_small', 'socialgate', 'rps'))} | {fmt(med('http_small_2core', 'socialgate', 'rps'))} |")
w(f"| HTTP 100 B p99 µs | {fmt(med('http_small', 'socialgate', 'p99_us'))} | {fmt(med('http_small_2core', 'socialgate', 'p99_us'))} |")
w(f"| CONNECT setups/s | {fmt(med('connect_setup', 'socialgate', 'rate'))} | {fmt(med('connect_setup_2core', 'socialgate', 'rate'))} |")
w("")

# Targets from issue 6.
w("## Targets (issue 6)\n")
w("| target | measured | met |")
w("|---|---|---|")


def peers(fig, metric):
    return [v for v in (med(fig, t, metric) for t in ("squid", "tinyproxy")) if v is not None]


def check(label, value_text, ok):
    w(f"| {label} | {value_text} | {'—' if ok is None else ('yes' if ok else '**no**')} |")


sg = med("http_small", "socialgate", "rps")
sq = med("http_small", "squid", "rps")
best = max(peers("http_small", "rps"), default=None)
check("HTTP 100 B ≥ 2× Squid req/s", ratio(sg, sq), None if sg is None or sq is None else sg >= 2 * sq)
check("HTTP 100 B ≥ 1.5× best peer", ratio(sg, best), None if sg is None or best is None else sg >= 1.5 * best)
p99 = med("http_small", "socialgate", "p99_us")
pp = peers("http_small", "p99_us")
check("HTTP 100 B p99 below every peer", f"{fmt(p99)} µs vs {', '.join(fmt(x) for x in pp) or '—'}",
      None if p99 is None or not pp else all(p99 < x for x in pp))
sg = med("http_large", "socialgate", "rps")
best = max(peers("http_large", "rps"), default=None)
check("HTTP 64 KiB ≥ 1.5× best peer", ratio(sg, best), None if sg is None or best is None else sg >= 1.5 * best)
sg = med("http_download", "socialgate", "mb_s")
best = max(peers("http_download", "mb_s"), default=None)
check("HTTP 1 GiB download ≥ 1.5× best peer", ratio(sg, best), None if sg is None or best is None else sg >= 1.5 * best)
sg = med("connect_bulk", "socialgate", "mb_s")
di = med("connect_bulk", "direct", "mb_s")
best = max(peers("connect_bulk", "mb_s"), default=None)
check("CONNECT bulk ≥ 0.9× direct", ratio(sg, di), None if sg is None or di is None else sg >= 0.9 * di)
check("CONNECT bulk never below a peer", ratio(sg, best), None if sg is None or best is None else sg >= best)
sg = med("connect_setup", "socialgate", "rate")
sq = med("connect_setup", "squid", "rate")
best = max(peers("connect_setup", "rate"), default=None)
check("CONNECT setup ≥ 2× Squid", ratio(sg, sq), None if sg is None or sq is None else sg >= 2 * sq)
check("CONNECT setup above every peer", ratio(sg, best), None if sg is None or best is None else sg > best)
kib = med("memory", "socialgate", "kib_per_tunnel")
check("≤ 8 KiB per idle tunnel", f"{fmt(kib)} KiB", None if kib is None else kib <= 8)
idle = med("memory", "socialgate", "idle_rss_kib")
sqidle = med("memory", "squid", "idle_rss_kib")
check("idle RSS ≤ Squid's", f"{fmt(idle)} vs {fmt(sqidle)} KiB", None if idle is None or sqidle is None else idle <= sqidle)
w("")
print("\n".join(out))
