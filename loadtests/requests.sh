#!/usr/bin/env bash
# The cost of one authenticated request (issue 19): `GET /api/v1/tenants/{id}` (the access
# decision, one tenant read) and `GET /api/v1/me` (the session check, the profile) at 1, 8
# and 32 clients from wrk (a C load generator, like pgbench a light client), with
# `pgbench -S` on the same cluster as the reference, in the same run. With PROFILE=1 it
# also samples `balance serve` and the database under load (perf, cpu-clock) and counts
# the server's database round trips per request (strace). Not run in CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-requests
seconds=${BENCH_SECONDS:-10}
port=8183
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; ops/pg destroy >/dev/null 2>&1 || true; }
trap cleanup EXIT
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null
ops/pg up
eval "$(ops/pg env)"
# BALANCE_BIN: a binary to measure instead of this tree's (e.g. a copy of an earlier build,
# for an A/B in one run). The same packages as the other benchmarks: one feature set.
bin=${BALANCE_BIN:-$CARGO_TARGET_DIR/release/balance}
[ -n "${BALANCE_BIN:-}" ] || cargo build --release -q -p balance -p loadtests
"$bin" migrate
data=$(mktemp -d)
BALANCE_LISTEN=127.0.0.1:$port BALANCE_DATA_DIR="$data" BALANCE_LOG=warn \
    "$bin" serve &
server=$!
base=http://127.0.0.1:$port
for _ in $(seq 50); do curl -fs "$base/ready" >/dev/null && break; sleep 0.2; done

email="bench-$RANDOM$RANDOM@example.com"
curl -fs -X POST "$base/api/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" >/dev/null
token=$(curl -fs -X POST "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
tenant=$(curl -fs -X POST "$base/api/v1/tenants" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" -d '{"name":"Bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -fs "$base/api/v1/tenants/$tenant" -H "authorization: Bearer $token" >/dev/null
curl -fs "$base/api/v1/me" -H "authorization: Bearer $token" >/dev/null

load() { # path clients
    local threads=$(( $2 < 2 ? $2 : 2 ))
    wrk -t "$threads" -c "$2" -d "${seconds}s" --latency -H "authorization: Bearer $token" "$base$1" \
        | awk -v p="$1" -v c="$2" '
            /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF}
            /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
            END {printf "GET %-24s %2d clients: %8.0f requests/s  p50 %8s  p99 %8s%s\n", p, c, rps, p50, p99, (bad ? "  NON-2xx: " bad : "")}'
}
echo "== balance serve (release), wrk, ${seconds} s each"
for clients in 1 8 32; do
    load "/api/v1/tenants/$tenant" "$clients"
    load /api/v1/me "$clients"
done

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
