"""The Ray backend: Ray Tune schedules trials on a cluster, Optuna's searcher proposes them, and every
result lands in the same Optuna storage as the embedded backend's.

How the work is split:
    driver (this process)    Ray's ``OptunaSearch`` asks the study for a trial; its define-by-run
                             function is ``objective.plan_trial`` (sample, predict latency, reject over
                             budget, write the record) and claims the trial for the liveness thread.
                             When Tune reports the trial done, ``objective.finish_trial`` records and
                             tells the outcome. All storage writes happen here, so workers need no
                             database access (a SQLite file works with workers on other machines).
    workers                  ``objective.train_plan``: one trial per worker process, with the CPUs (or
                             GPU) of ``--cpus-per-trial`` / ``--gpus-per-trial``. The per-layer
                             transfer losses are reported to Tune as they come, and the early-stopping
                             rule runs on them against the completed trials' curves as they were when
                             the trial was proposed. The teacher travels as its files (through Ray's
                             object store) and is rebuilt and verified once per worker process.

Without ``--ray-address`` a local cluster is started, bound to 127.0.0.1, with token authentication
(``RAY_AUTH_MODE=token``, a fresh token unless ``RAY_AUTH_TOKEN`` is set) and its temp dir in the run
dir (``<run dir>/ray``; a link to a short path under /tmp when the run dir is too deep for Ray's unix
sockets). With ``--ray-address 127.0.0.1:PORT`` of a head that listens on loopback only, the driver
keeps to loopback as well (see ``_keep_ray_on_loopback``). Rejected trials finish at once but count as
Tune samples, so Tune runs in rounds until the study holds ``--trials`` trained trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers.utils import logging as hf_logging

from nas.records import TrialRecord, settle_score_meta
from nas.runtime import keep_freed_memory
from nas.search.early_stop import Curve
from nas.search.liveness import (DEATHS_ATTR, KILLED_TWICE, Liveness, charge_death, next_retry,
                                recover_interrupted)
from nas.search.objective import (
    ErrorStreak, Outcome, Plan, completed_curves, finish_trial, plan_trial, space_exhausted, train_plan,
)
from nas.search.outcomes import INTERRUPTED, RETRY_OF_ATTR
from nas.search.progress import ProgressBar, record_hypervolume, summarize
from nas.search.samplers import make_sampler, process_seed
from search_spaces.errors import UserError, require

MAX_ROUNDS = 20
_SOCKET_ROOM = 60  # Ray appends about this much below its temp dir for unix sockets (limit 107 bytes)
OUTCOME_KEY = "mbnas_outcome"
NODE_KEY = "mbnas_node"
NODE_ATTR = "mbnas.run.ray_node"


# ------------------------------------------------------------------------------------------------
# the worker side
_WORKER_CTX: dict[str, Any] = {}  # per worker process: the context with its teacher loaded once


def _ship(ctx: Any) -> tuple[Any, dict[str, bytes]]:
    """The context without its teacher, and the teacher folder's files. A pickled torch model loses
    settings such as its attention implementation, so workers rebuild the teacher from its files
    (verified against the recorded sha256), which also works on machines that lack the folder."""
    files = {p.name: p.read_bytes() for p in Path(ctx.teacher.path).iterdir() if p.is_file()}
    return dataclasses.replace(ctx, teacher=None, _settings={}), files


def _worker_context(shipped: Any, files: dict[str, bytes]) -> Any:
    from nas.teacher import load_teacher_dir

    key = hashlib.sha256(files.get("model.safetensors", b"")).hexdigest()
    if key not in _WORKER_CTX:
        folder = Path(tempfile.mkdtemp(prefix="mbnas-teacher-"))
        for name, data in files.items():
            (folder / name).write_bytes(data)
        try:
            teacher = load_teacher_dir(folder, device=shipped.device)
        finally:  # the weights are in memory now; the rest (its vocab.txt: a few hundred kB) is read later
            (folder / "model.safetensors").unlink(missing_ok=True)
        _WORKER_CTX.clear()
        _WORKER_CTX[key] = dataclasses.replace(shipped, teacher=teacher, _settings={})
    return _WORKER_CTX[key]


def _trainable(config: dict[str, Any], shipped: Any, teacher_files: dict[str, bytes]) -> None:
    """One trial on a Ray worker: train the plan the driver made, report per layer and at the end."""
    tune = require("ray.tune", "ray")

    hf_logging.disable_progress_bar()
    keep_freed_memory()  # a Ray worker does not pass through the CLI (nas.runtime)
    ctx = _worker_context(shipped, teacher_files)
    info = config["mbnas"]
    if info["rejected"]:
        tune.report({OUTCOME_KEY: "null"})
        return
    record = TrialRecord.from_user_attrs(info["record"])
    plan = Plan(number=info["number"], candidate=record.candidate, strategy=info["strategy"], record=record)
    curves = [Curve(c["number"], c["latency_ms"], c["strategy"], tuple(c["layer_losses"])) for c in info["curves"]]

    def on_layer(layer: int, loss: float) -> None:
        tune.report({"layer": layer, "transfer_loss": float(loss)})

    outcome = train_plan(plan, ctx, curves, on_layer=on_layer)
    tune.report({"score": outcome.score, "latency_ms": plan.latency_ms, NODE_KEY: _node(),
                 OUTCOME_KEY: json.dumps(dataclasses.asdict(outcome))})


def _node() -> str:
    """Which Ray node ran the trial (its IP and node id), kept in the trial's attributes."""
    ray = require("ray", "ray")

    rc = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{rc.get_node_id()[:12]}"


# ------------------------------------------------------------------------------------------------
# the driver side
class _Driver:
    """The driver's half of every trial: plan on suggest, record and tell on completion."""

    def __init__(self, prep: Any, bar: ProgressBar, liveness: Liveness, deadline: float | None,
                 log: Callable[[str], None]) -> None:
        self.prep, self.bar, self.liveness, self.deadline, self.log = prep, bar, liveness, deadline, log
        self.plans: dict[int, Plan] = {}
        self.layer_losses: dict[int, list[float]] = {}
        self.meta = prep.meta
        self.errors = ErrorStreak()
        self.stopped = False  # the error streak was reached: suggest no more trials

    def define(self, trial: Any) -> dict[str, Any]:
        """Ray's define-by-run space: ``trial`` wraps the Optuna trial Ray just asked for."""
        self.liveness.claim(trial)
        plan = plan_trial(trial, self.prep.ctx)
        self.plans[trial.number] = plan
        curves = [] if plan.rejected else [dataclasses.asdict(c) for c in completed_curves(self.prep.study)]
        return {"mbnas": {"number": trial.number, "strategy": plan.strategy, "rejected": plan.rejected,
                          "record": plan.record.to_user_attrs(), "curves": curves}}

    def layer_reported(self, ot_trial: Any, result: dict[str, Any]) -> None:
        if ot_trial is None or "layer" not in result:
            return
        so_far = self.layer_losses.setdefault(ot_trial.number, [])
        so_far.append(float(result["transfer_loss"]))
        ot_trial.set_user_attr("mbnas.layer_losses", list(so_far))  # live, for the dashboard
        self.bar.update(summarize(self.prep.study, self.meta),
                        f"trial {ot_trial.number} layer {result['layer']} loss {result['transfer_loss']:.4g}")

    def _lost(self, ot_trial: Any, error: bool) -> Outcome:
        """A trial whose Ray worker gave no outcome. ``train_plan`` turns every failure of training
        into an outcome, so an error without one is the worker process gone (killed, out of memory,
        its node lost): the trial is interrupted, and its candidate is tried once more (``next_retry``,
        in ``suggest``); a retry whose worker dies too is failed, not tried again."""
        where = self.prep.ctx.run_dir / "ray_results"
        if not error:
            return Outcome("failed", failure=f"error: the Ray worker training this trial returned no result "
                                             f"(logs under {where})")
        deaths, twice = charge_death(ot_trial)  # a Ray worker's death is counted against its candidate:
        ot_trial.set_user_attr(DEATHS_ATTR, deaths)  # Ray restarts a lost node's workers, not its driver
        if twice:
            return Outcome("failed", failure=f"{KILLED_TWICE}: its Ray worker died while this retry of trial "
                                             f"{ot_trial.user_attrs.get(RETRY_OF_ATTR)} ran, as one did during an "
                                             f"earlier attempt (logs under {where})")
        self.log(f"trial {ot_trial.number}: its Ray worker died; its candidate is tried once more")
        return Outcome("failed", failure=f"{INTERRUPTED}its Ray worker died (killed, out of memory or its node "
                                         f"lost; logs under {where})")

    def finish(self, study: Any, ot_trial: Any, result: dict[str, Any] | None, error: bool) -> None:
        plan = self.plans.pop(ot_trial.number)
        self.layer_losses.pop(ot_trial.number, None)
        self.liveness.release(ot_trial)
        raw = (result or {}).get(OUTCOME_KEY)
        if plan.rejected:
            outcome = None
        elif raw and raw != "null":
            outcome = Outcome(**json.loads(raw))
        else:
            outcome = self._lost(ot_trial, error)
        if (result or {}).get(NODE_KEY):
            ot_trial.set_user_attr(NODE_ATTR, result[NODE_KEY])
        finish_trial(study, ot_trial, plan, outcome)
        if outcome is not None and outcome.kind == "complete":
            self.meta = settle_score_meta(study, self.meta, outcome)
        if outcome is not None and outcome.kind == "failed" and not (outcome.failure or "").startswith(INTERRUPTED):
            self.log(f"trial {ot_trial.number} ({plan.candidate.label}) failed: {outcome.failure}")
        if outcome is not None and self.errors.add(outcome):
            self.stopped = True
        summary = summarize(self.prep.study, self.meta)
        record_hypervolume(self.prep.study, summary)
        self.bar.update(summary)


_StudySearch = None  # the OptunaSearch subclass, made on first use (ray is imported lazily)


def _searcher(driver: _Driver, sampler: Any, storage: Any, study_name: str):
    """Ray's OptunaSearch, with trial outcomes recorded the way the embedded backend records them."""
    global _StudySearch
    if _StudySearch is None:
        Searcher = require("ray.tune.search", "ray").Searcher
        OptunaSearch = require("ray.tune.search.optuna", "ray").OptunaSearch

        class StudySearch(OptunaSearch):
            def suggest(self, trial_id: str):
                if self._driver.stopped or (self._driver.deadline is not None
                                            and time.time() >= self._driver.deadline):
                    return Searcher.FINISHED
                retry = next_retry(self._ot_study)
                if retry is not None:  # trial N was interrupted: its candidate is tried again
                    self._ot_study.enqueue_trial(retry.params, user_attrs=retry.user_attrs)
                    self._driver.log(f"retrying trial {retry.number}'s candidate, which was interrupted")
                return super().suggest(trial_id)

            def on_trial_result(self, trial_id: str, result: dict) -> None:
                self._driver.layer_reported(self._ot_trials.get(trial_id), result)

            def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
                if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                    return
                self._driver.finish(self._ot_study, self._ot_trials[trial_id], result, error)
                self._completed_trials.add(trial_id)

            # The Optuna storage is the record of the search: nothing for Tune to checkpoint; Tune
            # pickles its settings (tuner.pkl), so leave the driver, study and locks out.
            def save(self, checkpoint_path: str) -> None:
                pass

            def restore(self, checkpoint_path: str) -> None:
                pass

            def __getstate__(self) -> dict:
                return {"_metric": self._metric, "_mode": self._mode}

        StudySearch.__qualname__ = StudySearch.__name__ = "_StudySearch"  # picklable by reference
        _StudySearch = StudySearch
    searcher = _StudySearch(space=driver.define, metric=["score", "latency_ms"], mode=["max", "min"],
                            sampler=sampler, study_name=study_name, storage=storage)
    searcher._driver = driver
    return searcher


def _routable_ip() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
    except OSError:
        return None


def _head_on_loopback_only(address: str) -> bool:
    """True when ``address`` names this machine's loopback and the head answers there only."""
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return False
    ip = _routable_ip()
    if ip is None or ip.startswith("127."):
        return True
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((ip, int(port))) != 0


def _keep_ray_on_loopback() -> None:
    """Make Ray use 127.0.0.1 as this node's address instead of swapping in the routable one.

    Ray replaces 127.0.0.1 by the machine's routable address (``resolve_ip_for_localhost``) unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; with it, a head started here binds its GCS, raylet and
    agents to 127.0.0.1 only, and a driver reaches a head that does."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray was imported before: the constant was read already
        constants.ENABLE_RAY_CLUSTER = False


@contextlib.contextmanager
def ray_cluster(address: str | None, run_dir: Path, num_gpus: int | None, log: Callable[[str], None]):
    """Connect to ``address``, or start a local token-authenticated cluster bound to 127.0.0.1."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # per-layer reports carry no final metrics
    # Tune's newer console output prints its results folder and a TensorBoard hint even at verbose=0;
    # the results live in the study (progress bar, dashboard), so the older, silent reporter
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address is None or _head_on_loopback_only(address):
        _keep_ray_on_loopback()
    if address is None:  # before importing ray: it reads the authentication mode once
        os.environ.pop("RAY_ADDRESS", None)
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray = require("ray", "ray")
    require("ray.tune", "ray")
    if ray.is_initialized():
        yield
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(f"--ray-address {address}: cannot join the cluster ({type(exc).__name__}: {first}); "
                            f"with token authentication set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN as on the "
                            f"cluster") from None
    else:
        temp = run_dir / "ray"
        if len(str(temp)) + _SOCKET_ROOM > 107:
            short = Path(tempfile.mkdtemp(prefix="mbnas-ray-"))
            if temp.is_symlink() or not temp.exists():
                temp.unlink(missing_ok=True)
                temp.symlink_to(short, target_is_directory=True)
            temp = short
        temp.mkdir(parents=True, exist_ok=True)
        (temp / "ray_current_cluster").unlink(missing_ok=True)  # a killed run's leftover breaks ray.init
        ray.init(num_cpus=os.cpu_count(), num_gpus=num_gpus, _temp_dir=str(temp.resolve()),
                 include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        log(f"started a local Ray cluster on 127.0.0.1 (token auth, temp dir {run_dir / 'ray'})")
    try:
        yield
    finally:
        ray.shutdown()


def _gpus_per_trial(cfg: Any) -> float:
    return cfg.gpus_per_trial if cfg.gpus_per_trial is not None else (1.0 if cfg.device.startswith("cuda") else 0.0)


JOIN_PROBE_S = 5.0  # how long a head's port may take to answer before --ray-address is called unreachable


def check_ray_setup(cfg: Any) -> None:
    """What can be known before the study is created (a refused search leaves no empty study behind):
    a local cluster can hold one trial; a ``--ray-address`` answers at all (ray.init would retry an
    address where nothing listens for ever, printing only Ray's own connection lines)."""
    if not cfg.ray_address:
        _local_resources(cfg, _gpus_per_trial(cfg))
        return
    address = cfg.ray_address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    if address == "auto" or not port.isdigit():
        return  # Ray resolves these itself
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=JOIN_PROBE_S).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UserError(f"--ray-address {cfg.ray_address}: nothing answers there ({why}); start the head with "
                        f"'ray start --head' (README, 'Scale out') or give its address") from None


def _local_resources(cfg: Any, gpus_per_trial: float) -> int:
    """GPUs to give a local cluster (all torch sees, when trials use any); a trial that asks for more
    CPUs or GPUs than this machine has is refused here, since Ray would wait for them forever."""
    cpus = os.cpu_count() or 1
    if cfg.cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {cfg.cpus_per_trial:g}: this machine has {cpus} CPUs; a local Ray "
                        f"cluster could never start a trial")
    if not gpus_per_trial:
        return 0

    have = torch.cuda.device_count()
    if gpus_per_trial > have:
        raise UserError(f"--gpus-per-trial {gpus_per_trial:g}: torch sees {have} GPU(s) here; a local Ray "
                        f"cluster could never start a trial")
    return have


def run_ray(prep: Any, log: Callable[[str], None] = print) -> None:
    cfg, study, ctx = prep.config, prep.study, prep.ctx
    gpus = _gpus_per_trial(cfg)
    ctx.threads = cfg.threads or max(1, int(cfg.cpus_per_trial))
    local_gpus = _local_resources(cfg, gpus) if not cfg.ray_address else None
    deadline = time.time() + cfg.timeout if cfg.timeout else None
    summary = summarize(study, prep.meta)
    bar = ProgressBar(cfg.trials, summary.trained, enabled=cfg.progress)
    liveness = Liveness()
    driver = _Driver(prep, bar, liveness, deadline, log)
    try:
        with ray_cluster(cfg.ray_address, ctx.run_dir, local_gpus, log):
            tune = require("ray.tune", "ray")

            shipped, teacher_files = _ship(ctx)
            trainable = tune.with_resources(tune.with_parameters(_trainable, shipped=shipped,
                                                                 teacher_files=teacher_files),
                                            {"cpu": cfg.cpus_per_trial, "gpu": gpus})
            for round_ in range(MAX_ROUNDS):
                recover_interrupted(study, prep.storage)
                summary = summarize(study, driver.meta)
                bar.update(summary)
                remaining = cfg.trials - summary.trained - summary.counts.get("running", 0)
                if remaining <= 0 or (deadline is not None and time.time() >= deadline):
                    break
                exhausted = space_exhausted(study, ctx)
                if exhausted:
                    log(exhausted)
                    break
                sampler = make_sampler(cfg.sampler, process_seed(cfg.seed, study, shared=True))
                searcher = _searcher(driver, sampler, prep.storage, study.study_name)
                tuner = tune.Tuner(
                    trainable,
                    tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining, reuse_actors=True),
                    run_config=tune.RunConfig(name=f"{study.study_name}-{int(time.time())}-{round_}",
                                              storage_path=str(ctx.run_dir / "ray_results"), verbose=0,
                                              failure_config=tune.FailureConfig(max_failures=0)),
                )
                tuner.fit()
                if driver.stopped:
                    raise driver.errors.error()
            else:
                log(f"stopped after {MAX_ROUNDS} Ray Tune rounds: most proposals were rejected over the budget")
    finally:
        liveness.close()
        bar.update(summarize(study, driver.meta))
        bar.close()
