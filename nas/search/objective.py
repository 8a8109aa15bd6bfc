"""One trial of a search, in three steps every backend shares.

1. ``plan_trial``: sample a candidate (and a strategy, when strategies are searched) through the
   Optuna trial, predict its latency, and reject it before any training when it is over the latency
   budget, violates the space's constraints or repeats a trained candidate. The budget is a constraint of the study
   (``trial.set_constraint``: predicted ms minus budget, feasible when <= 0) so constraint-aware
   samplers learn where the budget lies. The trial's ``TrialRecord`` is written now, so even a
   worker killed mid-training leaves a record of what it was training.
2. ``train_plan``: distil the candidate from the teacher; after each layer's phase the transfer loss
   goes to the early-stopping rule (``early_stop``), which may stop it. Divergence (NaN), running out
   of memory and unexpected errors end the trial as failed, with the reason; the search goes on.
   Pure computation: it touches no storage, so Ray runs it on any worker.
3. ``finish_trial``: write the final record and tell Optuna the outcome (see ``study.outcome_of``).
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from nas.device import training_precision
from nas.distill import STRATEGIES, DistillSettings
from nas.records import TrialRecord
from nas.search.early_stop import CandidateStopper, Curve, EarlyStopRule
from nas.search.liveness import GRACE_S, HEARTBEAT_ATTR, KILLED_TWICE
from nas.search.outcomes import (
    CPU_SECONDS_ATTR, LAYER_SECONDS_ATTR, REJECTED, STOPPED, counts_toward_budget, outcome_of,
)
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.ops import count

if TYPE_CHECKING:
    from latency_models.profile import DeviceProfile
    from nas.teacher import Teacher
    from search_spaces.space import SearchSpace

BUDGET_CONSTRAINT = "latency_budget_ms"  # constraint key: predicted ms - budget
SPACE_CONSTRAINT = "space_constraints"  # constraint key: number of violated space constraints


@dataclass
class TrialContext:
    """What every trial of a search needs; built once per process (and shipped to Ray workers).

    strategy: a ``nas.distill.STRATEGIES`` entry, or ``"search"`` to sample it per trial.
    settings_overrides: ``DistillSettings`` fields to replace (e.g. ``{"lr": 1e-3}``).
    run_dir: trained students go to ``run_dir/trial-NNNN/``.
    threads: torch threads per trial (None: torch's default).
    """

    space: SearchSpace
    strategy: str
    objective: str
    profile: DeviceProfile
    teacher: Teacher
    device: str = "cpu"
    seed: int = 0
    budget_ms: float | None = None
    run_dir: Path = Path("runs")
    early_stop: EarlyStopRule | None = field(default_factory=EarlyStopRule)
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    _settings: dict[str, Any] = field(default_factory=dict, repr=False)

    def strategies(self) -> tuple[str, ...]:
        return tuple(STRATEGIES) if self.strategy == "search" else (self.strategy,)

    def settings_for(self, strategy: str):
        """``DistillSettings`` for one strategy, with the overrides applied (cached)."""
        if strategy not in self._settings:
            s = DistillSettings.for_space(self.space, strategy=strategy, objective=self.objective,
                                          device=self.device, seed=self.seed)
            if self.settings_overrides:
                names = {f.name for f in dataclasses.fields(s)}
                unknown = sorted(set(self.settings_overrides) - names)
                if unknown:
                    raise UserError(f"--distill-option {unknown[0]}: not a distillation setting; "
                                    f"known: {', '.join(sorted(names))}")
                s = dataclasses.replace(s, **self.settings_overrides)
            self._settings[strategy] = s
        return self._settings[strategy]


@dataclass(frozen=True)
class Plan:
    """A sampled trial. rejected: why it will not be trained (None: train it)."""

    number: int
    candidate: Candidate
    strategy: str
    record: TrialRecord
    rejected: str | None = None

    @property
    def latency_ms(self) -> float:
        return self.record.latency_ms


@dataclass(frozen=True)
class Outcome:
    """What training a plan produced. kind: complete | stopped | failed."""

    kind: str
    score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    layer_losses: list[float] = field(default_factory=list)
    layer_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    weights: str | None = None
    failure: str | None = None
    score_name: str | None = None  # what ``score`` is, and the data it was measured on
    score_data: str | None = None
    heldout_data: str | None = None  # the masked-LM scores' data (differs from score_data for a downstream objective)
    cpu_seconds: float | None = None  # CPU time of the training process (wall time misleads on a busy host)
    precision: str | None = None  # what the training steps computed in (fp32 / bf16)


# ------------------------------------------------------------------------------------------------
# 1. plan
def plan_trial(trial: Any, ctx: TrialContext) -> Plan:
    """Sample, predict, check: writes the trial's record and constraints (no training)."""
    strategies = ctx.strategies()
    strategy = trial.suggest_categorical("strategy", list(strategies)) if len(strategies) > 1 else strategies[0]
    cand = ctx.space.suggest(trial).replace(name=f"trial-{trial.number}")
    est = ctx.profile.estimate(cand)
    k = count(cand)

    reasons = []
    if ctx.budget_ms is not None:
        trial.set_constraint(BUDGET_CONSTRAINT, est.latency_ms - ctx.budget_ms)
        if est.latency_ms > ctx.budget_ms:
            reasons.append(f"predicted {est.latency_ms:.4g} ms on {est.profile} is over the budget of "
                           f"{ctx.budget_ms:g} ms")
    violations = ctx.space.constraints.violations(cand)
    if violations:
        trial.set_constraint(SPACE_CONSTRAINT, float(len(violations)))
        reasons += violations

    def rejection() -> str | None:
        return (REJECTED + "; ".join(reasons) + " (not trained)") if reasons else None

    record = TrialRecord(
        candidate=cand, params=k.params, flops=k.flops, latency_ms=float(est.latency_ms),
        latency_breakdown={str(op): float(ms) for op, ms in dict(est.breakdown).items()},
        strategy=strategy, teacher_hash=ctx.teacher.hash, failure=rejection(),
    )
    # The record is written before the repeat check: that is what lets two workers planning the
    # same candidate at once agree on which of them trains it (see ``duplicate_of``).
    for key, value in record.to_user_attrs().items():
        trial.set_user_attr(key, value)
    dup = duplicate_of(trial, cand, strategy)
    if dup is not None:
        # training is seeded, so a second run of the same candidate would only repeat the first
        reasons.append(f"same candidate and strategy as trial {dup}, whose result stands")
        record = dataclasses.replace(record, failure=rejection())
        trial.set_user_attr("mbnas.failure", record.failure)
    rejected = record.failure
    return Plan(number=trial.number, candidate=cand, strategy=strategy, record=record, rejected=rejected)


PLAN_WAIT_S = 30.0  # how long a trial waits for an earlier one, asked but not yet marked alive, to write its record
PLAN_WAIT_MAX_S = 600.0  # ... and for one whose worker is alive (heartbeats) but still sampling


def duplicate_of(trial: Any, cand: Candidate, strategy: str, wait_s: float = PLAN_WAIT_S) -> int | None:
    """The number of another trial that trained (or is training, or stopped early) the same
    candidate with the same strategy; None if there is none. The realised candidate is compared,
    not the sampled values: two MHA/FFN ratios can round to one FFN width, and then build one model.
    Small spaces and a converging sampler propose the same candidate again; it is recorded as
    rejected, not retrained. Interrupted and failed trials do not count: those are worth another try
    (an interrupted one gets it as a retry, ``nas.search.liveness.next_retry``), except a candidate that
    killed its worker twice.

    Workers planning at the same moment (``--jobs 2``, several machines on one PostgreSQL study)
    must not both train one candidate, and must not both reject it. Each writes its record first
    and then calls this; of two running trials with one candidate the lower-numbered trains. A
    running trial with a lower number that has not written its record yet is still planning (its
    sampler may take seconds on a long study), so it is waited for: while its worker's heartbeat is
    fresh (``nas.search.liveness.Liveness``), up to ``PLAN_WAIT_MAX_S``; without a heartbeat yet, up
    to ``wait_s`` (a worker that died between asking and claiming is left to the dead-worker
    recovery). A higher-numbered running trial defers to this one, so it is not counted."""
    from optuna.trial import TrialState

    began = time.monotonic()
    want = cand.replace(name=None, mha_ffn_ratio=None)
    while True:
        waited = time.monotonic() - began
        planning = False
        for t in trial.study.get_trials(deepcopy=False):
            kind = outcome_of(t)
            killer = kind == "failed" and str(t.user_attrs.get("mbnas.failure", "")).startswith(KILLED_TWICE)
            if t.number == trial.number or (kind not in ("complete", "stopped", "running") and not killer):
                continue
            if kind == "running" and t.number > trial.number:
                continue
            rec = TrialRecord.from_trial(t)
            if rec is None:
                if t.state == TrialState.RUNNING and t.number < trial.number:
                    beat = t.user_attrs.get(HEARTBEAT_ATTR)
                    alive = isinstance(beat, (int, float)) and time.time() - beat < GRACE_S
                    planning = planning or (waited < PLAN_WAIT_MAX_S if alive else waited < wait_s)
                continue
            if rec.strategy == strategy and rec.candidate.replace(name=None, mha_ffn_ratio=None) == want:
                if kind == "running" and rec.failure:  # rejected, being told so: it trains nothing
                    continue
                return t.number
        if not planning:
            return None
        time.sleep(0.05)


def space_exhausted(study: Any, ctx: TrialContext) -> str | None:
    """Says so when every candidate of the space (times every searched strategy) has been tried:
    trained, being trained, stopped or rejected. Then every further proposal could only repeat one."""
    trials = study.get_trials(deepcopy=False)
    tried = {tuple(sorted(t.params.items())) for t in trials
             if t.params and outcome_of(t) not in ("failed", "interrupted")}
    if len(tried) < ctx.space.size * len(ctx.strategies()):
        return None
    trained = sum(1 for t in trials if counts_toward_budget(t))
    return (f"every one of the {ctx.space.size:,} candidates of space '{ctx.space.name}' has been tried: the "
            f"search ends with {trained} trained trials")


# ------------------------------------------------------------------------------------------------
# 2. train
def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return "out of memory" in str(exc).lower()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def train_plan(plan: Plan, ctx: TrialContext, completed: list[Curve] | None = None,
               on_layer: Callable[[int, float], None] | None = None) -> Outcome:
    """Distil ``plan.candidate``; ``completed``: curves of completed trials for early stopping;
    ``on_layer(layer, loss)``: progress hook (called before the stopping rule)."""
    from nas.distill import Diverged, EarlyStop, distill_candidate

    if ctx.threads:
        import torch

        torch.set_num_threads(ctx.threads)
    settings = ctx.settings_for(plan.strategy)
    precision = training_precision(ctx.device, settings.precision)  # here, on the worker that trains
    stopper = CandidateStopper(ctx.early_stop, plan.latency_ms, plan.strategy, completed or []) \
        if ctx.early_stop is not None else None
    losses: list[float] = []
    stamps: list[float] = []
    t0, cpu0 = time.time(), time.process_time()

    def layer_done(layer: int, loss: float) -> None:
        losses.append(float(loss))
        stamps.append(round(time.time() - t0, 3))
        if on_layer is not None:
            on_layer(layer, loss)
        reason = stopper.check(layer, float(loss)) if stopper is not None else None
        if reason and layer < plan.candidate.num_layers - 1:
            raise EarlyStop(reason)

    def failed(why: str) -> Outcome:
        return Outcome("failed", layer_losses=losses, layer_seconds=stamps, seconds=time.time() - t0, failure=why,
                       cpu_seconds=time.process_time() - cpu0, precision=precision)

    try:
        result = distill_candidate(plan.candidate, ctx.teacher, settings, on_layer=layer_done)
    except EarlyStop as exc:
        return Outcome("stopped", layer_losses=losses, layer_seconds=stamps, seconds=time.time() - t0,
                       failure=STOPPED + (str(exc) or "early stopping"), cpu_seconds=time.process_time() - cpu0,
                       precision=precision)
    except Diverged as exc:
        return failed(f"diverged: {exc}")
    except Exception as exc:  # noqa: BLE001 - one bad candidate must not end the search
        if _is_oom(exc):
            return failed(f"out of memory: {_one_line(exc)}")
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        return failed(f"error: {_one_line(exc)}{where}")

    seconds, cpu_seconds = time.time() - t0, time.process_time() - cpu0
    score = float(result.score)
    if not math.isfinite(score):
        return failed(f"diverged: {result.score_name} is {score} after training")
    out_dir = ctx.run_dir / f"trial-{plan.number:04d}"
    try:
        result.save(out_dir)
    except OSError as exc:  # a full disk, or a Ray node without the driver's run dir: say so, keep going
        return failed(f"error: trained, but its weights could not be saved to {out_dir} ({_one_line(exc)})")
    return Outcome(
        "complete", score=score, scores={k: float(v) for k, v in dict(result.scores).items()},
        layer_losses=[float(x) for x in result.layer_losses] or losses, layer_seconds=stamps,
        seconds=seconds, weights=f"{out_dir.name}/model.safetensors",
        score_name=str(result.score_name), score_data=str(result.score_data), cpu_seconds=cpu_seconds,
        heldout_data=result.heldout_data, precision=precision,
    )


# ------------------------------------------------------------------------------------------------
# 3. finish
MAX_ERRORS_IN_A_ROW = 3  # unexpected errors (not NaN, not OOM) in a row point to a bug, not a candidate


@dataclass
class ErrorStreak:
    """Counts trained trials that failed with an unexpected error (``error:``), in a row: after
    ``MAX_ERRORS_IN_A_ROW`` a search stops (``error()``) instead of failing every trial it has left."""

    n: int = 0
    last: str = ""

    def add(self, outcome: Outcome) -> bool:
        """Count ``outcome``; True when the search should stop."""
        failure = outcome.failure or ""
        self.n, self.last = (self.n + 1, failure) if failure.startswith("error:") else (0, self.last)
        return self.n >= MAX_ERRORS_IN_A_ROW

    def error(self) -> RuntimeError:
        return RuntimeError(f"{self.n} trials in a row failed with an unexpected error, the last: {self.last}")


def final_record(plan: Plan, outcome: Outcome) -> TrialRecord:
    return dataclasses.replace(
        plan.record, score=outcome.score, scores=dict(outcome.scores), layer_losses=list(outcome.layer_losses),
        seconds=round(outcome.seconds, 3), weights=outcome.weights, failure=outcome.failure,
        precision=outcome.precision,
    )


def finish_trial(study: Any, trial: Any, plan: Plan, outcome: Outcome | None) -> None:
    """Record and tell. ``outcome`` None: the plan was rejected and never trained."""
    from optuna.trial import TrialState

    if outcome is None:
        study.tell(trial, state=TrialState.PRUNED)
        return
    for key, value in final_record(plan, outcome).to_user_attrs().items():
        if key != "mbnas.candidate":  # unchanged since plan_trial
            trial.set_user_attr(key, value)
    trial.set_user_attr(LAYER_SECONDS_ATTR, list(outcome.layer_seconds))
    if outcome.cpu_seconds is not None:
        trial.set_user_attr(CPU_SECONDS_ATTR, round(outcome.cpu_seconds, 3))
    if outcome.kind == "complete":
        study.tell(trial, [outcome.score, plan.latency_ms])
    elif outcome.kind == "stopped":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def completed_curves(study: Any) -> list[Curve]:
    """Early stopping's reference: completed trials' per-layer transfer losses."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rec = TrialRecord.from_trial(t)
        if rec is not None and rec.layer_losses:
            out.append(Curve(t.number, rec.latency_ms, rec.strategy, tuple(rec.layer_losses)))
    return out
