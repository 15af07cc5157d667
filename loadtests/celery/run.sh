#!/usr/bin/env bash
# The Celery reference of the job-runner benchmark (README.md beside this file): no-op
# tasks per second, pushed singly and in batches of 100, 1 and 2 worker processes, with
# Celery's default (early) acks and with acks_late; then the crash run (a worker SIGKILLed
# every 2 s during ${CELERY_CRASH_JOBS:-10000} jobs, acks_late). Prints RESULT lines and a
# side-by-side table. Uses a private redis-server of its own on a free loopback port;
# on exit every worker and that server are stopped and the temporary files removed.
#   CELERY_BENCH_JOBS   jobs per throughput run (default 10000)
#   CELERY_CRASH_JOBS   jobs of the crash run (default 10000)
#   CELERY_REDIS_PORT   first port tried (default 6390)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jobs="${CELERY_BENCH_JOBS:-10000}"
crash_jobs="${CELERY_CRASH_JOBS:-10000}"
venv="${BALANCE_CELERY_VENV:-$HOME/.cache/balance/celery-venv}"

"$here/install.sh"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/balance-celery.XXXXXX")"
redis_pid=""
bench_pid=""
export BALANCE_CELERY_PIDFILE="$tmp/worker-pgids"
cleanup() {
    local rc=$?
    # A bench.py still running (the script was interrupted) stops its worker on SIGTERM.
    if [ -n "$bench_pid" ]; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    # Workers run in sessions of their own (bench.py kills them by group); any group that
    # bench.py could not stop, because it died first, is SIGKILLed here by its id.
    if [ -f "$BALANCE_CELERY_PIDFILE" ]; then
        while read -r pgid; do
            kill -KILL -- "-$pgid" 2>/dev/null || true
        done <"$BALANCE_CELERY_PIDFILE"
    fi
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port: nothing answers a TCP connect there.
port="${CELERY_REDIS_PORT:-6390}"
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    port=$((port + 1))
done
mkdir "$tmp/redis"
# No persistence (no RDB snapshots, no AOF), like a cache-only broker; loopback only.
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp/redis" --logfile "$tmp/redis/redis.log" --daemonize no &
redis_pid=$!
for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$port" ping >/dev/null
echo "redis: $(redis-server --version | cut -d' ' -f3) on 127.0.0.1:$port (no persistence); celery $("$venv/bin/celery" --version | head -1)"

export BALANCE_CELERY_REDIS_PORT="$port" PYTHONDONTWRITEBYTECODE=1
# bench.py runs in the background so that a signal to this script runs the trap at once
# (bash runs traps only between commands, and wait is interruptible); its RESULT line is
# printed and kept in $results when it is done; its progress goes to stderr as it comes.
results="$tmp/results"
: >"$results"
bench() {
    local rc=0
    "$venv/bin/python" "$here/bench.py" --tmpdir "$tmp" "$@" >"$tmp/out" &
    bench_pid=$!
    wait "$bench_pid" || rc=$?
    bench_pid=""
    tee -a "$results" <"$tmp/out"
    return "$rc"
}

echo "== how each way of pushing 100 messages reaches Redis"
bench probe-publish

echo "== throughput: $jobs no-op tasks per run"
for acks in early late; do
    for batch in 1 100; do
        for workers in 1 2; do
            bench throughput --jobs "$jobs" --batch "$batch" --workers "$workers" --acks "$acks"
        done
    done
done

echo "== crash: $crash_jobs jobs, acks_late, the worker SIGKILLed every 2 s"
bench crash --jobs "$crash_jobs" --kill-every 2

echo "== Celery $("$venv/bin/celery" --version | cut -d' ' -f1), jobs per second ($jobs no-op tasks each)"
awk '
    /^RESULT celery / {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        r[f["batch"] " " f["workers"] " " f["acks"]] = f["jobs_per_s"]
    }
    END {
        printf "%-8s %-8s %14s %14s\n", "batch", "workers", "acks=early", "acks=late"
        split("1 100", bs, " "); split("1 2", ws, " ")
        for (b = 1; b <= 2; b++) for (w = 1; w <= 2; w++)
            printf "%-8s %-8s %14s %14s\n", bs[b], ws[w], r[bs[b] " " ws[w] " early"], r[bs[b] " " ws[w] " late"]
    }' "$results"
