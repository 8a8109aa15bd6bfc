"""What happened to a trial, from its Optuna state and the first word of its failure (``outcome_of``):

    complete     COMPLETE  trained and scored; values = (score, predicted latency_ms)
    rejected     PRUNED    "rejected: ..."      never trained: over the latency budget or the space's
                                                constraints (its constraint values are > 0)
    stopped      PRUNED    "stopped early: ..." per-layer early stopping (``early_stop``)
    failed       FAIL      "diverged: ..." / "out of memory: ..." / "error: ..."
    interrupted  FAIL      "interrupted: ..."   its worker died (SIGKILL, power loss); redone on resume
    running      RUNNING

and the read-back of a study's trials (``trial_views``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.records import TrialRecord

# user attributes of the search's own bookkeeping (records.py's parser ignores them)
LAYER_SECONDS_ATTR = "mbnas.run.layer_seconds"  # wall time at the end of each layer's phase
CPU_SECONDS_ATTR = "mbnas.run.cpu_seconds"  # CPU time the trial's training used (its process)
HYPERVOLUME_ATTR = "mbnas.hypervolume"  # study attr: hypervolume of the feasible front, latest
RETRY_OF_ATTR = "mbnas.retry_of"  # on a trial that retries an interrupted one: that trial's number

OUTCOMES = ("complete", "rejected", "stopped", "failed", "interrupted", "running")
REJECTED, STOPPED, INTERRUPTED = "rejected: ", "stopped early: ", "interrupted: "


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
