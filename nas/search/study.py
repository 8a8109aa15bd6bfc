"""The Optuna study a search writes: storage, settings check, samplers, liveness and resume.

Every backend goes through this module, so a study started with ``--backend optuna`` can be
resumed with ``--backend ray`` (or by a second worker on a shared PostgreSQL) and the dashboard and
export read one format.

Trial outcomes. A trial's Optuna state plus the first word of its ``TrialRecord.failure`` say what
happened (``outcome_of``):

    complete     COMPLETE  trained and scored; values = (score, predicted latency_ms)
    rejected     PRUNED    "rejected: ..."      never trained: over the latency budget or the space's
                                                constraints (its constraint values are > 0)
    stopped      PRUNED    "stopped early: ..." per-layer early stopping (``early_stop``)
    failed       FAIL      "diverged: ..." / "out of memory: ..." / "error: ..."
    interrupted  FAIL      "interrupted: ..."   its worker died (SIGKILL, power loss); redone on resume
    running      RUNNING

Liveness. Optuna's own heartbeat fails stale trials without saying why, so the search keeps its
own: every trial it trains carries ``mbnas.run.worker`` (host, boot, pid namespace, pid and the
process start time) and ``mbnas.run.heartbeat`` (unix seconds, refreshed every
``HEARTBEAT_S``). At start-up and before each new trial, a RUNNING trial is marked ``interrupted``
when its worker is provably gone (same machine: the pid no longer exists or now belongs to another
process) or silent for longer than ``GRACE_S`` (another machine).
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nas.distill.settings import RECIPE_MADE_BY
from nas.records import DIRECTIONS, StudyMeta, TrialRecord
from search_spaces.errors import UserError, check_choice

DEFAULT_STORAGE = "sqlite:///runs/mbnas.db"
SAMPLERS = ("tpe", "nsga2", "gp", "random")
DEFAULT_SAMPLER = "gp"
GP_STARTUP_TRIALS = 2  # chosen on seeds 0-15 of benchmarks/search_efficiency.py (2: 7 / 10.5, 3: 8.5 / 11 trials)
SAMPLER_HELP = (
    f"gp (default): Gaussian-process Bayesian optimisation (expected hypervolume improvement) from "
    f"{GP_STARTUP_TRIALS} random start-up trials on; other workers' running trials enter its batch "
    f"acquisition, so parallel workers spread out; it learns only from trained trials, so TPE proposes the "
    f"trial after a rejected, stopped or failed one, and every trial once one is over the latency budget; "
    f"about a second per proposal. tpe: Parzen estimators, 4 random start-up trials, learns from rejected "
    f"trials, keeps parallel workers apart with a constant liar; nsga2: a genetic algorithm that stays "
    f"random for its whole first population (50); random: the baseline"
)

# user attributes of the search's own bookkeeping (records.py's parser ignores them)
WORKER_ATTR = "mbnas.run.worker"
HEARTBEAT_ATTR = "mbnas.run.heartbeat"
LAYER_SECONDS_ATTR = "mbnas.run.layer_seconds"  # wall time at the end of each layer's phase
CPU_SECONDS_ATTR = "mbnas.run.cpu_seconds"  # CPU time the trial's training used (its process)
HYPERVOLUME_ATTR = "mbnas.hypervolume"  # study attr: hypervolume of the feasible front, latest
HEARTBEAT_S = 15.0
GRACE_S = 120.0

OUTCOMES = ("complete", "rejected", "stopped", "failed", "interrupted", "running")
REJECTED, STOPPED, INTERRUPTED = "rejected: ", "stopped early: ", "interrupted: "
RETRY_OF_ATTR = "mbnas.retry_of"  # on a trial that retries an interrupted one: that trial's number
KILLED_TWICE = "killed its worker twice"  # in the failure of a retry that was interrupted too: not tried again


# ------------------------------------------------------------------------------------------------
# outcomes
def outcome_of(trial: Any) -> str:
    """One of ``OUTCOMES`` for an Optuna ``FrozenTrial``."""
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return "complete"
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return "running"
    failure = str(trial.user_attrs.get("mbnas.failure") or "")
    if trial.state == TrialState.PRUNED:
        return "rejected" if failure.startswith(REJECTED) else "stopped"
    return "interrupted" if failure.startswith(INTERRUPTED) or not failure else "failed"


def counts_toward_budget(trial: Any) -> bool:
    """Trials that used (or are using) a training slot: what ``--trials`` counts."""
    return outcome_of(trial) in ("complete", "stopped", "failed", "running")


# ------------------------------------------------------------------------------------------------
# storage and study
def _rdb_storage(optuna, url: str, kwargs: dict[str, Any], tries: int = 5):
    """``RDBStorage(url)``, retried when several processes create a fresh database's schema at once.

    Optuna creates its tables on first use. Two workers (or a worker and the dashboard, or a
    ``--jobs 2`` pair) opening an empty database together race on that: on PostgreSQL one gets an
    ``IntegrityError`` (a duplicate ``pg_type`` row), on SQLite an ``OperationalError`` "table
    studies already exists". Once the other process has created the schema, a retry finds it.
    """
    import time

    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            lost_race = not isinstance(exc, OperationalError) or "already exists" in str(exc)
            if not lost_race or attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other backends or in-memory)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def check_storage_url(url: str) -> None:
    """A URL SQLAlchemy would misread or fail on with its own words ("Can't load plugin ...") is one
    line with the fix: a SQLite URL short of its three slashes, ``postgres://``, an unknown scheme."""
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else url.split(":", 1)[0]
    if url.startswith("sqlite:") and not url.startswith("sqlite://"):
        raise UserError(f"--storage {url}: a SQLite URL needs three slashes before a relative path and four "
                        f"before an absolute one, e.g. {DEFAULT_STORAGE} or sqlite:////data/mbnas.db")
    if scheme == "postgres":
        raise UserError(f"--storage {url}: SQLAlchemy calls it postgresql://, not postgres://")
    if "://" in url and scheme not in ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql"):
        raise UserError(f"--storage {url}: unknown database '{scheme}'; e.g. {DEFAULT_STORAGE} or "
                        f"postgresql://user@host/db")


def require_sqlite_file(url: str) -> None:
    """Readers (export, the dashboard) refuse a SQLite URL whose file is missing instead of creating
    an empty database there: a typo in ``--storage`` gets one line, not a stray file. An in-memory
    URL is refused too: it would open a new, empty database and show "no study"."""
    path = sqlite_path(url)
    if path is None and url.startswith("sqlite:"):
        raise UserError(f"--storage {url} is an in-memory database, which holds no study to read: give the file "
                        f"'mbnas search' wrote, e.g. {DEFAULT_STORAGE}")
    if path is not None and not path.is_file():
        raise UserError(f"no study storage at {url} (file {path.resolve()} does not exist): run 'mbnas search' "
                        f"first, or pass --storage")
    if path is not None:
        require_sqlite_header(url, path)


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def require_sqlite_header(url: str, path: Path) -> None:
    """A ``--storage`` file that exists but is not an SQLite database (a typo naming another file) is one
    line, not SQLAlchemy's "file is not a database" deep in the first query. An empty file is a new database."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError:
        return  # unreadable: the database driver says why
    if head and head != SQLITE_HEADER:
        raise UserError(f"--storage {url}: {path} is not an SQLite database; give the file 'mbnas search' wrote, "
                        f"e.g. {DEFAULT_STORAGE}")


def engine_url(url: str) -> str:
    """``url`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, while the ``postgres`` extra installs
    psycopg2; without this the README's ``postgresql://user@host/db`` would fail with "driver
    missing" on a complete install. A URL that names its driver (``postgresql+psycopg2://``) is kept.
    """
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme == "postgresql" and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2{sep}{rest}"
    return url


def open_storage(url: str, *, must_exist: bool = False):
    """An Optuna ``RDBStorage`` for ``url``; a SQLite file's folder is created unless ``must_exist``
    (then a missing SQLite file is a ``UserError``: see ``require_sqlite_file``)."""
    import optuna

    kwargs: dict[str, Any] = {}
    check_storage_url(url)
    if must_exist:
        require_sqlite_file(url)
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path is None:  # sqlite:/// or :memory: - nothing would outlive the process
            raise UserError(f"--storage {url} keeps the study in memory: it would be lost when the search "
                            f"ends and could not be resumed, exported or shown; give a file, e.g. "
                            f"{DEFAULT_STORAGE}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--storage {url}: cannot create the folder {path.parent} ({exc.strerror}); "
                            f"give a path you can write to") from None
        if not must_exist:  # require_sqlite_file checked it above
            require_sqlite_header(url, path)
        # writes from the heartbeat thread and a second local process wait instead of failing
        kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith(("postgresql", "mysql")):
        kwargs["pool_pre_ping"] = True
    elif "://" not in url:
        raise UserError(f"--storage {url!r} is not a database URL; e.g. {DEFAULT_STORAGE} or "
                        f"postgresql://user@host/db")
    try:
        return _rdb_storage(optuna, engine_url(url), kwargs)
    except ImportError as exc:
        fix = ("pip install psycopg, or use postgresql:// (psycopg2, which 'mobilebert-nas[postgres]' installs)"
               if url.startswith("postgresql+psycopg:") else "pip install 'mobilebert-nas[postgres]' for PostgreSQL")
        raise UserError(f"--storage {url}: database driver missing ({exc}); {fix}") from None
    except Exception as exc:  # sqlalchemy.exc.OperationalError, ArgumentError ...
        raise UserError(f"--storage {url}: cannot open ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0]})") from None


def default_run_dir(storage_url: str, study_name: str) -> Path:
    """Where trained students go: next to a SQLite file, else ``runs/<study>`` under the cwd."""
    path = sqlite_path(storage_url)
    if path is not None:
        return (path.parent / study_name).resolve()
    return (Path("runs") / study_name).resolve()


def load_study(storage, name: str):
    """An existing study, or a UserError listing the studies the storage holds."""
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise UserError(f"no study '{name}' in the storage (studies there: {known})")
    return optuna.load_study(study_name=name, storage=storage)


# Settings that define what a study's numbers mean: a rerun must use the same ones.
# what a study measures: resuming it with any of these changed would mix incomparable trials
_DEFINING = ("strategy", "objective", "score_name", "latency_profile", "latency_budget_ms", "teacher_hash",
             "distill_options", "user_data")


def _space_diff(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """How the space a study was made with differs from the one given now, in words (None: same).
    (A study made before budgets lived in space files is a recipe-1 study, refused before this.)"""
    if old == new:
        return None
    if old.get("name") != new.get("name"):
        return f"space {old.get('name')!r} (now {new.get('name')!r})"
    path, a, b = [], old, new
    while isinstance(a, dict) and isinstance(b, dict):  # down to the first field that differs
        key = next(k for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k))
        path.append(str(key))
        a, b = a.get(key), b.get(key)
    return f"space {old.get('name')!r} whose {'.'.join(path)} was {a!r} (now {b!r})"


def create_or_check(storage, name: str, meta: StudyMeta, sampler=None):
    """Create the study with ``meta``, or load it and check that ``meta`` agrees with what it holds.

    Several workers may run this at once on one storage (the same command on two machines): the
    settings go in as one attribute, and every worker checks what the storage holds afterwards, so
    two workers started with different settings cannot both go on.
    """
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS),
                                sampler=sampler, load_if_exists=True)
    old = StudyMeta.from_study(study)
    if old is None:
        meta.save(study)
        old = StudyMeta.from_study(study)  # study user attributes are read from the storage, not cached
    if study.metric_names is None:  # Optuna's own plots and optuna-dashboard label the axes with them
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([old.score_name, f"latency_ms (predicted, {old.latency_profile})"])
    was, now = old.recipe or 1, meta.recipe or 1  # None: made before recipes were versioned (recipe 1)
    if was != now:
        made, this = (RECIPE_MADE_BY.get(v, f"recipe {v}") for v in (was, now))
        raise UserError(f"study '{name}' was trained with training recipe {was} ({made}); this {this} "
                        f"trains with recipe {now} (README 'Strategies'), and the two score candidates "
                        f"differently: resume it with {made}, or pass --study NEW_NAME to start another")
    diffs = [f"{k} {getattr(old, k)!r} (now {getattr(meta, k)!r})" for k in _DEFINING
             if getattr(old, k) != getattr(meta, k)]
    space_diff = _space_diff(old.space, meta.space)
    if space_diff:
        diffs.insert(0, space_diff)
    if old.seed is not None and old.seed != meta.seed:  # None: an older study
        # --seed seeds every candidate's training as well as the sampler: one candidate moved 0.05
        # in block_fidelity between two seeds, more than many candidates differ
        diffs.append(f"seed {old.seed} (now {meta.seed}; the seed also seeds every candidate's training)")
    if old.precision and meta.precision and old.precision != meta.precision:  # None: not known (yet)
        diffs.append(f"training in {old.precision} (this run would train in {meta.precision}; give --precision "
                     f"{old.precision} to resume it: bf16 and fp32 training score candidates differently)")
    if old.latency_profile_hash and old.latency_profile_hash != meta.latency_profile_hash:  # None: an older study
        diffs.append(f"latency profile {old.latency_profile!r} of content {old.latency_profile_hash} (now "
                     f"{meta.latency_profile_hash}: the profile changed since)")
    if diffs:
        raise UserError(f"study '{name}' was created with {diffs[0]}; rerun with its settings to resume it, "
                        f"or pass --study NEW_NAME to start another")
    return study, old


def make_sampler(name: str, seed: int | None, n_objectives: int = 2):
    """The sampler for ``--sampler`` (``SAMPLER_HELP``; benchmarks/results/search_efficiency.md for why gp
    is the default)."""
    import warnings

    import optuna

    check_choice("--sampler", name, SAMPLERS)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        # multivariate: the dimensions interact (FFN width is derived from intra size and ratio);
        # constant_liar: running trials of other workers count as bad, so workers spread out;
        # 4 start-up trials: a 12-trial search must start modelling early (benchmarks/search_efficiency.py)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True, group=False,
                                          constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return gp_with_fallback(seed)
    return optuna.samplers.RandomSampler(seed=seed)  # "random"


def gp_with_fallback(seed: int | None):
    """``--sampler gp``: Optuna's GPSampler, with TPE (as ``--sampler tpe``) proposing where the GP cannot.

    Optuna 5's GPSampler (optuna/samplers/_gp/sampler.py) fits only COMPLETE trials: a rejected (over the
    latency budget, a repeat), early-stopped or failed trial never enters its model, so with the same data
    it proposes the same candidate again, which is rejected again: a search that never ends (on the demo
    space with a latency budget it got stuck at 200 rejections in a row in every seed tried). So TPE,
    which learns from pruned and infeasible trials, proposes

    - every trial once the study holds an infeasible one (the budget or the space's constraints rejected
      a candidate): the GP's constraint model only ever sees feasible, trained trials;
    - the next trial after one that ended other than complete (rejected, stopped early, failed).

    Otherwise the GP proposes: expected hypervolume improvement, and, while other workers' trials are
    RUNNING, its batch version (qLogEHVI) over their parameters, so parallel workers spread out. Not
    ``deterministic_objective``: the real score is noisy.
    """
    return _gp_with_fallback_class()(seed)


@functools.cache
def _gp_with_fallback_class():
    import optuna
    from optuna.samplers import BaseSampler
    from optuna.trial import TrialState

    class GPWithFallback(BaseSampler):
        def __init__(self, seed: int | None) -> None:
            self.gp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=GP_STARTUP_TRIALS)
            # its own seed: with the GP's, TPE's random start-up would redraw the GP's first candidates
            self.tpe = make_sampler("tpe", None if seed is None else (seed + 1) % 2**32)
            self.last_pick = ""  # "gp" | "tpe": who proposed the latest trial's parameters
            self._picks: dict[int, Any] = {}  # trial number -> the sampler proposing it

        def _tpe_now(self, study) -> bool:
            done = study._get_trials(deepcopy=False, use_cache=False,
                                     states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
            if any(v > 0 for t in done for v in t.constraints.values()):
                return True
            return bool(done) and max(done, key=lambda t: t.number).state != TrialState.COMPLETE

        def infer_relative_search_space(self, study, trial):
            return self.gp.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            use = self.tpe if self._tpe_now(study) else self.gp
            self.last_pick = "tpe" if use is self.tpe else "gp"
            self._picks = {trial.number: use}  # this process's current trial (one at a time)
            return use.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            use = self._picks.get(trial.number, self.gp)
            return use.sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial) -> None:
            self.gp.before_trial(study, trial)
            self.tpe.before_trial(study, trial)

        def after_trial(self, study, trial, state, values) -> None:
            self.gp.after_trial(study, trial, state, values)
            self.tpe.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.gp.reseed_rng()
            self.tpe.reseed_rng()

    GPWithFallback.__module__ = __name__
    GPWithFallback.__qualname__ = "GPWithFallback"
    globals()["GPWithFallback"] = GPWithFallback  # picklable by reference (optuna is imported lazily)
    return GPWithFallback


def __getattr__(name: str):
    """``GPWithFallback`` on first use (unpickling in a fresh process), without importing optuna earlier."""
    if name == "GPWithFallback":
        return _gp_with_fallback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def process_seed(seed: int, study, shared: bool) -> int:
    """The sampler seed of this process: ``seed`` for a fresh study, shifted by the trials already in
    it (a resumed run does not replay the first run's proposals), and by this process's identity on
    a shared database (two workers started at once must not propose the same candidates)."""
    salt = f"{seed}/{len(study.get_trials(deepcopy=False))}"
    if shared:
        salt += f"/{_identity()['key']}/{os.getpid()}"
    if salt == f"{seed}/0":
        return seed
    return int.from_bytes(hashlib.sha256(salt.encode()).digest()[:4], "big")


# ------------------------------------------------------------------------------------------------
# liveness
def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _identity() -> dict[str, Any]:
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
    return {"host": host, "key": f"{host}/{boot}/{pidns}", "pid": os.getpid(), "started": _proc_start(os.getpid())}


def _worker_alive(worker: dict[str, Any]) -> bool | None:
    """True/False when this machine can tell (same pid namespace), None otherwise."""
    if worker.get("key") != _identity()["key"] or "?" in worker.get("key", "?"):
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
        self.identity = _identity()
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


def next_retry(study) -> tuple[int, dict[str, Any]] | None:
    """(number, params) of the first interrupted trial not yet retried (no trial names it in
    ``RETRY_OF_ATTR``, and it is no retry itself), or None: an interrupted candidate is tried once more."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials}
    for t in trials:
        if (outcome_of(t) == "interrupted" and t.number not in retried and RETRY_OF_ATTR not in t.user_attrs
                and t.params):
            return t.number, dict(t.params)
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
        first = t.user_attrs.get(RETRY_OF_ATTR)
        if first is None:
            reason = (f"{INTERRUPTED}{who} died while this trial ran (last sign of life {silent:.0f} s ago); "
                      f"the candidate is tried once more, completed trials are kept")
        else:  # a failure, not an interruption: it counts as a trained trial and is not retried again
            reason = (f"{KILLED_TWICE}: {who} died while this retry of trial {first} ran, as a worker did during "
                      f"trial {first}; not tried again (out of memory for this candidate?)")
        try:
            # the reason first: a finished trial's attributes can no longer be written
            trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, t.number))
            trial.set_user_attr("mbnas.failure", reason)
            study.tell(trial, state=TrialState.FAIL)
        except Exception:  # another worker recovered it first
            continue
        done.append(t.number)
    return done


# ------------------------------------------------------------------------------------------------
# reading results back
@dataclass(frozen=True)
class TrialView:
    """A trial as the CLI, benchmark and export see it."""

    number: int
    outcome: str
    record: TrialRecord | None
    values: tuple[float, float] | None
    feasible: bool
    layer_seconds: list[float]
    retry_of: int | None = None  # the interrupted trial this one retries


def trial_views(study) -> list[TrialView]:
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append(TrialView(
            number=t.number, outcome=outcome_of(t), record=TrialRecord.from_trial(t),
            values=tuple(t.values) if t.values is not None else None,
            feasible=all(v <= 0 for v in t.constraints.values()),
            layer_seconds=list(t.user_attrs.get(LAYER_SECONDS_ATTR) or []),
            retry_of=t.user_attrs.get(RETRY_OF_ATTR),
        ))
    return out
