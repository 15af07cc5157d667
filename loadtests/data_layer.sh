#!/usr/bin/env bash
# Benchmark of the row-scoped data layer (issue 9), with pgbench -S on the same cluster as
# the reference. Takes a few minutes (it loads 10,000,000 rows). Not run in CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench
trap 'ops/pg destroy >/dev/null 2>&1 || true' EXIT
ops/pg up
eval "$(ops/pg env)"
cargo build --release -q -p balance -p loadtests
"$CARGO_TARGET_DIR/release/balance" migrate
"$CARGO_TARGET_DIR/release/data_layer"

echo "== reference: pgbench -S (select-only, scale 10) on the same cluster"
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
"$bindir/pgbench" -i -q -s 10 "$BALANCE_PG_SUPERUSER_URL" >/dev/null 2>&1
for clients in 1 8; do
    "$bindir/pgbench" -S -n -T 15 -c "$clients" -j "$clients" "$BALANCE_PG_SUPERUSER_URL" 2>/dev/null \
        | grep -E "latency average|tps = " | sed "s/^/clients=$clients  /"
done
