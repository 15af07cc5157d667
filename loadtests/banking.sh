#!/usr/bin/env bash
# Bank sync end to end (issue 23, item 8): ROWS transactions (default 10,000) synced from the
# Plaid stand-in in pages of 500, next to the same rows imported as CSV on the same cluster
# in the same run, and a re-sync of the same data that must find everything present.
# Not run in CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-banking
cleanup() { [ -n "${KEEP:-}" ] || ops/pg destroy >/dev/null 2>&1 || true; }
trap cleanup EXIT
ops/pg up >/dev/null
eval "$(ops/pg env)"
export BALANCE_TEST_PG_SUPERUSER_URL="$BALANCE_PG_SUPERUSER_URL"
export BALANCE_TEST_PG_OWNER_URL="$BALANCE_DATABASE_OWNER_URL"
export BALANCE_TEST_PG_RUNTIME_URL="$BALANCE_DATABASE_URL"
cargo build --release -q -p loadtests --bin bank_sync
for run in $(seq "${RUNS:-3}"); do
  echo "-- run $run"
  "$CARGO_TARGET_DIR/release/bank_sync"
done
