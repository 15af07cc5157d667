#!/usr/bin/env bash
# Categorization (issue 22, item 6): one tenant with 200 rules and 50,000 categorised
# transactions as history imports 100,000 uncategorised ones; the import's promotion queues
# `categorize.run`, which a separate `balance worker` (release) runs with the LLM off. Rows/s
# of that run, next to one `UPDATE` of the same rows' category in the same cluster (the
# write alone). Then the tenant grows to 1,000,000 transactions and `POST …/rules/test`
# (a preview walks every transaction) is timed sequentially: p50/p99, next to the
# database's own scan of the same rows with a substring filter. Not run in CI.
set -euo pipefail
# Benchmarks measure the platform, not the free plan's limits.
export BALANCE_PLANS='{"free": {"limits": {"members": null, "bank_connections": null, "transactions_per_month": null}}}'
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-categorize
HISTORY=${HISTORY:-50000}
ROWS=${ROWS:-100000}
TOTAL=${TOTAL:-1000000}
TESTS=${TESTS:-30}
port=8188
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; ops/pg destroy >/dev/null 2>&1 || true; rm -rf "${data:-}"; }
trap cleanup EXIT
ops/pg up >/dev/null
eval "$(ops/pg env)"
bin=${BALANCE_BIN:-$CARGO_TARGET_DIR/release/balance}
[ -n "${BALANCE_BIN:-}" ] || cargo build --release -q -p balance
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
db=${BALANCE_PG_SUPERUSER_URL%/postgres}/balance
sql() { "$bindir/psql" -qtAX -v ON_ERROR_STOP=1 "$db" "$@"; }
"$bin" migrate >/dev/null
data=$(mktemp -d)
export BALANCE_LISTEN=127.0.0.1:$port BALANCE_PUBLIC_URL=http://127.0.0.1:$port BALANCE_DATA_DIR="$data" BALANCE_LOG=${BALANCE_LOG:-warn,categorize=info}
"$bin" serve &
pids+=($!)
"$bin" worker >"$data/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
base=http://127.0.0.1:$port/api/v1
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "== $HISTORY history rows and $ROWS new ones, over 5,000 merchants"
python3 - "$HISTORY" "$ROWS" "$data" <<'PY'
import random, sys
history, rows, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(11)
words = ["cloud", "coffee", "air", "hotel", "office", "print", "legal", "tax", "ads", "fuel",
         "software", "studio", "market", "parts", "supply", "design", "food", "rail", "cab", "post"]
# Letters only: a merchant's distinguishing word has no digits (the merchant key drops
# words with digits as references).
names = [f"{words[i % 20].title()} {chr(65 + i // 20 % 26)}{chr(97 + i // 520 % 26)}{chr(97 + i % 7)} Ltd" for i in range(5000)]
def write(path, n, offset):
    with open(path, "w") as f:
        f.write("Date,Amount,Payee,Description\n")
        for i in range(n):
            day = f"2025-{1 + i * 12 // n:02d}-{1 + i % 28:02d}"
            name = names[min(int(5000 * random.random() ** 3), 4999)]
            f.write(f"{day},-{1 + random.randrange(50000) / 100:.2f},{name},CARD PAYMENT {name.upper()} REF{offset + i}\n")
write(f"{out}/history.csv", history, 0)
write(f"{out}/new.csv", rows, history)
with open(f"{out}/names.txt", "w") as f:
    f.write("\n".join(names))
PY

email="bench-$RANDOM$RANDOM@example.com"
curl -fs -X POST "$base/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" >/dev/null
token=$(curl -fs -X POST "$base/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\"}" | json '["access_token"]')
auth="authorization: Bearer $token"
tenant=$(curl -fs -X POST "$base/tenants" -H 'content-type: application/json' -H "$auth" -d '{"name":"Bench"}' | json '["id"]')
account=$(curl -fs -X POST "$base/tenants/$tenant/accounts" -H 'content-type: application/json' -H "$auth" \
    -d '{"name":"Operating","kind":"checking","currency":"EUR","opening_date":"2024-12-31"}' | json '["id"]')
import() { # file → import id, once completed
    local id
    id=$(curl -fs -X POST "$base/tenants/$tenant/imports" -H "$auth" -F "account_id=$account" -F "file=@$1" | json '["import_id"]')
    while :; do
        case $(curl -fs "$base/tenants/$tenant/imports/$id" -H "$auth" | json '["status"]') in
            queued | running) sleep 0.2 ;; completed) break ;; *) echo "import $1 failed" >&2; exit 1 ;;
        esac
    done
    echo "$id"
}
settled() { # waits until no categorize.run is queued or running
    while [ "$(sql -c "SELECT count(*) FROM jobs WHERE kind = 'categorize.run' AND status IN ('queued', 'running')")" != 0 ]; do sleep 0.2; done
}

echo "== the history: imported, then filed by 'a person' (one category per merchant)"
import "$data/history.csv" >/dev/null
settled
sql <<SQL
WITH leaves AS (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS n, count(*) OVER () AS total
    FROM categories WHERE tenant_id = '$tenant' AND kind = 'expense' AND parent_id IS NOT NULL)
UPDATE transactions t
SET category_id = l.id,
    categorization = jsonb_build_object('category_id', l.id, 'source', 'person', 'confidence', 1,
        'reasoning', 'Chosen by a person.', 'decided_at', now())
FROM leaves l
WHERE t.tenant_id = '$tenant' AND l.n = abs(hashtext(t.merchant)) % l.total;
SQL

echo "== 200 rules (merchant equals / contains / regex, amount ranges)"
python3 - "$data" "$base" "$tenant" "$token" <<'PY'
import json, sys, urllib.request
out, base, tenant, token = sys.argv[1:]
names = open(f"{out}/names.txt").read().split("\n")
def call(method, path, body=None):
    req = urllib.request.Request(f"{base}/tenants/{tenant}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
cats = [c["id"] for c in call("GET", "/categories?limit=200")["data"] if c["parent_id"]]
for i in range(200):
    name = names[i * 7 + 3]
    kinds = [
        {"field": "merchant", "op": "equals", "value": name},
        {"field": "merchant", "op": "contains", "value": name.split()[1]},
        {"field": "description", "op": "regex", "value": f"^CARD PAYMENT {name.split()[0].upper()} {name.split()[1].upper()}"},
        {"field": "merchant", "op": "starts_with", "value": name[:-4]},
    ]
    conditions = {"items": [kinds[i % 4]] + ([{"field": "amount", "op": "between", "min": -40000, "max": -100}] if i % 5 == 0 else [])}
    call("POST", "/rules", {"name": f"Rule {i}", "conditions": conditions, "actions": {"category_id": cats[i % len(cats)]}})
PY

echo "== categorising the $ROWS new rows (balance worker, release, LLM off)"
new=$(import "$data/new.csv")
settled
sql -c "SELECT round(extract(epoch FROM finished_at - started_at)::numeric, 2) AS seconds,
               round($ROWS / extract(epoch FROM finished_at - started_at))::bigint AS rows_per_s, status
        FROM jobs WHERE kind = 'categorize.run' AND payload -> 'import' ->> 'import_id' = '$new'" \
    | awk -F'|' '{printf "categorize.run over the import: %s s, %s rows/s (%s)\n", $1, $2, $3}'
grep '"categorization run"\|categorization run' "$data/worker.log" | tail -1 || true
sql -c "SELECT categorization ->> 'source' AS source, count(*) FROM transactions
        WHERE tenant_id = '$tenant' AND import_id = '$new' GROUP BY 1 ORDER BY 2 DESC" \
    | awk -F'|' '{printf "  %-12s %s\n", ($1 == "" ? "undecided" : $1), $2}'
echo "  approvals waiting: $(sql -c "SELECT count(*) FROM approvals WHERE tenant_id = '$tenant' AND status = 'pending'")"
echo "reference: one UPDATE of the same rows' category and categorization (the write alone)"
sql <<SQL | grep -i '^time' | tail -1
\timing on
UPDATE transactions SET category_id = category_id, categorization = coalesce(categorization, '{}'::jsonb) || '{"bench": 1}'
WHERE tenant_id = '$tenant' AND import_id = '$new';
SQL

echo "== the tenant grows to $TOTAL transactions (SQL seed, as the superuser)"
have=$(sql -c "SELECT count(*) FROM transactions WHERE tenant_id = '$tenant'")
sql <<SQL
INSERT INTO transactions (tenant_id, id, account_id, date, amount, currency, merchant, description, status, source)
SELECT '$tenant', gen_random_uuid(), '$account', date '2020-01-01' + (g % 1800), -(1 + g % 50000), 'EUR',
       'Seed merchant ' || (g % 20000), 'CARD PAYMENT SEED ' || g, 'posted', 'import'
FROM generate_series(1, $TOTAL - $have) AS g;
ANALYZE transactions;
SQL
echo "rules/test × $TESTS at $(sql -c "SELECT count(*) FROM transactions WHERE tenant_id = '$tenant'") transactions"
body='{"rule":{"conditions":{"items":[{"field":"merchant","op":"contains","value":"studio"},{"field":"amount","op":"sign","sign":"negative"}]},"actions":{"tags":["x"]}},"limit":20}'
for _ in $(seq "$TESTS"); do
    curl -fs -o /dev/null -w '%{time_total}\n' -X POST "$base/tenants/$tenant/rules/test" -H "$auth" -H 'content-type: application/json' -d "$body"
done | sort -n | python3 -c "
import sys
t = [float(x) * 1000 for x in sys.stdin]
p = lambda q: t[min(len(t) - 1, int(q * len(t)))]
print(f'rules/test: p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, max {t[-1]:.0f} ms over {len(t)} requests')"
echo "reference: the database's own scan of the same rows with a substring filter"
sql <<SQL | grep -i '^time' | tail -1
\timing on
SELECT count(*) FROM transactions WHERE tenant_id = '$tenant' AND deleted_at IS NULL AND transfer_id IS NULL
  AND merchant ILIKE '%studio%' AND amount < 0;
SQL
