#!/usr/bin/env bash
# The ledger over HTTP at scale (issue 20, item 9). Seeds 5,000,000 transactions over 1,000
# tenants (the largest 1,000,000, in two accounts; terms, term counts, day deltas and
# balances written as the ledger writes them) and times, against `balance serve` (release)
# with wrk:
#   - an authenticated list of 50 with three filters (account, category, date range) at
#     1, 8 and 32 clients, next to `pgbench -S` on the same cluster in the same run;
#   - `q` per term class at 1 client (p50/p99);
#   - a 1,000,000-row CSV export: rows/s and the server's peak resident memory.
# Not run in CI; takes about 15 minutes (the seed alone reports its time).
#
#   loadtests/ledger.sh                     # BIG=200000 TOTAL=1000000 for a quick look
set -euo pipefail
# Benchmarks measure the platform, not the free plan's limits.
export BALANCE_PLANS='{"free": {"limits": {"members": null, "bank_connections": null, "transactions_per_month": null}}}'
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-ledger-http
BIG=${BIG:-1000000}
TOTAL=${TOTAL:-5000000}
TENANTS=${TENANTS:-1000}
seconds=${BENCH_SECONDS:-10}
port=8185
servers=()
# KEEP=1 leaves the seeded cluster for the next run; REUSE=1 (with a kept cluster) skips the seed.
cleanup() { for p in "${servers[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; [ "${KEEP:-0}" = 1 ] && ops/pg down >/dev/null 2>&1 || ops/pg destroy >/dev/null 2>&1 || true; }
trap cleanup EXIT
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null
ops/pg up >/dev/null
eval "$(ops/pg env)"
bin=${BALANCE_BIN:-$CARGO_TARGET_DIR/release/balance}
[ -n "${BALANCE_BIN:-}" ] || cargo build --release -q -p balance -p loadtests
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
psql() { "$bindir/psql" -qtA -v ON_ERROR_STOP=1 "$@"; }
# The seed runs as the superuser, in the platform's database.
super_db="${BALANCE_PG_SUPERUSER_URL%/postgres}/balance"
"$bin" migrate >/dev/null
data=$(mktemp -d)
BALANCE_LISTEN=127.0.0.1:$port BALANCE_PUBLIC_URL=http://127.0.0.1:$port BALANCE_DATA_DIR="$data" \
    BALANCE_LOG=warn BALANCE_RATE_LIMITS="user=100000000/min,api_key=100000000/min" "$bin" serve &
server=$!
servers+=($server)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
base=http://127.0.0.1:$port/api/v1
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

seed() {
# The largest tenant is made through the API (an owner, the default categories, two
# accounts); the other tenants and every transaction are written in bulk below.
email="bench-$RANDOM$RANDOM@example.com"
curl -fs -X POST "$base/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" >/dev/null
token=$(curl -fs -X POST "$base/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\"}" | json '["access_token"]')
auth="authorization: Bearer $token"
tenant=$(curl -fs -X POST "$base/tenants" -H 'content-type: application/json' -H "$auth" -d '{"name":"Bench"}' | json '["id"]')
account() {
    curl -fs -X POST "$base/tenants/$tenant/accounts" -H 'content-type: application/json' -H "$auth" \
        -d "{\"name\":\"$1\",\"kind\":\"checking\",\"currency\":\"EUR\",\"opening_date\":\"2019-12-31\"}" | json '["id"]'
}
a1=$(account Operating)
a2=$(account Reserve)
category=$(curl -fs "$base/tenants/$tenant/categories?limit=100" -H "$auth" | json '["data"][5]["id"]')

echo "== seeding $TOTAL transactions over $TENANTS tenants (largest: $BIG)"
start=$(date +%s)
# One session per core, each a share of the tenants; foreign keys and the indexes are
# checked and built once at the end (the rows are consistent by construction), which is
# what a bulk load does.
psql "$super_db" <<SQL
ALTER TABLE transactions SET (autovacuum_enabled = off);
ALTER TABLE transaction_terms SET (autovacuum_enabled = off);
-- The secondary indexes as the migrations made them, to build again after the load.
CREATE TABLE bench_indexes AS
  SELECT c.relname AS tab, pg_get_indexdef(i.indexrelid) AS def
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
  WHERE c.relname IN ('transactions', 'transaction_terms') AND NOT i.indisprimary;
DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT ix.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_class ix ON ix.oid = i.indexrelid
           WHERE c.relname IN ('transactions', 'transaction_terms') AND NOT i.indisprimary LOOP
    EXECUTE format('DROP INDEX %I', r.relname);
  END LOOP;
END \$\$;
ALTER TABLE transactions DROP CONSTRAINT transactions_pkey CASCADE;
ALTER TABLE transaction_terms DROP CONSTRAINT transaction_terms_pkey;
INSERT INTO tenants (id, name)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(k), 12, '0'))::uuid, 'Tenant ' || k
FROM generate_series(1, $TENANTS - 1) k;
INSERT INTO accounts (tenant_id, id, name, kind, currency, opening_date, balance, pending_balance)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(k), 12, '0'))::uuid,
       ('00000000-0000-7000-9000-' || lpad(to_hex(k), 12, '0'))::uuid,
       'Operating', 'checking', 'EUR', '2019-12-31', 0, 0
FROM generate_series(1, $TENANTS - 1) k;
CREATE TABLE bench_names AS
  SELECT n, 'merchant' || chr(97 + n % 26) || chr(97 + (n / 26) % 26) || chr(97 + (n / 676) % 26) AS word
  FROM generate_series(0, 19999) n;
CREATE TABLE bench_categories AS
  SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM categories WHERE tenant_id = '$tenant';
SQL
small=$(( (TOTAL - BIG) / (TENANTS - 1) ))
extra=$(( (TOTAL - BIG) - small * (TENANTS - 1) ))
ncat=$(psql "$super_db" -c "SELECT count(*) FROM bench_categories")
# seed <tenant> <account> <other account or empty> <rows>: rows over 2,000 days (2020-01-01
# on), merchants Zipf-like from 20,000 names, every tenth uncategorised, a rare word in 5
# rows and a word in the oldest 25,000 rows of the largest tenant; each row's terms as
# ledger::domain::terms makes them (folded words of two or more letters without digits:
# the texts here hold no repeated word) in the same statement.
seed_sql() {
    cat <<SQL
SET session_replication_role = replica;
SET synchronous_commit = off;
WITH rows AS (
  INSERT INTO transactions (tenant_id, id, account_id, date, amount, currency, merchant, description,
                            status, category_id, source, created_at, updated_at)
  SELECT '$1', gen_random_uuid(),
         CASE WHEN '$3' <> '' AND (d.i / 7) % 2 = 1 THEN nullif('$3', '')::uuid ELSE '$2'::uuid END,
         date '2020-01-01' + (d.i * 2000::bigint / $4)::int,
         CASE WHEN d.i % 17 = 0 THEN 250000 + d.i % 1000 ELSE -(d.i % 10000) - 1 END, 'EUR',
         initcap(n.word) || ' Shop',
         'CARD PAYMENT REF' || d.i
           || CASE WHEN d.i % 200000 = 7 THEN ' zyzzyva' ELSE '' END
           || CASE WHEN d.i < 25000 AND '$3' <> '' THEN ' oldvendor' ELSE '' END,
         CASE WHEN d.i % 97 = 0 THEN 'pending' ELSE 'posted' END,
         CASE WHEN d.i % 10 = 0 OR '$3' = '' THEN NULL ELSE c.id END,
         'import', now(), now()
  FROM (SELECT i, least(floor(20000 * power(random(), 3))::int, 19999) AS k
        FROM generate_series(0, $4 - 1) i) d
  JOIN bench_names n ON n.n = d.k
  LEFT JOIN bench_categories c ON c.n = d.i % $ncat
  RETURNING tenant_id, id, account_id, date, merchant, description)
INSERT INTO transaction_terms (tenant_id, term, date, transaction_id, account_id)
SELECT r.tenant_id, w, r.date, r.id, r.account_id
FROM rows r, unnest(string_to_array(lower(r.merchant || ' ' || r.description), ' ')) w
WHERE length(w) >= 2 AND w !~ '[0-9]';
SQL
}
# Two sessions of about the same size: the largest tenant and the first small ones, the rest.
split=$(( (TOTAL / 2 - BIG) / small ))
[ "$split" -ge 0 ] || split=0
small_tenants() { # first last
    for k in $(seq "$1" "$2"); do
        hex=$(printf '%012x' "$k")
        seed_sql "00000000-0000-7000-8000-$hex" "00000000-0000-7000-9000-$hex" "" $((small + (k <= extra ? 1 : 0)))
    done
}
{ seed_sql "$tenant" "$a1" "$a2" "$BIG"; small_tenants 1 "$split"; } | psql "$super_db" &
seeders=($!)
small_tenants $((split + 1)) $((TENANTS - 1)) | psql "$super_db" &
seeders+=($!)
wait "${seeders[@]}"
echo "-- rows and terms written in $(( $(date +%s) - start )) s"
# Then the keys and indexes, the day deltas and balances as the ledger keeps them.
psql "$super_db" <<SQL &
SET maintenance_work_mem = '1GB';
ALTER TABLE transactions ADD PRIMARY KEY (tenant_id, id);
DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT def FROM bench_indexes WHERE tab = 'transactions' LOOP EXECUTE r.def; END LOOP;
END \$\$;
ALTER TABLE transaction_splits ADD FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id);
INSERT INTO account_days (tenant_id, account_id, day, posted, pending)
SELECT tenant_id, account_id, date, sum(amount) FILTER (WHERE status = 'posted'), sum(amount)
FROM transactions GROUP BY 1, 2, 3;
UPDATE accounts a SET balance = a.opening_balance + s.posted, pending_balance = a.opening_balance + s.pending
FROM (SELECT tenant_id, account_id, sum(posted) AS posted, sum(pending) AS pending
      FROM account_days GROUP BY 1, 2) s
WHERE a.tenant_id = s.tenant_id AND a.id = s.account_id;
ALTER TABLE transactions RESET (autovacuum_enabled);
SQL
seeders=($!)
psql "$super_db" <<SQL &
SET maintenance_work_mem = '1GB';
ALTER TABLE transaction_terms ADD PRIMARY KEY (tenant_id, term, date, transaction_id);
DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT def FROM bench_indexes WHERE tab = 'transaction_terms' LOOP EXECUTE r.def; END LOOP;
END \$\$;
INSERT INTO transaction_term_counts (tenant_id, term, n)
SELECT tenant_id, term, count(*) FROM transaction_terms GROUP BY 1, 2;
ALTER TABLE transaction_terms RESET (autovacuum_enabled);
SQL
seeders+=($!)
wait "${seeders[@]}"
psql "$super_db" -c "DROP TABLE bench_names, bench_categories, bench_indexes" -c "VACUUM ANALYZE"
echo "seeded in $(( $(date +%s) - start )) s: $(psql "$super_db" -c "SELECT count(*) FROM transactions") transactions, $(psql "$super_db" -c "SELECT count(*) FROM transaction_terms") terms, $(psql "$super_db" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")"

}
state=.data/pg/$BALANCE_PG_CLUSTER.bench
if [ "${REUSE:-0}" = 1 ] && [ -f "$state" ]; then
    . "$state"
    token=$(curl -fs -X POST "$base/auth/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\"}" | json '["access_token"]')
    auth="authorization: Bearer $token"
    echo "== reusing the seeded cluster ($(psql "${BALANCE_PG_SUPERUSER_URL%/postgres}/balance" -c "SELECT count(*) FROM transactions") transactions)"
else
seed
    printf "email=%s\ntenant=%s\na1=%s\na2=%s\ncategory=%s\n" "$email" "$tenant" "$a1" "$a2" "$category" >"$state"
fi
results=$data/results
load() { # label clients url
    local threads=$(( $2 < 2 ? $2 : 2 ))
    wrk -t "$threads" -c "$2" -d "${seconds}s" --latency -H "$auth" "$3" \
        | awk -v l="$1" -v c="$2" '
            function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
            /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF}
            /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)}
            END {printf "%-34s %2d clients: %7.0f requests/s  p50 %7.2f ms  p99 %7.2f ms%s\n", l, c, rps, p50, p99, (bad ? "  NON-2xx: " bad : "")}' \
        | tee -a "$results"
}
list="$base/tenants/$tenant/transactions?limit=50&account_id=$a1&category_id=$category&from=2021-01-01&to=2023-06-30"
curl -fs "$list" -H "$auth" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("-- the list answers", len(d["data"]), "rows; more:", d["has_more"])'
# The same without the category (1 row in 22 has it, so the first asks for about 1,800
# rows to find 50): account + date range + status.
list2="$base/tenants/$tenant/transactions?limit=50&account_id=$a1&status=posted&from=2021-01-01&to=2023-06-30"
echo "== list of 50, ${seconds} s each"
for clients in 1 8 32; do load "account + category + dates" "$clients" "$list"; done
for clients in 1 8 32; do load "account + status + dates" "$clients" "$list2"; done
echo "== reference: pgbench -S (select-only, scale 10) on the same cluster"
"$bindir/pgbench" -i -q -s 10 "$BALANCE_PG_SUPERUSER_URL" >/dev/null 2>&1
for clients in 1 8 32; do
    "$bindir/pgbench" -S -n -T "$seconds" -c "$clients" -j "$([ "$clients" -gt 2 ] && echo 2 || echo "$clients")" "$BALANCE_PG_SUPERUSER_URL" 2>/dev/null \
        | awk -v c="$clients" '/tps = / {tps=$3} /latency average/ {lat=$4} END {printf "pgbench -S %2d clients: %8.0f tps  average %s ms\n", c, tps, lat}'
done
echo "== q over HTTP in the largest tenant ($BIG rows), newest 50, 1 client"
for class in "in every row:card" "common:shop" "one merchant:merchantbaa" "rare:zyzzyva" "absent:qqqq" \
             "2-letter prefix:me" "two words:card merchantc" "old, above the threshold:oldvendor"; do
    word=${class#*:}
    load "q=${word} (${class%%:*})" 1 "$base/tenants/$tenant/transactions?limit=50&q=${word// /%20}"
done
echo "== export of the largest tenant ($BIG rows and their splits) as CSV"
echo 5 >"/proc/$server/clear_refs" 2>/dev/null || true
before=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
t0=$(date +%s.%N)
bytes=$(curl -fs "$base/tenants/$tenant/transactions/export?format=csv" -H "$auth" | tee >(wc -l >"$data/lines") | wc -c)
t1=$(date +%s.%N)
after=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
lines=$(cat "$data/lines")
python3 -c "
s = $t1 - $t0; rows = $lines - 1
print(f'export: {rows:,} rows, {$bytes / 2**20:.0f} MiB in {s:.1f} s: {rows / s:,.0f} rows/s; server peak RSS {$before / 1024:.0f} MiB before, {$after / 1024:.0f} MiB during')"
rm -rf "$data"
