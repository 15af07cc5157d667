"""The Celery app of the reference benchmark: one no-op task on a local Redis.

Everything is Celery's default except what a scenario needs (see README.md):

* ``BALANCE_CELERY_REDIS_PORT`` (default 6390): the broker is ``redis://127.0.0.1:PORT/0``.
* ``BALANCE_CELERY_ACKS=early|late`` (default early): ``task_acks_late``. Early is Celery's
  default: the worker acknowledges a message when a pool process accepts it, before it runs.
  Late: after it ran.
* ``BALANCE_CELERY_CRASH=1``: the settings of the crash run (with acks late):
  ``task_reject_on_worker_lost=True`` and the broker transport options of CRASH_TRANSPORT.
* ``BALANCE_CELERY_LOGDIR``: where each process appends the job ids it ran.
* ``BALANCE_CELERY_READY_FILE``: written when the worker is consuming (``worker_ready``).

No result backend (Celery's default ``result_backend`` is None, i.e. disabled) and
``ignore_result``: the task is fire-and-forget, like ours.
"""

import os

from celery import Celery
from celery.signals import worker_ready

PORT = int(os.environ.get("BALANCE_CELERY_REDIS_PORT", "6390"))
ACKS = os.environ.get("BALANCE_CELERY_ACKS", "early")
CRASH = os.environ.get("BALANCE_CELERY_CRASH") == "1"
LOGDIR = os.environ.get("BALANCE_CELERY_LOGDIR", ".")
READY_FILE = os.environ.get("BALANCE_CELERY_READY_FILE")
if ACKS not in ("early", "late"):
    raise SystemExit(f"BALANCE_CELERY_ACKS must be early or late, not {ACKS!r}")

# The crash run's broker transport options (kombu's Redis transport, kombu 5.7):
# - visibility_timeout: an unacknowledged message whose delivery is older than this is put
#   back on the queue by the next restore sweep of any live worker. The default is 3600 s,
#   so the messages a SIGKILLed worker held would come back after an hour. 5 s: short enough
#   that they come back within seconds, long enough that a live worker's own unacked
#   messages (at most prefetch = 4 x concurrency no-op tasks, held for milliseconds) are
#   never taken from it, which would run them twice with no crash involved.
# - unacked_restore_interval / unacked_restore_throttle: a worker sweeps every
#   interval x throttle seconds (10 x 10 = 100 s by default in kombu 5.7); 1 x 1 = every
#   second, or the 5 s above would in effect be 100 s.
# - unacked_mutex_expire: the sweep holds a Redis lock (SET NX with this expiry, default
#   300 s); a worker SIGKILLed during a sweep leaves it held, and no worker would sweep for
#   5 minutes. A sweep of a few dozen messages takes milliseconds, so 5 s is ample.
CRASH_TRANSPORT = {
    "visibility_timeout": 5,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 5,
}

app = Celery("tasks", broker=f"redis://127.0.0.1:{PORT}/0")
app.conf.update(
    task_acks_late=(ACKS == "late"),
    task_ignore_result=True,
    # Only silences 5.x's deprecation warning; retrying at startup is the default already.
    broker_connection_retry_on_startup=True,
)
if CRASH:
    app.conf.update(
        task_reject_on_worker_lost=True,
        broker_transport_options=dict(CRASH_TRANSPORT),
    )

_fd = None
_fd_pid = None


def _log_fd():
    """This process's log, opened once per process (prefork children each have their own)."""
    global _fd, _fd_pid
    pid = os.getpid()
    if _fd_pid != pid:
        path = os.path.join(LOGDIR, f"ran-{pid}.log")
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        _fd_pid = pid
    return _fd


@app.task(name="bench.noop", ignore_result=True)
def noop(job_id):
    # One write(2) with O_APPEND: once it returns the line is in the kernel's page cache, so
    # it survives a SIGKILL of this process right after (not a power loss, which is not tested).
    os.write(_log_fd(), (job_id + "\n").encode())


@worker_ready.connect
def _mark_ready(**_):
    # worker_ready is sent when every consumer bootstep has started: the worker is consuming.
    if READY_FILE:
        with open(READY_FILE, "w") as f:
            f.write(str(os.getpid()))
