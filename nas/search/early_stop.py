"""Per-layer early stopping for a multi-objective search.

Optuna prunes single-objective studies only, so the search stops hopeless candidates itself, from
the transfer loss the trainer reports after each layer's phase (``distill_candidate(on_layer=...)``).

The rule (``EarlyStopRule``): at layer ``l`` a candidate is stopped when at least ``min_peers``
completed trials of the same strategy whose predicted latency is similar or lower
(``<= (1 + latency_tol) x`` its own) reached a transfer loss at layer ``l`` of at most its own
divided by ``factor``. Those trials are as fast and, by a wide margin, better at the same point of
training: the candidate would very likely end up dominated by them, so its remaining layers and
its evaluation are skipped. Comparing only against trials that are no slower keeps the rule from
stopping a fast candidate merely because it is small: a faster model is expected to transfer
worse and may still be on the front.

``replay`` measures what the rule saves and costs on a finished study that ran *without* it: it
walks the trials in order, lets the rule see only trials that it would itself have completed, and
reports the seconds saved and the hypervolume lost (the sampler would have reacted to the stopped
trials, which a replay cannot show).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from nas.pareto import hypervolume, pareto_front


@dataclass(frozen=True)
class EarlyStopRule:
    """factor: how much worse than a peer counts as hopeless; min_peers: how many such peers it takes;
    latency_tol: peers may be this much slower (relative) and still count as similar;
    min_completed: no stopping before the study holds this many completed trials."""

    factor: float = 1.5
    min_peers: int = 2
    latency_tol: float = 0.10
    min_completed: int = 3

    def describe(self) -> str:
        return (f"stop at layer l when >= {self.min_peers} completed trials no slower than "
                f"{1 + self.latency_tol:.2f}x had a transfer loss <= 1/{self.factor:g} of its own at l")


@dataclass(frozen=True)
class Curve:
    """A completed trial's per-layer transfer losses, as the rule sees it."""

    number: int
    latency_ms: float
    strategy: str | None
    layer_losses: tuple[float, ...]


class CandidateStopper:
    """The rule applied to one candidate; ``check`` after each layer returns a reason or None."""

    def __init__(self, rule: EarlyStopRule, latency_ms: float, strategy: str | None,
                 completed: Sequence[Curve]) -> None:
        self.rule = rule
        self.latency_ms = latency_ms
        self.enabled = len(completed) >= rule.min_completed
        limit = latency_ms * (1 + rule.latency_tol)
        self.peers = [c for c in completed if c.strategy == strategy and c.latency_ms <= limit]

    def check(self, layer: int, loss: float) -> str | None:
        if not self.enabled or not math.isfinite(loss):
            return None  # a non-finite loss is the trainer's to report (Diverged)
        better = [c for c in self.peers if len(c.layer_losses) > layer and math.isfinite(c.layer_losses[layer])
                  and c.layer_losses[layer] * self.rule.factor <= loss]
        if len(better) < self.rule.min_peers:
            return None
        best = min(better, key=lambda c: c.layer_losses[layer])
        return (f"transfer loss {loss:.4g} at layer {layer} is over {self.rule.factor:g}x that of "
                f"{len(better)} completed trials no slower than {self.latency_ms:.2f} ms (best: trial "
                f"{best.number}, {best.layer_losses[layer]:.4g} at {best.latency_ms:.2f} ms)")


# ------------------------------------------------------------------------------------------------
# measuring the rule on a finished study
@dataclass(frozen=True)
class ReplayTrial:
    """A trial that trained to the end. layer_seconds: wall time when each layer's phase ended;
    seconds: the whole trial (training + evaluation)."""

    number: int
    latency_ms: float
    strategy: str | None
    layer_losses: tuple[float, ...]
    layer_seconds: tuple[float, ...]
    seconds: float
    score: float


@dataclass(frozen=True)
class ReplayResult:
    rule: EarlyStopRule
    trials: int
    stopped: dict[int, int] = field(default_factory=dict)  # trial number -> layer it would stop at
    seconds_total: float = 0.0
    seconds_saved: float = 0.0
    hypervolume_full: float = 0.0
    hypervolume_stopped: float = 0.0
    front_lost: tuple[int, ...] = ()  # trials on the full front that the rule would have stopped

    @property
    def saved_fraction(self) -> float:
        return self.seconds_saved / self.seconds_total if self.seconds_total else 0.0

    @property
    def hypervolume_loss(self) -> float:
        """Relative: 0 = nothing lost."""
        return 1 - self.hypervolume_stopped / self.hypervolume_full if self.hypervolume_full else 0.0


def replay(trials: Sequence[ReplayTrial], rule: EarlyStopRule, reference: tuple[float, float]) -> ReplayResult:
    completed: list[Curve] = []
    stopped: dict[int, int] = {}
    saved = 0.0
    for t in sorted(trials, key=lambda t: t.number):
        stopper = CandidateStopper(rule, t.latency_ms, t.strategy, completed)
        # as in training: never after the last layer, whose phase is done (only evaluation would be saved)
        layer = next((i for i, loss in enumerate(t.layer_losses[:-1]) if stopper.check(i, loss)), None)
        if layer is None:
            completed.append(Curve(t.number, t.latency_ms, t.strategy, tuple(t.layer_losses)))
            continue
        stopped[t.number] = layer
        done_at = t.layer_seconds[layer] if layer < len(t.layer_seconds) else t.seconds
        saved += max(0.0, t.seconds - done_at)
    scores = [t.score for t in trials]
    lats = [t.latency_ms for t in trials]
    kept = [i for i, t in enumerate(trials) if t.number not in stopped]
    full_front = {trials[p.index].number for p in pareto_front(scores, lats)}
    return ReplayResult(
        rule=rule, trials=len(trials), stopped=stopped,
        seconds_total=sum(t.seconds for t in trials), seconds_saved=saved,
        hypervolume_full=hypervolume(scores, lats, reference),
        hypervolume_stopped=hypervolume([scores[i] for i in kept], [lats[i] for i in kept], reference),
        front_lost=tuple(sorted(full_front & set(stopped))),
    )
