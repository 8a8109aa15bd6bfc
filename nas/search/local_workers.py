"""``--jobs N``: N worker processes on this machine sharing one study (optuna backend).

Training one candidate keeps a single core busy far better than it keeps two busy (small matrices,
per-op overhead), so on a CPU the fastest way to run many trials is one process per core, each
with its own torch threads. This process is worker 0: it shows the progress bar and prints the
result. It starts workers 1..N-1 as ``mbnas search`` processes with the same settings against the
same storage, after the study exists (so they never race to create it); they coordinate exactly
as workers on other machines do on PostgreSQL (``optuna_backend``): each counts the trials the
study holds before asking for another, marks trials of dead workers interrupted, and samples with
its own seed. SQLite serialises their writes (each waits up to 60 s for the lock).
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
from typing import Callable, Iterator

WORKER_FLAG = "--worker-index"  # hidden option of ``mbnas search``: this process is extra worker K
STOP_WAIT_S = 30.0


def default_threads(jobs: int) -> int:
    """Torch threads per worker when the user gave none: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)


@contextmanager
def local_workers(argv: list[str], jobs: int, log: Callable[[str], None] = print) -> Iterator[list[subprocess.Popen]]:
    """Run ``argv + [WORKER_FLAG, k]`` for k = 1..jobs-1 while the body runs; wait for them after it.

    If the body fails (Ctrl-C, an error), the workers get SIGINT, which marks their running trials
    interrupted, and are killed if they have not stopped within ``STOP_WAIT_S``.
    """
    procs = [subprocess.Popen([*argv, WORKER_FLAG, str(k)]) for k in range(1, jobs)]
    try:
        yield procs
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()  # reaped: a zombie's pid would still look alive to the dead-worker recovery
        raise
    for k, p in enumerate(procs, start=1):
        if p.wait() != 0:
            log(f"worker {k} (pid {p.pid}) exited with status {p.returncode} (its message is above); the "
                f"study keeps every trial it finished")
