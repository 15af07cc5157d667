#!/usr/bin/env bash
# Imports end to end (issue 21, item 8): a ROWS-row CSV (default 100,000) and a ROWS-entry
# CAMT.053 uploaded to `balance serve` and read by a separate `balance worker`, from the
# upload's first byte until the import is `completed` (dedup on, terms written), next to a
# raw `COPY` of the same rows into the same cluster in the same run; the worker's peak
# resident memory; and the time a re-import of the same file takes to find every row a
# duplicate. Not run in CI.
set -euo pipefail
# Benchmarks measure the platform, not the free plan's limits.
export BALANCE_PLANS='{"free": {"limits": {"members": null, "bank_connections": null, "transactions_per_month": null}}}'
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-imports
ROWS=${ROWS:-100000}
port=8187
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; ops/pg destroy >/dev/null 2>&1 || true; rm -rf "${data:-}"; }
trap cleanup EXIT
ops/pg up >/dev/null
eval "$(ops/pg env)"
bin=${BALANCE_BIN:-$CARGO_TARGET_DIR/release/balance}
[ -n "${BALANCE_BIN:-}" ] || cargo build --release -q -p balance -p loadtests
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
"$bin" migrate >/dev/null
data=$(mktemp -d)
export BALANCE_LISTEN=127.0.0.1:$port BALANCE_PUBLIC_URL=http://127.0.0.1:$port BALANCE_DATA_DIR="$data" BALANCE_LOG=${BALANCE_LOG:-warn}
"$bin" serve &
pids+=($!)
"$bin" worker &
worker=$!
pids+=($worker)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
base=http://127.0.0.1:$port/api/v1
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "== $ROWS rows as CSV and as CAMT.053"
python3 - "$ROWS" "$data" <<'PY'
import random, sys
rows, out = int(sys.argv[1]), sys.argv[2]
random.seed(7)
names = [f"Merchant {chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}" for i in range(20000)]
with open(f"{out}/big.csv", "w") as f, open(f"{out}/copy.csv", "w") as c:
    f.write("Date,Amount,Payee,Description\n")
    for i in range(rows):
        day = f"2024-{1 + i * 12 // rows:02d}-{1 + i % 28:02d}"
        amount = -(1 + random.randrange(50000))
        name = names[min(int(20000 * random.random() ** 3), 19999)]
        f.write(f"{day},{amount / 100:.2f},{name},CARD PAYMENT REF{i}\n")
        c.write(f"{day},{amount},{name},CARD PAYMENT REF{i}\n")
with open(f"{out}/big.xml", "w") as f:
    f.write('<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
            '<GrpHdr><MsgId>bench</MsgId><CreDtTm>2024-12-31T12:00:00</CreDtTm></GrpHdr>'
            '<Stmt><Id>bench-1</Id><CreDtTm>2024-12-31T12:00:00</CreDtTm><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>\n')
    for i in range(rows):
        day = f"2024-{1 + i * 12 // rows:02d}-{1 + i % 28:02d}"
        amount = 1 + random.randrange(50000)
        name = names[min(int(20000 * random.random() ** 3), 19999)]
        f.write(f'<Ntry><Amt Ccy="EUR">{amount // 100}.{amount % 100:02d}</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>'
                f'<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>REF{i}</AcctSvcrRef>'
                f'<NtryDtls><TxDtls><RltdPties><Cdtr><Nm>{name}</Nm></Cdtr></RltdPties>'
                f'<RmtInf><Ustrd>CARD PAYMENT REF{i}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n')
    f.write('</Stmt></BkToCstmrStmt></Document>\n')
PY
ls -la "$data"/big.csv "$data"/big.xml | awk '{printf "%s %.1f MiB\n", $NF, $5 / 1048576}'

email="bench-$RANDOM$RANDOM@example.com"
curl -fs -X POST "$base/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" >/dev/null
token=$(curl -fs -X POST "$base/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\"}" | json '["access_token"]')
auth="authorization: Bearer $token"
tenant=$(curl -fs -X POST "$base/tenants" -H 'content-type: application/json' -H "$auth" -d '{"name":"Bench"}' | json '["id"]')
account() {
    curl -fs -X POST "$base/tenants/$tenant/accounts" -H 'content-type: application/json' -H "$auth" \
        -d "{\"name\":\"$1\",\"kind\":\"checking\",\"currency\":\"EUR\",\"opening_date\":\"2023-12-31\",\"iban\":\"DE89370400440532013000\"}" | json '["id"]'
}

import() { # label account file
    local t0 t1 id status
    echo 5 >"/proc/$worker/clear_refs" 2>/dev/null || true
    t0=$(date +%s.%N)
    id=$(curl -fs -X POST "$base/tenants/$tenant/imports" -H "$auth" -F "account_id=$2" -F "file=@$3" | json '["import_id"]')
    while :; do
        status=$(curl -fs "$base/tenants/$tenant/imports/$id" -H "$auth")
        case $(echo "$status" | json '["status"]') in queued | running) sleep 0.1 ;; *) break ;; esac
    done
    t1=$(date +%s.%N)
    echo "$status" | python3 -c "
import json, sys
s = json.load(sys.stdin); secs = $t1 - $t0
print(f'$1: {s[\"status\"]}, {s[\"rows\"]:,} rows ({s[\"inserted\"]:,} inserted, {s[\"duplicates\"]:,} duplicates, {s[\"rejected\"]} rejected) in {secs:.1f} s: {s[\"rows\"] / secs:,.0f} rows/s; worker peak RSS $(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' /proc/$worker/status) MiB')"
}

csv_account=$(account "CSV")
camt_account=$(account "CAMT")
echo "== end to end: upload → completed (balance serve + balance worker, release)"
import "CSV, first import" "$csv_account" "$data/big.csv"
import "CSV, the same file again" "$csv_account" "$data/big.csv"
import "CAMT.053, first import" "$camt_account" "$data/big.xml"
import "CAMT.053, the same file again" "$camt_account" "$data/big.xml"

echo "== reference: COPY of the same rows into a table of the transactions' columns, same cluster"
"$bindir/psql" -qtA -v ON_ERROR_STOP=1 "$BALANCE_DATABASE_OWNER_URL" <<SQL
CREATE TABLE copy_reference (date date, amount bigint, merchant text, description text);
\timing on
\copy copy_reference FROM '$data/copy.csv' WITH (FORMAT csv)
SQL
