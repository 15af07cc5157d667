#!/usr/bin/env python3
"""The Celery reference of the job-runner benchmark (README.md beside this file).

Run with the venv's python (install.sh makes it), against a Redis that run.sh started:

    bench.py throughput --jobs N --batch {1,100} --workers {1,2} --acks {early,late}
    bench.py crash --jobs 10000 --kill-every 2
    bench.py probe-publish      # how many Redis round trips each way of pushing 100 makes

Each prints one ``RESULT ...`` line on stdout; progress and details go to stderr.
The Redis database is flushed (FLUSHALL) at the start of each run: use a private server.
"""

import argparse
import base64
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
POLL = 0.02  # seconds between looks at the log files


def become_subreaper():
    """PR_SET_CHILD_SUBREAPER: a killed worker's prefork children are re-parented to this
    process instead of PID 1, so that it can reap them at once and know they are gone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # 36 = PR_SET_CHILD_SUBREAPER (Linux >= 3.4)
        log(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def job_ids(n):
    width = max(6, len(str(n - 1)))
    return [f"j-{i:0{width}d}" for i in range(n)]


def configure(port, acks, crash, logdir):
    """Set the environment tasks.py reads, then import it (its config is read at import)."""
    os.environ["BALANCE_CELERY_REDIS_PORT"] = str(port)
    os.environ["BALANCE_CELERY_ACKS"] = acks
    os.environ["BALANCE_CELERY_LOGDIR"] = logdir
    if crash:
        os.environ["BALANCE_CELERY_CRASH"] = "1"
    else:
        os.environ.pop("BALANCE_CELERY_CRASH", None)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")  # no __pycache__ in the work tree
    sys.path.insert(0, HERE)
    import tasks  # noqa: E402

    return tasks


def redis_client(port):
    import redis

    return redis.Redis(host="127.0.0.1", port=port)


# ---------------------------------------------------------------- the worker

class Worker:
    """One ``celery worker`` (prefork, N children) in its own session and process group."""

    def __init__(self, workdir, concurrency, generation=0):
        self.generation = generation
        self.ready_file = os.path.join(workdir, f"ready-{generation}")
        self.out_path = os.path.join(workdir, f"worker-{generation}.out")
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        # --without-gossip/-mingle/-heartbeat: worker-to-worker features (event subscription,
        # a start-up exchange with other workers that waits ~1 s for their replies, event
        # heartbeats every 2 s); irrelevant to one worker, and mingle would lengthen every
        # restart of the crash run. The scheduling strategy is left alone: -O fair is
        # Celery's default since 4.0 (celery/concurrency/asynpool.py maps None to fair).
        cmd = [celery, "-A", "tasks", "worker", "--pool", "prefork",
               "--concurrency", str(concurrency), "--loglevel", "WARNING",
               "--without-gossip", "--without-mingle", "--without-heartbeat",
               "--hostname", f"bench{generation}@%h"]
        # TMPDIR: billiard makes a pymp-* directory per process there, which a SIGKILLed
        # worker leaves behind; inside the run's directory it goes with it.
        env = dict(os.environ, BALANCE_CELERY_READY_FILE=self.ready_file, TMPDIR=workdir)
        self.out = open(self.out_path, "wb")
        self.started = time.time()
        self.proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pgid = self.proc.pid  # setsid: the session and group leader is the worker
        # run.sh's exit trap SIGKILLs every group listed here, should this script die first.
        pidfile = os.environ.get("BALANCE_CELERY_PIDFILE")
        if pidfile:
            with open(pidfile, "a") as f:
                f.write(f"{self.pgid}\n")
        self.ready_at = None

    def is_ready(self):
        if self.ready_at is None and os.path.exists(self.ready_file):
            self.ready_at = time.time()
        return self.ready_at is not None

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while not self.is_ready():
            if self.proc.poll() is not None:
                raise SystemExit(f"worker exited ({self.proc.returncode}):\n{self.tail()}")
            if time.time() > deadline:
                self.kill()
                raise SystemExit(f"worker not ready after {timeout} s:\n{self.tail()}")
            time.sleep(POLL)

    def tail(self, n=30):
        self.out.flush()
        with open(self.out_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")

    def group_alive(self):
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False

    def _reap(self):
        """Reap the group's dead processes: the parent, and (we are a child subreaper, see
        become_subreaper) the prefork children it left. A zombie still counts as a member
        of its group for kill(2), so an unreaped one would look alive."""
        self.proc.poll()
        while True:
            try:
                pid, _ = os.waitpid(-self.pgid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _wait_group_gone(self, timeout):
        deadline = time.time() + timeout
        while True:
            self._reap()
            if not self.group_alive():
                return True
            if time.time() > deadline:
                return False
            time.sleep(0.002)

    def kill(self):
        """SIGKILL the whole group (parent and prefork children) and wait until it is gone."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not self._wait_group_gone(10):
            raise SystemExit(f"worker group {self.pgid} still alive 10 s after SIGKILL")
        self.proc.wait()
        self.out.close()

    def stop(self, timeout=15):
        """SIGTERM (Celery's warm shutdown), then SIGKILL what is left after the timeout."""
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self._wait_group_gone(timeout):
            log(f"worker {self.pgid} still running {timeout} s after SIGTERM: SIGKILL")
        self.kill()


# ---------------------------------------------------------------- the logs

class RanLog:
    """Reads the per-process logs incrementally: which job ids ran, and how often."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.offsets = {}
        self.partial = {}
        self.counts = {}
        self.lines = 0

    def bytes_total(self):
        """Cheap progress check: the logs' total size (every line has the same length)."""
        total = 0
        for path in glob.glob(os.path.join(self.logdir, "ran-*.log")):
            try:
                total += os.stat(path).st_size
            except FileNotFoundError:
                pass
        return total

    def update(self):
        for path in glob.glob(os.path.join(self.logdir, "ran-*.log")):
            off = self.offsets.get(path, 0)
            try:
                if os.stat(path).st_size == off:
                    continue
            except FileNotFoundError:
                continue
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read()
            if not data:
                continue
            self.offsets[path] = off + len(data)
            data = self.partial.pop(path, b"") + data
            *complete, rest = data.split(b"\n")
            if rest:
                self.partial[path] = rest
            for line in complete:
                jid = line.decode()
                self.counts[jid] = self.counts.get(jid, 0) + 1
                self.lines += 1
        return len(self.counts)


# ---------------------------------------------------------------- pushing

def push_single(tasks, ids):
    """One ``apply_async`` per job: one LPUSH round trip to Redis each."""
    for jid in ids:
        tasks.noop.apply_async((jid,))


def push_batches(tasks, ids, size=100):
    """100 messages per round trip: kombu 5.7's ``Producer.batch()``.

    Inside the context, the Redis transport buffers each message's LPUSH in one
    non-transactional redis-py pipeline and sends it when the context exits (or when
    max_size commands are buffered); one message of Celery's default routing is one LPUSH.
    ``group(...).apply_async()`` does not do this: it calls apply_async once per task
    with a shared producer, i.e. one round trip per message (see probe-publish).
    """
    with tasks.app.producer_or_acquire() as producer:
        for i in range(0, len(ids), size):
            with producer.batch(max_size=size):
                for jid in ids[i:i + size]:
                    tasks.noop.apply_async((jid,), producer=producer)


def warm_up_producer(tasks):
    """Open the producer's pooled Redis connection before the clock starts."""
    with tasks.app.producer_or_acquire() as producer:
        producer.channel.client.ping()


# ---------------------------------------------------------------- kombu's unacked hash

def left_in_redis(r):
    """Messages still in Redis: in the queue (its priority lists too) or unacknowledged."""
    queued = 0
    for key in r.scan_iter(match="celery*"):
        if r.type(key) == b"list":
            queued += r.llen(key)
    return queued, r.hlen("unacked")


def decode_unacked(r):
    """Job ids in kombu's Redis ack emulation, with the time each was delivered.

    ``unacked`` is a hash: delivery tag -> JSON ``[raw message, exchange, routing key]``;
    ``unacked_index`` a sorted set: delivery tag -> time of delivery (kombu/transport/redis.py,
    QoS.append). The raw message's body is base64 (``body_encoding``) of the task protocol 2
    JSON body ``[args, kwargs, embed]``; our only argument is the job id.
    """
    out = {}
    index = dict(r.zrange("unacked_index", 0, -1, withscores=True))
    for tag, value in r.hgetall("unacked").items():
        raw, _exchange, _routing_key = json.loads(value)
        body = raw["body"]
        if raw["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        out[args[0]] = index.get(tag, 0.0)
    return out


# ---------------------------------------------------------------- subcommands

def cmd_throughput(a):
    workdir = tempfile.mkdtemp(prefix="celery-bench-", dir=a.tmpdir)
    try:
        logdir = os.path.join(workdir, "ran")
        os.mkdir(logdir)
        tasks = configure(a.port, a.acks, False, logdir)
        r = redis_client(a.port)
        r.flushall()
        ids = job_ids(a.jobs)
        line_len = len(ids[0]) + 1
        worker = Worker(workdir, a.workers)
        try:
            worker.wait_ready()
            warm_up_producer(tasks)
            ran = RanLog(logdir)
            t0 = time.perf_counter()
            (push_single if a.batch == 1 else push_batches)(tasks, ids)
            pushed = time.perf_counter() - t0
            deadline = time.time() + a.timeout
            while ran.bytes_total() < a.jobs * line_len:
                if time.time() > deadline:
                    raise SystemExit(f"timeout: {ran.bytes_total() // line_len} of {a.jobs} ran")
                if worker.proc.poll() is not None:
                    raise SystemExit(f"worker exited:\n{worker.tail()}")
                time.sleep(POLL)
            seconds = time.perf_counter() - t0
        finally:
            worker.stop()
        ran.update()
        missing = a.jobs - len(ran.counts)
        dup = sum(1 for c in ran.counts.values() if c > 1)
        if missing or dup or ran.lines != a.jobs:
            raise SystemExit(f"wrong run: {missing} missing, {dup} ran twice, {ran.lines} lines")
        log(f"throughput: pushed {a.jobs} in {pushed:.3f} s; all ran after {seconds:.3f} s; "
            f"every id ran exactly once")
        print(f"RESULT celery acks={a.acks} batch={a.batch} workers={a.workers} jobs={a.jobs} "
              f"seconds={seconds:.3f} jobs_per_s={a.jobs / seconds:.0f}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def cmd_crash(a):
    workdir = tempfile.mkdtemp(prefix="celery-crash-", dir=a.tmpdir)
    try:
        logdir = os.path.join(workdir, "ran")
        os.mkdir(logdir)
        tasks = configure(a.port, "late", True, logdir)
        log(f"crash: acks_late, task_reject_on_worker_lost, transport {tasks.CRASH_TRANSPORT}")
        r = redis_client(a.port)
        r.flushall()
        ids = job_ids(a.jobs)
        # All jobs are queued before the first worker starts, so every kill hits a busy worker.
        t_push = time.perf_counter()
        push_batches(tasks, ids)
        log(f"crash: pushed {a.jobs} in batches of 100 in {time.perf_counter() - t_push:.2f} s")
        ran = RanLog(logdir)
        in_flight_union = set()
        in_flight_total = 0
        in_flight_had_run = set()
        kills = 0
        t0 = time.perf_counter()
        deadline = time.time() + a.timeout
        worker = None
        try:
            while True:
                worker = Worker(workdir, a.workers, generation=kills)
                before = ran.update()
                kill_at = worker.started + a.kill_every
                done = False
                while time.time() < kill_at:
                    worker.is_ready()
                    if ran.update() == a.jobs or time.time() > deadline:
                        done = True
                        break
                    time.sleep(POLL)
                if done:
                    break
                worker.kill()
                kills += 1
                # The killed worker can no longer ack; no other worker runs until we restart:
                # what is in the unacked hash now is what it held (plus older entries not yet
                # restored from earlier kills, delivered before this worker started).
                unacked = decode_unacked(r)
                fresh = {j for j, t in unacked.items() if t >= worker.started - 0.001}
                in_flight_union |= set(unacked)
                in_flight_total += len(fresh)
                after = ran.update()
                # Of those, the ones that had already run (logged, not yet acked): each of
                # these runs a second time when its message comes back.
                had_run = {j for j in fresh if j in ran.counts}
                in_flight_had_run |= had_run
                ready = (f"ready after {worker.ready_at - worker.started:.2f} s"
                         if worker.ready_at else "never ready")
                queued, unacked_left = left_in_redis(r)
                log(f"kill {kills}: {ready}, ran {after - before} new ids (total {after}), "
                    f"in flight {len(fresh)} ({len(had_run)} of them had run; "
                    f"+{len(unacked) - len(fresh)} older unacked), "
                    f"queued {queued}")
                if after < a.jobs and queued == 0 and unacked_left == 0:
                    # No worker is alive and Redis holds no message: the jobs that have not
                    # run never will; waiting for the timeout would change nothing.
                    log(f"crash: nothing left in Redis and {a.jobs - after} ids never ran: "
                        f"stopping")
                    break
        finally:
            if worker is not None:
                worker.stop()
        seconds = time.perf_counter() - t0
        ran.update()
        lost = [j for j in ids if j not in ran.counts]
        twice = sorted(j for j, c in ran.counts.items() if c >= 2)
        outside = sorted(set(twice) - in_flight_union)
        log(f"crash: {len(ran.counts)} of {a.jobs} ran, {ran.lines} lines in all; "
            f"{len(in_flight_union)} distinct ids were in flight at some kill, "
            f"{len(in_flight_had_run)} of them after they had run")
        if lost:
            seen = sum(1 for j in lost if j in in_flight_union)
            log(f"lost ({len(lost)}, {seen} of them seen in flight at a kill): "
                f"{' '.join(lost[:200])}")
        if twice:
            log(f"ran twice or more ({len(twice)}): {' '.join(twice[:200])}")
        log(f"crash: every id that ran twice had run before a kill that found it unacked: "
            f"{'yes' if set(twice) <= in_flight_had_run else 'no'}")
        if outside:
            log(f"ran twice but in no in-flight set ({len(outside)}): {' '.join(outside[:200])}")
        print(f"RESULT celery-crash jobs={a.jobs} kills={kills} lost={len(lost)} "
              f"ran_twice={len(twice)} in_flight_at_kills={in_flight_total} "
              f"duplicates_within_in_flight={'no' if outside else 'yes'} "
              f"seconds={seconds:.1f}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def cmd_probe_publish(a):
    """Counts the commands sent to Redis, and the round trips, for 100 messages each way."""
    import redis.connection
    from celery import group

    tasks = configure(a.port, "early", False, tempfile.gettempdir())
    r = redis_client(a.port)
    stats = {"round_trips": 0, "commands": 0}
    orig = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        stats["round_trips"] += 1
        # a pipeline sends a list of packed commands in one call
        stats["commands"] += 1 if isinstance(command, (bytes, str)) else max(1, len(command))
        return orig(self, command, check_health)

    ids = job_ids(100)
    ways = {
        "apply_async x100": lambda: push_single(tasks, ids),
        "group(100).apply_async()": lambda: group(tasks.noop.s(j) for j in ids).apply_async(),
        "Producer.batch() of 100": lambda: push_batches(tasks, ids),
    }
    try:
        for name, fn in ways.items():
            fn()  # once unmeasured: the first publish also declares the queue
            r.flushall()
            warm_up_producer(tasks)
            redis.connection.AbstractConnection.send_packed_command = counting
            stats.update(round_trips=0, commands=0)
            try:
                fn()
            finally:
                redis.connection.AbstractConnection.send_packed_command = orig
            print(f"PROBE {name}: {stats['round_trips']} round trips, {r.llen('celery')} "
                  f"messages queued", flush=True)
    finally:
        r.flushall()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int,
                   default=int(os.environ.get("BALANCE_CELERY_REDIS_PORT", "6390")))
    p.add_argument("--tmpdir", default=os.environ.get("TMPDIR"),
                   help="where the run's temporary directory goes")
    p.add_argument("--keep", action="store_true", help="keep the logs and worker output")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--jobs", type=int, default=10000)
    t.add_argument("--batch", type=int, choices=(1, 100), default=1)
    t.add_argument("--workers", type=int, choices=(1, 2), default=1)
    t.add_argument("--acks", choices=("early", "late"), default="early")
    t.add_argument("--timeout", type=float, default=600)
    c = sub.add_parser("crash")
    c.add_argument("--jobs", type=int, default=10000)
    c.add_argument("--kill-every", type=float, default=2.0)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--timeout", type=float, default=600)
    sub.add_parser("probe-publish")
    a = p.parse_args()
    # SIGTERM (run.sh's exit trap) unwinds like Ctrl-C: the finally blocks stop the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    become_subreaper()
    {"throughput": cmd_throughput, "crash": cmd_crash,
     "probe-publish": cmd_probe_publish}[a.cmd](a)


if __name__ == "__main__":
    main()
