#!/usr/bin/env bash
# The cost of one authenticated request (issue 19): `GET /api/v1/tenants/{id}` (the access
# decision, one tenant read) and `GET /api/v1/me` (the session check, the profile) at 1, 8
# and 32 clients from wrk (a C load generator, like pgbench a light client), with
# `pgbench -S` on the same cluster as the reference, in the same run. With PROFILE=1 it
# also samples `balance serve` and the database under load (perf, cpu-clock) and counts
# the server's database round trips per request (strace). Not run in CI.
set -euo pipefail
# Benchmarks measure the platform, not the free plan's limits.
export BALANCE_PLANS='{"free": {"limits": {"members": null, "bank_connections": null, "transactions_per_month": null}}}'
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-requests
seconds=${BENCH_SECONDS:-10}
port=8183
server=""
servers=()
cleanup() { for p in "${servers[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; ops/pg destroy >/dev/null 2>&1 || true; }
trap cleanup EXIT
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null
ops/pg up
eval "$(ops/pg env)"
# BALANCE_BIN: a binary to measure instead of this tree's; BALANCE_BIN_B: a second one (an
# earlier build, say), served at the same time on the same database and loaded in turn
# with the first (A B A B …, BENCH_ROUNDS rounds, default 3), so that drift of the
# machine's speed hits both alike; the medians and A/B are printed. BENCH_POOL_B: B's
# BALANCE_DATABASE_POOL_SIZE (the same binary twice then compares pool sizes). The same
# packages as the other benchmarks are built: one feature set.
bin=${BALANCE_BIN:-$CARGO_TARGET_DIR/release/balance}
bin_b=${BALANCE_BIN_B:-}
rounds=${BENCH_ROUNDS:-$([ -n "$bin_b" ] && echo 3 || echo 1)}
[ -n "${BALANCE_BIN:-}" ] || cargo build --release -q -p balance -p loadtests
"$bin" migrate
data=$(mktemp -d)
serve() { # binary port [pool size]
    # One public URL for both: tokens name it as issuer and audience.
    BALANCE_DATABASE_POOL_SIZE=${3:-${BALANCE_DATABASE_POOL_SIZE:-20}} BALANCE_LISTEN=127.0.0.1:$2 BALANCE_PUBLIC_URL=http://127.0.0.1:$port BALANCE_DATA_DIR="$data" \
        BALANCE_LOG=warn BALANCE_RATE_LIMITS="user=100000000/min,api_key=100000000/min" "$1" serve &
    servers+=($!)
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$2/ready" >/dev/null && break; sleep 0.2; done
}
serve "$bin" "$port"
server=${servers[0]}
[ -z "$bin_b" ] || serve "$bin_b" $((port + 1)) "${BENCH_POOL_B:-}"
base=http://127.0.0.1:$port

email="bench-$RANDOM$RANDOM@example.com"
curl -fs -X POST "$base/api/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" >/dev/null
token=$(curl -fs -X POST "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
tenant=$(curl -fs -X POST "$base/api/v1/tenants" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" -d '{"name":"Bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for p in "$port" $([ -z "$bin_b" ] || echo $((port + 1))); do
    curl -fs "http://127.0.0.1:$p/api/v1/tenants/$tenant" -H "authorization: Bearer $token" >/dev/null
    curl -fs "http://127.0.0.1:$p/api/v1/me" -H "authorization: Bearer $token" >/dev/null
done

results=$data/results
load() { # label port path clients
    local threads=$(( $4 < 2 ? $4 : 2 )) name=$3
    [ "$3" = /api/v1/me ] || name="/api/v1/tenants/{id}"
    wrk -t "$threads" -c "$4" -d "${seconds}s" --latency -H "authorization: Bearer $token" "http://127.0.0.1:$2$3" \
        | awk -v l="$1" -v p="$name" -v c="$4" '
            function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
            /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF}
            /^ +50%/ {p50=us($2)} /^ +99%/ {p99=us($2)}
            END {printf "%s GET %-22s %2d clients: %7.0f requests/s  p50 %7.0f µs  p99 %7.0f µs%s\n", l, p, c, rps, p50, p99, (bad ? "  NON-2xx: " bad : "")}' \
        | tee -a "$results"
}
echo "== balance serve (release), wrk, ${seconds} s each${bin_b:+, A = $bin, B = $bin_b, $rounds rounds}"
for clients in ${BENCH_CLIENTS:-1 8 32}; do
    for path in "/api/v1/tenants/$tenant" /api/v1/me; do
        for _ in $(seq "$rounds"); do
            load A "$port" "$path" "$clients"
            [ -z "$bin_b" ] || load B $((port + 1)) "$path" "$clients"
        done
    done
done
if [ -n "$bin_b" ]; then
    echo "== medians over $rounds rounds"
    python3 - "$results" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w) GET (\S+) +(\d+) clients: +(\d+) requests/s +p50 +(\d+) µs +p99 +(\d+) µs", line)
    if m:
        who, path, c, rps, p50, p99 = m.groups()
        runs.setdefault((path, int(c)), {}).setdefault(who, []).append((int(rps), int(p50), int(p99)))
for (path, c), r in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    med = {w: [statistics.median(x[i] for x in v) for i in range(3)] for w, v in r.items()}
    a, b = med["A"], med["B"]
    print(f"GET {path:<22} {c:>2} clients: A {a[0]:>6.0f}/s p50 {a[1]:>5.0f} µs p99 {a[2]:>6.0f} µs | B {b[0]:>6.0f}/s p50 {b[1]:>5.0f} µs p99 {b[2]:>6.0f} µs | A/B throughput {a[0] / b[0]:.2f}")
PY
fi

echo "== reference: pgbench -S (select-only, scale 10) on the same cluster"
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
"$bindir/pgbench" -i -q -s 10 "$BALANCE_PG_SUPERUSER_URL" >/dev/null 2>&1
for clients in 1 8 32; do
    "$bindir/pgbench" -S -n -T "$seconds" -c "$clients" -j "$([ "$clients" -gt 2 ] && echo 2 || echo "$clients")" "$BALANCE_PG_SUPERUSER_URL" 2>/dev/null \
        | awk -v c="$clients" '/tps = / {tps=$3} /latency average/ {lat=$4} END {printf "pgbench -S %2d clients: %8.0f tps  average %s ms\n", c, tps, lat}'
done

if [ "${PROFILE:-0}" = 1 ]; then
    echo "== round trips: the server's writes to the database per request (strace, 200 requests each)"
    for path in "/api/v1/tenants/$tenant" /api/v1/me; do
        out=$(mktemp)
        strace -f -qq -e trace=sendto,write,writev -e signal=none -p "$server" -o "$out" &
        tracer=$!
        sleep 1
        for _ in $(seq 200); do curl -fs "$base$path" -H "authorization: Bearer $token" >/dev/null; done
        sleep 0.5
        kill "$tracer"; wait "$tracer" 2>/dev/null || true
        # The database socket is the server's only peer that gets `sendto`s besides clients'
        # responses (written with writev/write by hyper): count sendto per request.
        echo "GET $path: $(grep -c 'sendto(' "$out") sendto, $(grep -cE '^[0-9]+ +(write|writev)\(' "$out") write/writev over 200 requests"
        rm -f "$out"
    done
    echo "== profile: 8 clients on GET /tenants/{id}, perf cpu-clock sampling of the whole machine"
    perf record -q -e cpu-clock -F 1999 -a -g -o "$data/perf.data" -- \
        wrk -t 2 -c 8 -d "${seconds}s" -H "authorization: Bearer $token" "$base/api/v1/tenants/$tenant" >/dev/null 2>&1
    cp "$data/perf.data" "${PROFILE_OUT:-/tmp/balance-requests.perf.data}"
    report() { perf report -i "$data/perf.data" --stdio --no-children -g none "$@" 2>/dev/null | grep -E '^ +[0-9]' || true; }
    report --sort comm | head -8
    echo "-- balance serve (its threads), by shared object"
    report --comms tokio-rt-worker,balance --sort dso | head -6
    echo "-- balance serve, top symbols"
    report --comms tokio-rt-worker,balance --sort sym | head -40
    echo "-- postgres, top symbols"
    report --comms postgres --sort sym | head -15
fi
rm -rf "$data"
