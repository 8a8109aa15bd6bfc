"""``run_search``: from settings to a finished study, whichever backend trains the trials.

Setting up is the same for every backend: load the space, the latency profile and the teacher;
open (or resume) the study and check that a resumed study was made with the same settings; mark
trials of dead workers as interrupted; fix the hypervolume reference point once. Then the backend
runs trials until the study holds ``trials`` trained ones (``study.counts_toward_budget``: trials
rejected over the budget cost no training and do not count; interrupted ones are redone).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from nas.device import check_device, precision_note, training_precision, worker_device
from nas.distill import STRATEGIES
from nas.distill.settings import DISTILL_OPTIONS, OBJECTIVES, RECIPE_VERSION, user_data_of
from nas.records import StudyMeta
from nas.search.defaults import (
    BACKENDS, DEFAULT_OBJECTIVE, DEFAULT_PROFILE, DEFAULT_SAMPLER, DEFAULT_SPACE, DEFAULT_STORAGE, DEFAULT_STRATEGY,
    DEFAULT_TRIALS, SAMPLERS,
)
from nas.search.early_stop import EarlyStopRule
from nas.search.liveness import recover_interrupted
from nas.search.local_workers import LostWorker, local_workers
from nas.search.objective import TrialContext
from nas.search.progress import Summary, summarize
from nas.search.storage import default_run_dir, open_storage
from nas.search.study import create_or_check
from search_spaces import load_space
from search_spaces.errors import UserError, check_choice
from search_spaces.space import RandomSuggester

SCORE_FLOOR = 0.0  # worst acceptable score of the hypervolume reference point
REFERENCE_SAMPLES = 512  # random candidates whose slowest prediction bounds the reference latency


@dataclass
class SearchConfig:
    """Settings of ``mbnas search`` (see ``nas/cli/search.py`` for each option's help)."""

    space: str = DEFAULT_SPACE
    strategy: str = DEFAULT_STRATEGY
    objective: str = DEFAULT_OBJECTIVE
    device_profile: str = DEFAULT_PROFILE
    latency_budget_ms: float | None = None
    sampler: str = DEFAULT_SAMPLER
    trials: int = DEFAULT_TRIALS
    timeout: float | None = None
    storage: str = DEFAULT_STORAGE
    study: str | None = None
    backend: str = BACKENDS[0]
    ray_address: str | None = None
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"  # of the training steps (nas.device.training_precision); the study records it
    teacher: str | None = None
    run_dir: str | None = None
    early_stop: EarlyStopRule | None = field(default_factory=EarlyStopRule)
    distill_options: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # --corpus / --task-csv as DistillSettings fields
    score: str | None = None  # --score: the task-agnostic objective (None: DistillSettings' default)
    threads: int | None = None  # torch CPU threads per trial (None: torch's default, all cores)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 with --device cuda, else 0
    progress: bool = True
    jobs: int = 1  # optuna backend: worker processes on this machine (``local_workers``)
    worker_argv: list[str] | None = None  # the command that starts one more worker (needed for jobs > 1)
    worker_index: int = 0  # 0: the process the user started; k > 0: extra local worker k

    @property
    def shared(self) -> bool:
        """Whether other processes may work on the study at the same time."""
        return not self.storage.startswith("sqlite") or self.jobs > 1 or self.worker_index > 0


def default_study_name(space: str, strategy: str, objective: str) -> str:
    return f"{Path(space).stem}-{strategy}-{objective}"


@dataclass
class Prepared:
    """A study ready for a backend."""

    config: SearchConfig
    storage: Any
    study: Any
    meta: StudyMeta
    ctx: TrialContext
    recovered: list[int]


@dataclass
class SearchResult:
    study_name: str
    storage: str
    meta: StudyMeta
    summary: Summary
    recovered: list[int]
    lost: list = field(default_factory=list)  # LostWorker: --jobs workers that died during the search


def check_study_name(name: str) -> None:
    """A study name is also the folder its students are kept in (``<storage dir>/<name>/``): one
    line for a name that would be a path elsewhere, hidden, blank or too long for a folder."""
    if not name.strip() or name != name.strip():
        raise UserError(f"--study {name!r}: give a name without leading or trailing spaces")
    if "/" in name or "\\" in name or name.startswith(".") or len(name) > 100:
        raise UserError(f"--study {name!r}: the name is also its run folder's; use letters, digits, '-', '_' "
                        f"(no '/', no leading '.', at most 100 characters)")


def _check(cfg: SearchConfig) -> None:
    check_choice("--strategy", cfg.strategy, (*STRATEGIES, "search"))
    check_choice("--objective", cfg.objective, OBJECTIVES)
    check_choice("--sampler", cfg.sampler, SAMPLERS)
    check_choice("--backend", cfg.backend, BACKENDS)
    if cfg.trials < 1:
        raise UserError(f"--trials must be at least 1, got {cfg.trials}")
    if cfg.latency_budget_ms is not None and not (math.isfinite(cfg.latency_budget_ms) and cfg.latency_budget_ms > 0):
        raise UserError(f"--latency-budget-ms must be a positive number of milliseconds, got {cfg.latency_budget_ms}; "
                        f"leave it out for no budget")
    if cfg.study is not None:
        check_study_name(cfg.study)
    if cfg.score and cfg.objective == "downstream":
        raise UserError(f"--score {cfg.score}: with --objective downstream the study's score is downstream_accuracy; "
                        f"leave --score out (every masked-LM score is still measured and recorded)")
    if cfg.backend == "ray" and cfg.device.startswith("cuda:"):
        raise UserError(f"--device {cfg.device} with --backend ray: Ray gives each trial its own GPU "
                        f"(--gpus-per-trial); give --device cuda")
    own_flags = {"device": "--device", "precision": "--precision", "seed": "--seed", "strategy": "--strategy",
                 "objective": "--objective",
                 "score_name": "--score", "corpus": "--corpus", "task_csv": "--task-csv"}
    for k in cfg.distill_options:
        if k in own_flags:
            recorded = "" if k == "device" else ", which the study records"  # a study may train on several devices
            raise UserError(f"--distill-option {k}: set it with {own_flags[k]}{recorded}")
        if k not in DISTILL_OPTIONS:
            raise UserError(f"--distill-option {k}: not a distillation setting one can change; known: "
                            f"{', '.join(DISTILL_OPTIONS)}")
    if cfg.threads is not None and cfg.threads < 1:
        raise UserError(f"--threads must be at least 1, got {cfg.threads}")
    if cfg.ray_address and cfg.backend != "ray":
        raise UserError("--ray-address needs --backend ray")
    if cfg.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {cfg.jobs}")
    if cfg.jobs > 1 and cfg.backend != "optuna":
        raise UserError("--jobs is for the optuna backend; with --backend ray, Ray runs one trial per "
                        "--cpus-per-trial CPUs")
    if cfg.jobs > 1 and not cfg.worker_argv:
        raise UserError("jobs > 1 needs worker_argv, the command line that starts one more worker")


def _space_samples(space, n: int = REFERENCE_SAMPLES) -> list:
    rng = RandomSuggester(0)
    return [space.suggest(rng) for _ in range(n)]


def prepare(cfg: SearchConfig, log: Callable[[str], None] = print) -> Prepared:
    from latency_models import load_profile
    from latency_models.calibrate import other_host
    from nas.teacher import load_teacher

    _check(cfg)
    if cfg.backend == "ray":
        from nas.search.ray_backend import check_ray_setup

        check_ray_setup(cfg)
    elif cfg.jobs > (os.cpu_count() or 1) and not cfg.worker_index:
        log(f"note: --jobs {cfg.jobs} on {os.cpu_count()} CPUs: the workers share cores, one thread each, so each "
            f"trial takes longer")
    # a driver of a Ray cluster trains nothing: it may be a CPU-only head sending trials to GPU
    # workers, so its own device says nothing about theirs (nor about their precision)
    remote = cfg.backend == "ray" and bool(cfg.ray_address)
    check_device(cfg.device, here=not remote)
    bf16_note = None if remote else precision_note(cfg.device, cfg.precision)
    if bf16_note and not cfg.worker_index:
        log(bf16_note)
    if cfg.device == "cuda" and cfg.backend == "optuna":
        import torch

        gpus = torch.cuda.device_count()
        if cfg.jobs > 1 and not cfg.worker_index:
            log(f"--jobs {cfg.jobs} on {gpus} GPU(s): worker k trains on cuda:(k mod {gpus})"
                + ("; workers sharing a GPU each hold a teacher and its cache there" if cfg.jobs > gpus else ""))
        cfg = replace(cfg, device=worker_device(cfg.device, cfg.worker_index, gpus))
    space = load_space(cfg.space)
    profile = load_profile(cfg.device_profile)
    other_cpu = other_host(profile)
    if other_cpu and not cfg.worker_index:
        log(other_cpu)
    # with Ray the teacher is shipped to the workers as files; the driver's copy stays on the CPU
    teacher = load_teacher(space, device="cpu" if cfg.backend == "ray" else cfg.device, path=cfg.teacher)
    name = cfg.study or default_study_name(space.name, cfg.strategy, cfg.objective)
    storage = open_storage(cfg.storage)

    samples = _space_samples(space)
    lats = [float(x) for x in profile.estimate_many(samples)]
    if cfg.latency_budget_ms is not None and min(lats) > cfg.latency_budget_ms:
        raise UserError(f"--latency-budget-ms {cfg.latency_budget_ms:g}: none of {len(lats)} random candidates of "
                        f"space '{space.name}' is predicted that fast on {cfg.device_profile} (fastest "
                        f"{min(lats):.2f} ms); raise the budget")
    try:
        teacher_ms = float(profile.estimate(space.teacher).latency_ms)
    except Exception:  # a profile may not cover the teacher's block-input attention
        teacher_ms = 0.0
    ref_ms = cfg.latency_budget_ms if cfg.latency_budget_ms is not None else max(max(lats), teacher_ms) * 1.05

    # --score is identified by the study's score_name, and the user's data by its content
    # (StudyMeta.user_data), not as distill options
    overrides = {**cfg.distill_options, **cfg.data, "precision": cfg.precision,
                 **({"score_name": cfg.score} if cfg.score else {})}
    ctx = TrialContext(space=space, strategy=cfg.strategy, objective=cfg.objective, profile=profile,
                       teacher=teacher, device=cfg.device, seed=cfg.seed, budget_ms=cfg.latency_budget_ms,
                       early_stop=cfg.early_stop, settings_overrides=overrides, threads=cfg.threads)
    first = ctx.settings_for(ctx.strategies()[0])  # validates --distill-option early
    user_data, note = user_data_of(first, teacher)  # reads the user's files: a bad one stops here, in one line
    if note and not cfg.worker_index:
        log(note)
    score_name = "downstream_accuracy" if cfg.objective == "downstream" else first.score_name  # higher is better
    score_data = "(named by the first completed trial)"  # the trainer says which data; settle_score_meta
    run_dir = Path(cfg.run_dir).resolve() if cfg.run_dir else default_run_dir(cfg.storage, name)
    meta = StudyMeta(
        space=space.to_dict(), strategy=cfg.strategy, objective=cfg.objective, score_name=score_name,
        score_data=score_data, latency_profile=cfg.device_profile, latency_profile_hash=profile.content_hash,
        latency_error=profile.error_over(samples), teacher_hash=teacher.hash,
        reference_point=(SCORE_FLOOR, float(ref_ms)), latency_budget_ms=cfg.latency_budget_ms,
        run_dir=str(run_dir), seed=cfg.seed, distill_options=dict(cfg.distill_options), user_data=user_data,
        precision=None if remote else training_precision(cfg.device, cfg.precision), recipe=RECIPE_VERSION,
    )
    study, meta = create_or_check(storage, name, meta)
    ctx.run_dir = Path(meta.run_dir)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    recovered = recover_interrupted(study, storage)
    for n in recovered:
        log(f"trial {n} was interrupted (its worker is gone): marked failed; the search resumes")
    return Prepared(config=cfg, storage=storage, study=study, meta=meta, ctx=ctx, recovered=recovered)


def run_search(cfg: SearchConfig, log: Callable[[str], None] = print) -> SearchResult:
    prep = prepare(cfg, log)
    if cfg.backend == "ray":
        from nas.search.ray_backend import run_ray

        run_ray(prep, log)
    elif cfg.jobs > 1:
        from nas.search.optuna_backend import run_optuna

        lost = []

        def on_lost(k, proc):  # the watcher thread: mark the dead worker's trial now, not after our own trial
            try:
                marked = tuple(recover_interrupted(prep.study, prep.storage))
            except Exception:  # the storage is busy: the next loop of any worker marks it
                marked = ()
            w = LostWorker(k, proc.pid, proc.returncode, marked)
            lost.append(w)
            log(f"worker {k} (pid {w.pid}) was lost ({w.how}); its trial {', '.join(map(str, marked)) or '(none)'} "
                f"marked interrupted, to be retried once")

        try:
            with local_workers(list(cfg.worker_argv or []), cfg.jobs, log, on_lost=on_lost):
                run_optuna(prep, log)
        except BaseException:
            # the workers are gone now; one that had to be killed (or was cut off while marking its
            # trial) left it RUNNING: mark such trials interrupted here, not at the next run
            try:
                recover_interrupted(prep.study, prep.storage)
            except Exception:
                pass
            raise
    else:
        from nas.search.optuna_backend import run_optuna

        run_optuna(prep, log)
    meta = StudyMeta.from_study(prep.study) or prep.meta
    summary = summarize(prep.study, meta)
    return SearchResult(study_name=prep.study.study_name, storage=cfg.storage, meta=meta, summary=summary,
                        recovered=prep.recovered, lost=lost if cfg.backend != "ray" and cfg.jobs > 1 else [])

