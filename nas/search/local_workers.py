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
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

WORKER_FLAG = "--worker-index"  # hidden option of ``mbnas search``: this process is extra worker K
STOP_WAIT_S = 30.0


def default_threads(jobs: int) -> int:
    """Torch threads per worker when the user gave none: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)


@dataclass(frozen=True)
class LostWorker:
    """A worker that ended with a non-zero status while the search ran, without being told to stop."""

    index: int
    pid: int
    returncode: int
    trials: tuple[int, ...] = ()  # its trials marked interrupted when it was found gone

    @property
    def how(self) -> str:
        if self.returncode < 0:
            try:
                return f"signal {-self.returncode}, {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"signal {-self.returncode}"
        return f"exit status {self.returncode}"


@contextmanager
def local_workers(argv: list[str], jobs: int, log: Callable[[str], None] = print,
                  on_lost: Callable[[int, subprocess.Popen], None] | None = None) -> Iterator[list[subprocess.Popen]]:
    """Run ``argv + [WORKER_FLAG, k]`` for k = 1..jobs-1 while the body runs; wait for them after it.

    If the body fails (Ctrl-C, an error), the workers get SIGTERM, which marks their running trials
    interrupted, and are killed if they have not stopped within ``STOP_WAIT_S``. A SIGTERM to this
    process reaches them at once (``_relay_sigterm``). SIGTERM, not SIGINT: a process started in
    the background by a script (``mbnas search --jobs 2 &``) inherits SIGINT ignored, and so do its
    workers, which then trained on after a stop; ``mbnas`` handles SIGTERM itself.
    """
    procs = [subprocess.Popen([*argv, WORKER_FLAG, str(k)]) for k in range(1, jobs)]
    told: set[int] = set()  # pids already told to stop: a second signal could land inside their marking
    restore = _relay_sigterm(procs, told)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(procs, told, on_lost, stop), name="mbnas-workers", daemon=True)
    if on_lost is not None:
        watcher.start()
    try:
        yield procs
    except BaseException:
        _tell_to_stop(procs, told)
        for p in procs:
            try:
                p.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()  # reaped: a zombie's pid would still look alive to the dead-worker recovery
        raise
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        restore()
    for k, p in enumerate(procs, start=1):
        if p.wait() != 0:
            log(f"worker {k} (pid {p.pid}) exited with status {p.returncode} (its message is above); the "
                f"study keeps every trial it finished")


def _watch(procs: list[subprocess.Popen], told: set[int], on_lost, stop: threading.Event) -> None:
    """Call ``on_lost(k, proc)`` as soon as worker k is found ended with a non-zero status that
    nobody asked for (an OOM kill, a kill -9): its trial can be marked and retried at once, not when
    this process's own trial ends."""
    seen: set[int] = set()
    while not stop.wait(0.5):
        for k, p in enumerate(procs, start=1):
            if k not in seen and p.poll() is not None:
                seen.add(k)
                if p.returncode != 0 and p.pid not in told:
                    on_lost(k, p)


def _relay_sigterm(procs: list[subprocess.Popen], told: set[int]) -> Callable[[], None]:
    """While the workers run, pass a SIGTERM to this process on to them before this process's own
    handler runs; returns what undoes it. A terminal's Ctrl-C reaches every process
    of the group, but ``kill``, ``timeout`` or a scheduler signal only this one: the workers then
    trained on until this process had marked its own trial interrupted (a storage write that may
    wait on SQLite's lock), and could complete a trial the user had stopped. A no-op off the main
    thread, where Python cannot set a handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def relay(signum, frame):
        _tell_to_stop(procs, told)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # the default: end as SIGTERM would have
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, relay)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _tell_to_stop(procs: list[subprocess.Popen], told: set[int]) -> None:
    """SIGTERM to each worker still running that was not told already (``told``: their pids)."""
    for p in procs:
        if p.poll() is None and p.pid not in told:
            told.add(p.pid)
            p.send_signal(signal.SIGTERM)
