#!/usr/bin/env python3
"""Writes a synthetic socialgate access log (JSON lines, SPEC 4) to stdout.

Usage: gen.py [RECORDS] [SEED]   (default 1,000,000 records, seed 1)

Deterministic for a seed: 12 departments, ~6,000 users (a fifth of the
records without a user, counted by client address), 6 services plus
uncategorised hosts, 30 days of timestamps in order, ~1% `auth` records.
"""
import json
import random
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
departments = ["sales", "engineering", "hr", "finance", "legal", "support", "marketing", "it", "ops", "research",
               "design", "default"]
services = [("facebook", "www.facebook.com"), ("twitter", "x.com"), ("linkedin", "www.linkedin.com"),
            ("youtube", "rr3---sn-abc.googlevideo.com"), ("tiktok", "www.tiktok.com"), ("reddit", "www.reddit.com")]
other = ["github.com", "docs.rs", "intranet.example.com", "news.example.org", "mail.example.com"]
actions = ["allow", "log", "block"]
start = 1_795_000_000  # 2026-11-18
span = 30 * 86400
out = sys.stdout
write = out.write
for i in range(n):
    t = start + (i * span) // n
    ms = rng.randrange(1000)
    ts = "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)), ms)
    d = rng.randrange(len(departments))
    u = rng.randrange(500)
    client = "10.%d.%d.%d" % (d, u // 200, u % 200 + 1)
    user = None if rng.random() < 0.2 else "user%d.%s" % (u, departments[d])
    if rng.random() < 0.6:
        service, host = services[rng.randrange(len(services))]
    else:
        service, host = None, other[rng.randrange(len(other))]
    auth = rng.random() < 0.01
    action = "block" if auth else actions[rng.randrange(3)]
    rec = {
        "ts": ts, "client": client, "user": user, "department": departments[d], "method": "CONNECT",
        "host": host, "port": 443, "url": None, "sni": host, "service": service,
        "rule": "auth" if auth else ("services." + service if service else "default"), "action": action,
        "status": 407 if auth else (403 if action == "block" else 200),
        "bytes_up": rng.randrange(200, 5000), "bytes_down": 0 if action == "block" else rng.randrange(0, 2_000_000),
        "duration_ms": rng.randrange(0, 60000), "closed_by": "proxy" if action == "block" else "client",
    }
    write(json.dumps(rec, separators=(",", ":")))
    write("\n")
