#!/usr/bin/env bash
# The ledger's search `q` at scale (issue 20, item 4): seeds one tenant with ROWS
# transactions (default 1,000,000; merchants drawn Zipf-like from 20,000 names, terms as
# the ledger writes them), then times the list statement the API runs for `q`, as the
# runtime role under row-level security, per term class: a word in every row, a common
# word, a rare word, an absent word and a two-letter prefix. pgbench -S on the same cluster
# is the reference. Not run in CI; takes a few minutes.
#
#   loadtests/ledger_search.sh            # ROWS=200000 loadtests/ledger_search.sh for a quick look
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-ledger
ROWS=${ROWS:-1000000}
SECONDS_PER_CLASS=${SECONDS_PER_CLASS:-10}
trap 'ops/pg destroy >/dev/null 2>&1 || true' EXIT
ops/pg up >/dev/null
eval "$(ops/pg env)"
bin=${BALANCE_BIN:-$CARGO_TARGET_DIR/debug/balance}
[ -x "$bin" ] || cargo build -q -p balance
"$bin" migrate >/dev/null
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
tenant=00000000-0000-7000-8000-000000000001
top=$(printf '\U10FFFF')
account=00000000-0000-7000-8000-0000000000a1

echo "== seeding $ROWS transactions"
start=$(date +%s)
"$bindir/psql" -q -v ON_ERROR_STOP=1 "$BALANCE_DATABASE_OWNER_URL" <<SQL
SET balance.tenant_id = '$tenant';
INSERT INTO tenants (id, name) VALUES ('$tenant', 'Bench');
INSERT INTO accounts (tenant_id, id, name, kind, currency, opening_date, balance, pending_balance)
VALUES ('$tenant', '$account', 'Operating', 'checking', 'EUR', '2020-01-01', 0, 0);
CREATE TEMP TABLE names AS
  SELECT n, 'merchant' || chr(97 + n % 26) || chr(97 + (n / 26) % 26) || chr(97 + (n / 676) % 26) || ' shop' AS name
  FROM generate_series(0, 19999) n;
INSERT INTO transactions (tenant_id, id, account_id, date, amount, currency, merchant, description, status, source)
SELECT '$tenant', gen_random_uuid(), '$account', date '2020-01-01' + (draws.i % 2000),
       -(draws.i % 10000) - 1, 'EUR',
       names.name,
       'CARD PAYMENT REF' || draws.i || CASE WHEN draws.i % 200000 = 7 THEN ' zyzzyva' ELSE '' END,
       'posted', 'import'
FROM (SELECT i, least(floor(20000 * power(random(), 3))::int, 19999) AS k
      FROM generate_series(1, $ROWS) i) draws
JOIN names ON names.n = draws.k;
INSERT INTO transaction_terms (tenant_id, term, date, transaction_id, account_id)
SELECT DISTINCT t.tenant_id, w, t.date, t.id, t.account_id
FROM transactions t,
     regexp_split_to_table(lower(coalesce(t.merchant, '') || ' ' || t.description), '[^a-z0-9]+') w
WHERE length(w) >= 2 AND w !~ '[0-9]';
INSERT INTO transaction_term_counts (tenant_id, term, n)
SELECT tenant_id, term, count(*) FROM transaction_terms GROUP BY 1, 2;
ANALYZE;
SQL
echo "seeded in $(( $(date +%s) - start )) s"

# What ledger::Ledger::rows_of runs for `q` (its other filters unset): the rarest word's
# row count from transaction_term_counts, then nothing (absent), the term-driven statement
# (rare: at most DRIVE_FROM_TERMS = 20,000 rows) or the date-walking one (common).
query() { # lo-array hi-array word
    local rows driven=""
    rows=$("$bindir/psql" -qtA "$BALANCE_DATABASE_URL" -c "BEGIN; SET LOCAL balance.tenant_id = '$tenant'; SELECT coalesce(sum(n), 0) FROM transaction_term_counts WHERE tenant_id = '$tenant' AND term >= '$3' AND term < '$3$top'; COMMIT;" | grep -E '^[0-9]+$')
    if [ "$rows" -le 20000 ]; then
        driven="AND t.id IN (SELECT d.transaction_id FROM transaction_terms d WHERE d.tenant_id = '$tenant' AND d.term >= '$3' AND d.term < '$3$top')"
    fi
    echo "-- rows using the word: $rows" >&2
    cat <<SQL
BEGIN;
SET LOCAL balance.tenant_id = '$tenant';
SELECT coalesce(sum(n), 0) FROM transaction_term_counts WHERE tenant_id = '$tenant' AND term >= '$3' AND term < '$3$top';
SELECT t.id, t.date, t.amount, t.merchant FROM transactions t
WHERE t.tenant_id = '$tenant' AND t.deleted_at IS NULL $driven
  AND NOT EXISTS (
    SELECT FROM unnest($1::text[], $2::text[]) AS w(lo, hi)
    WHERE NOT EXISTS (
      SELECT FROM transaction_terms x
      WHERE x.tenant_id = '$tenant' AND x.transaction_id = t.id AND x.term >= w.lo AND x.term < w.hi))
ORDER BY t.date DESC, t.id DESC LIMIT 51;
COMMIT;
SQL
}
run() { # class word
    local file log
    file=$(mktemp) && log=$(mktemp -d)
    query "ARRAY['$2']" "ARRAY['$2$top']" "$2" >"$file"
    (cd "$log" && "$bindir/pgbench" -n -f "$file" -T "$SECONDS_PER_CLASS" -c 1 -l "$BALANCE_DATABASE_URL" >/dev/null 2>&1) || true
    awk '{print $3/1000}' "$log"/pgbench_log.* | sort -n | awk -v class="$1" '
        {v[NR]=$1} END {if (NR==0) {print class ": no run"; exit}
        printf "%-22s runs %6d  p50 %8.2f ms  p99 %8.2f ms\n", class, NR, v[int(NR*0.5)+1], v[int(NR*0.99)+1]}'
    rm -rf "$file" "$log"
}
echo "== q under RLS as the runtime role, newest 50"
run "in every row (card)" card
run "common (shop)" shop
run "rare (zyzzyva)" zyzzyva
run "absent (qqqq)" qqqq
run "2-letter prefix (me)" me

echo "== reference: pgbench -S (select-only, scale 10) on the same cluster"
"$bindir/pgbench" -i -q -s 10 "$BALANCE_PG_SUPERUSER_URL" >/dev/null 2>&1
"$bindir/pgbench" -S -n -T 10 -c 1 -j 1 "$BALANCE_PG_SUPERUSER_URL" 2>/dev/null | grep -E "latency average|tps = " | sed "s/^/clients=1  /"
