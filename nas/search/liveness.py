"""Which trials are still being trained, and what to redo after a worker died.

Optuna's own heartbeat fails stale trials without saying why, so the search keeps its own: every
trial it trains carries ``mbnas.run.worker`` (host, boot, pid namespace, pid and the process start
time) and ``mbnas.run.heartbeat`` (unix seconds, refreshed every ``HEARTBEAT_S``). At start-up and
before each new trial, a RUNNING trial is marked ``interrupted`` when its worker is provably gone
(same machine: the pid no longer exists or now belongs to another process) or silent for longer than
``GRACE_S`` (another machine).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nas.search.outcomes import INTERRUPTED, RETRY_OF_ATTR, outcome_of

# user attributes of the search's own bookkeeping (records.py's parser ignores them)
WORKER_ATTR = "mbnas.run.worker"
HEARTBEAT_ATTR = "mbnas.run.heartbeat"
HEARTBEAT_S = 15.0
GRACE_S = 120.0
KILLED_TWICE = "killed its worker twice"  # in the failure of a retry that was interrupted too: not tried again
# on a trial: how many deaths of its workers may be its candidate's doing, over its earlier attempts
# (and this one, once it has ended). A worker that died with its search process (a kill of the
# search, the node gone) is not counted: only a death the search lived through (an OOM kill of the
# trainer) says anything against the candidate. Two such deaths fail it (``KILLED_TWICE``).
DEATHS_ATTR = "mbnas.candidate_deaths"


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def worker_identity() -> dict[str, Any]:
    """Who runs a trial. ``key`` names a pid namespace: pids are comparable only within one."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "?"
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = "?"
    host = socket.gethostname()
    parent = os.getppid()  # a --jobs worker's search, or the shell that started a search
    return {"host": host, "key": f"{host}/{boot}/{pidns}", "pid": os.getpid(), "started": _proc_start(os.getpid()),
            "parent": parent, "parent_started": _proc_start(parent)}


def _parent_gone(worker: dict[str, Any]) -> bool:
    """Whether a dead worker's parent process (recorded when it claimed its trial) is gone too: its
    search died, and the worker with it. False when it was not recorded (older studies)."""
    if worker.get("parent") is None or worker.get("parent_started") is None:
        return False
    return _worker_alive({"key": worker.get("key"), "pid": worker["parent"], "started": worker["parent_started"]}) \
        is False


def deaths_so_far(trial: Any) -> int:
    """``DEATHS_ATTR`` of a trial; a retry from before it was recorded had one death behind it."""
    return int(trial.user_attrs.get(DEATHS_ATTR, 1 if RETRY_OF_ATTR in trial.user_attrs else 0))


def charge_death(trial: Any) -> tuple[int, bool]:
    """A death of the trial's worker that may be its candidate's doing: the candidate's count with it,
    and whether that makes two (the trial is then failed, ``KILLED_TWICE``, and not tried again)."""
    deaths = deaths_so_far(trial) + 1
    return deaths, deaths >= 2


def _worker_alive(worker: dict[str, Any]) -> bool | None:
    """True/False when this machine can tell (same pid namespace), None otherwise."""
    if worker.get("key") != worker_identity()["key"] or "?" in worker.get("key", "?"):
        return None
    started = _proc_start(int(worker["pid"]))
    return started is not None and started == worker.get("started")


class Liveness:
    """Marks the trials this process trains as alive, from a daemon thread; with ``recover``, also
    calls it at every beat (``recover_interrupted``: other workers' trials whose worker is gone).

    ``claim(trial)`` right after ``study.ask()``; ``release(trial)`` before telling its result.
    """

    def __init__(self, interval_s: float = HEARTBEAT_S, recover: Callable[[], object] | None = None) -> None:
        self.interval_s, self.recover = interval_s, recover
        self.identity = worker_identity()
        self._trials: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mbnas-heartbeat", daemon=True)
        self._thread.start()

    def claim(self, trial: Any) -> None:
        # heartbeat first: another worker's recover_interrupted must never see a worker without one
        trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        trial.set_user_attr(WORKER_ATTR, self.identity)
        with self._lock:
            self._trials[trial.number] = trial

    def release(self, trial: Any) -> None:
        with self._lock:
            self._trials.pop(trial.number, None)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                trials = list(self._trials.values())
            for t in trials:
                try:
                    t.set_user_attr(HEARTBEAT_ATTR, time.time())
                except Exception:  # finished meanwhile, or the database is briefly unreachable
                    pass
            if self.recover is not None:  # another worker's trial whose heartbeat lapsed: marked now, not
                try:                      # when this worker's own trial ends
                    self.recover()
                except Exception:
                    pass

    def close(self) -> None:
        self._stop.set()


def fresh_session(storage) -> None:
    """Drop this thread's database session, so the next call opens a new one: a Ctrl-C or SIGTERM
    raised inside a commit can leave the old one in a state where every later write fails."""
    backend = getattr(storage, "_backend", storage)  # optuna wraps an RDBStorage in a cache
    try:
        backend.scoped_session.remove()
    except Exception:
        pass


@dataclass(frozen=True)
class Retry:
    """An interrupted trial's candidate to try again: enqueue ``params`` with ``user_attrs``."""

    number: int
    params: dict[str, Any]
    user_attrs: dict[str, Any]


def next_retry(study) -> Retry | None:
    """The first interrupted trial no trial retries yet (none names it in ``RETRY_OF_ATTR``), or None.
    A retry that was interrupted is retried too: what interrupted it (a user's stop, its search's
    death) was not its candidate's doing, or its failure would say ``KILLED_TWICE``."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials}
    for t in trials:
        if outcome_of(t) == "interrupted" and t.number not in retried and t.params:
            return Retry(t.number, dict(t.params), {RETRY_OF_ATTR: t.number, DEATHS_ATTR: deaths_so_far(t)})
    return None


def recover_interrupted(study, storage, grace_s: float = GRACE_S) -> list[int]:
    """Mark RUNNING trials whose worker is gone as failed ("interrupted: ..."); returns their numbers.

    storage: the ``RDBStorage`` the study was opened on (``open_storage``).
    """
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    now = time.time()
    done = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(WORKER_ATTR)
        beat = t.user_attrs.get(HEARTBEAT_ATTR)
        started = t.datetime_start.timestamp() if t.datetime_start else now
        if worker is None:  # between ask() and claim(), or killed there: judge by its age
            silent = now - started
            alive, who = silent < grace_s, "an unknown worker"
        else:
            silent = now - float(beat if beat is not None else started)
            alive = _worker_alive(worker)
            who = f"worker {worker.get('host')} pid {worker.get('pid')}"
            if alive is None:
                alive = silent < grace_s
        if alive:
            continue
        if worker is not None and _parent_gone(worker):  # its search died, and the worker with it
            deaths = deaths_so_far(t)
            reason = (f"{INTERRUPTED}{who} died with its search process (pid {worker['parent']}), which says "
                      f"nothing against the candidate: it is tried again, completed trials are kept")
        else:
            deaths, twice = charge_death(t)
            # twice: a failure, not an interruption: it counts as a trained trial and is not retried again
            reason = (f"{KILLED_TWICE}: {who} died while this retry of trial {t.user_attrs.get(RETRY_OF_ATTR)} ran, "
                      f"as a worker did during an earlier attempt, each time while its search lived; not tried "
                      f"again (out of memory for this candidate?)" if twice else
                      f"{INTERRUPTED}{who} died while this trial ran (last sign of life {silent:.0f} s ago); "
                      f"the candidate is tried once more, completed trials are kept")
        try:
            # the reason first: a finished trial's attributes can no longer be written
            trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, t.number))
            trial.set_user_attr(DEATHS_ATTR, deaths)
            trial.set_user_attr("mbnas.failure", reason)
            study.tell(trial, state=TrialState.FAIL)
        except Exception:  # another worker recovered it first
            continue
        done.append(t.number)
    return done
