#!/usr/bin/env bash
# Budgets (issue 25, item 7): evaluating every budget of a tenant with ROWS transactions
# (default 100,000) in the period and 50 budgets, and one budget's progress (p50/p99), next
# to a plain SELECT sum(amount) over the same rows in the same run. Not run in CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-budgets
cleanup() { [ -n "${KEEP:-}" ] || ops/pg destroy >/dev/null 2>&1 || true; }
trap cleanup EXIT
ops/pg up >/dev/null
eval "$(ops/pg env)"
export BALANCE_TEST_PG_SUPERUSER_URL="$BALANCE_PG_SUPERUSER_URL"
export BALANCE_TEST_PG_OWNER_URL="$BALANCE_DATABASE_OWNER_URL"
export BALANCE_TEST_PG_RUNTIME_URL="$BALANCE_DATABASE_URL"
cargo build --release -q -p loadtests --bin budgets_bench
"$CARGO_TARGET_DIR/release/budgets_bench"
