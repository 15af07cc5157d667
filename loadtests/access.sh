#!/usr/bin/env bash
# The access layer (issue 14): the in-process authorization decision with 10,000 tenants,
# 100,000 memberships and 1,000 custom roles, the policy state's memory, and an
# authenticated tenant-scoped GET through a custom role against `balance serve` (release),
# with pgbench -S on the same cluster as the reference. Not run in CI.
set -euo pipefail
# Benchmarks measure the platform, not the free plan's limits.
export BALANCE_PLANS='{"free": {"limits": {"members": null, "bank_connections": null, "transactions_per_month": null}}}'
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-access
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; ops/pg destroy >/dev/null 2>&1 || true; }
trap cleanup EXIT
ops/pg up
eval "$(ops/pg env)"
cargo build --release -q -p balance -p loadtests
"$CARGO_TARGET_DIR/release/balance" migrate
data=$(mktemp -d)
BALANCE_LISTEN=127.0.0.1:8182 BALANCE_DATA_DIR="$data" BALANCE_LOG=warn \
BALANCE_RATE_LIMITS="login_ip=1000000/min,login_account=1000000/min,signup_ip=1000000/min,user=100000000/min,api_key=100000000/min" \
    "$CARGO_TARGET_DIR/release/balance" serve &
server=$!
for _ in $(seq 50); do curl -fs http://127.0.0.1:8182/ready >/dev/null && break; sleep 0.2; done
BALANCE_BENCH_URL=http://127.0.0.1:8182 "$CARGO_TARGET_DIR/release/access_bench"
echo "server RSS after the run: $(ps -o rss= -p "$server") KiB"

echo "== reference: pgbench -S (select-only, scale 10) on the same cluster"
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
"$bindir/pgbench" -i -q -s 10 "$BALANCE_PG_SUPERUSER_URL" >/dev/null 2>&1
for clients in 1 8 32; do
    "$bindir/pgbench" -S -n -T 10 -c "$clients" -j "$([ "$clients" -gt 2 ] && echo 2 || echo "$clients")" "$BALANCE_PG_SUPERUSER_URL" 2>/dev/null \
        | grep -E "latency average|tps = " | sed "s/^/clients=$clients  /"
done
rm -rf "$data"
