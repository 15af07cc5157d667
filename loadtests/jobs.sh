#!/usr/bin/env bash
# The job runner against Celery (issue 19): no-op jobs per second end to end, pushed singly
# and in batches of 100, with 1 and 2 worker processes; then the crash run (a worker
# SIGKILLed every 2 s during 10,000 jobs: lost, ran twice, in flight at the kills). Ours on
# the script's own PostgreSQL cluster (default durability), Celery on a private Redis
# (loadtests/celery/run.sh installs and cleans up). Not run in CI.
#   JOBS_BENCH_JOBS   jobs per throughput run (default 10000)
#   JOBS_CRASH_JOBS   jobs of the crash run (default 10000)
#   JOBS_BENCH_ONLY   ours | celery (default: both)
#   BALANCE_BIN, JOBS_BENCH_BIN   prebuilt binaries to measure instead of this tree's
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/balance/target}"
export BALANCE_PG_CLUSTER=bench-jobs
jobs=${JOBS_BENCH_JOBS:-10000}
crash_jobs=${JOBS_CRASH_JOBS:-10000}
only=${JOBS_BENCH_ONLY:-}
out=$(mktemp)
cleanup() { ops/pg destroy >/dev/null 2>&1 || true; rm -f "$out"; }
trap cleanup EXIT

if [ "$only" != celery ]; then
    [ -n "${JOBS_BENCH_BIN:-}" ] || cargo build --release -q -p balance -p loadtests
    ops/pg up >/dev/null
    eval "$(ops/pg env)"
    "${BALANCE_BIN:-$CARGO_TARGET_DIR/release/balance}" migrate >/dev/null 2>&1
    bench="${JOBS_BENCH_BIN:-$CARGO_TARGET_DIR/release/jobs_bench}"
    echo "== ours: jobs::Runner on PostgreSQL ($jobs jobs per run)"
    for batch in 1 100; do
        for workers in 1 2; do
            "$bench" throughput --jobs "$jobs" --batch "$batch" --workers "$workers" | tee -a "$out"
        done
    done
    echo "== ours: crash run ($crash_jobs jobs, SIGKILL every 2 s)"
    "$bench" crash --jobs "$crash_jobs" --kill-every 2 2>/tmp/jobs-bench-crash.log | tee -a "$out"
    ops/pg destroy >/dev/null
fi
if [ "$only" != ours ]; then
    echo "== Celery on Redis"
    CELERY_BENCH_JOBS=$jobs CELERY_CRASH_JOBS=$crash_jobs loadtests/celery/run.sh 2>/tmp/jobs-bench-celery.log \
        | grep '^RESULT' | tee -a "$out"
fi

echo "== side by side (jobs per second)"
python3 - "$out" <<'PY'
import re, sys
rows = {}
crash = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    who = line.split()[1]
    if who.endswith("crash"):
        crash[who] = f
        continue
    key = (f["batch"], f["workers"])
    col = "ours" if who == "ours" else f"celery acks={f['acks']}"
    rows.setdefault(key, {})[col] = f["jobs_per_s"]
cols = ["ours", "celery acks=early", "celery acks=late"]
print(f"{'batch':>5} {'workers':>7}  " + "  ".join(f"{c:>18}" for c in cols))
for (batch, workers), r in sorted(rows.items(), key=lambda kv: (int(kv[0][0]), int(kv[0][1]))):
    print(f"{batch:>5} {workers:>7}  " + "  ".join(f"{r.get(c, '-'):>18}" for c in cols))
for who, f in crash.items():
    print(f"{who}: kills={f['kills']} lost={f['lost']} ran_twice={f['ran_twice']} in_flight_at_kills={f['in_flight_at_kills']} duplicates_within_in_flight={f['duplicates_within_in_flight']} seconds={f['seconds']}")
PY
