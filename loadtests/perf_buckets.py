#!/usr/bin/env python3
"""Where one request's CPU goes: buckets the samples of a `perf record -a` profile (taken
by loadtests/requests.sh with PROFILE=1) by process, and within `balance serve` by what
the symbol belongs to. Reads `perf report --stdio --no-children -g none --sort comm,dso,sym`
on stdin; prints shares of all samples."""

import re
import sys

BUCKETS = [  # first match wins; patterns on the symbol (or the dso for [k] kernel code)
    ("kernel: TCP/IP, syscalls, scheduling", r"^\[k\]"),
    ("allocator and memcpy", r"malloc|free|_int_|memmove|memcpy|memset|memcmp|realloc|unlink_chunk|cfree|consolidate|tcache"),
    ("sqlx: protocol, encode/decode", r"sqlx|PgConnection|PgRow|postgres::"),
    ("HTTP: hyper, poem (parse, route, write)", r"hyper|poem|http::|httparse|h1::"),
    ("JSON (serde_json)", r"serde_json|serde::"),
    ("JWT (HS256, base64)", r"jsonwebtoken|Jwt|base64|sha2|hmac|Sha256|compress256"),
    ("tracing, request context, metrics", r"tracing|RequestContext|prometheus|metrics|Instrumented"),
    ("tokio runtime and futures", r"tokio|futures|mio|parking_lot|std::sync|Waker|park"),
    ("access decision and services", r"access::|identity::|tenancy::|kernel::"),
]

def main():
    total = 0.0
    procs = {}
    buckets = {name: 0.0 for name, _ in BUCKETS}
    other = 0.0
    for line in sys.stdin:
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+(\[[k.]\])\s+(.*)", line)
        if not m:
            continue
        share, comm, dso, kind, sym = m.groups()
        share = float(share)
        total += share
        proc = "balance serve" if comm in ("tokio-rt-worker", "balance") or comm.startswith("balance") else comm
        procs[proc] = procs.get(proc, 0.0) + share
        if proc != "balance serve":
            continue
        text = f"{kind} {sym}"
        for name, pattern in BUCKETS:
            if (kind == "[k]" and name.startswith("kernel")) or (kind != "[k]" and re.search(pattern, sym)):
                buckets[name] += share
                break
        else:
            other += share
    print("share of all samples, by process:")
    for proc, share in sorted(procs.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {share:6.1f}%  {proc}")
    serve = procs.get("balance serve", 0.0)
    print(f"within balance serve ({serve:.1f}% of all samples), by what the code is:")
    for name, share in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"  {share:6.1f}%  {name}")
    print(f"  {other:6.1f}%  other")

main()
