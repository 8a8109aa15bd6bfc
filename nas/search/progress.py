"""What a search shows while it runs and when it ends: one summary of the study, computed from the
storage (so every worker, and a rerun, shows the same numbers), a tqdm bar, and the Pareto table."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from nas.pareto import ParetoPoint, hypervolume, pareto_front
from nas.records import StudyMeta, describe_score
from nas.search.outcomes import HYPERVOLUME_ATTR, TrialView, trial_views
from nas.table import markdown_table


@dataclass(frozen=True)
class Summary:
    """A study at one moment. front: feasible completed trials on the Pareto front (by latency)."""

    views: list[TrialView]
    counts: dict[str, int]  # outcome -> trials
    front: list[TrialView]
    hypervolume: float

    @property
    def trained(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("complete", "stopped", "failed"))


def summarize(study: Any, meta: StudyMeta) -> Summary:
    views = trial_views(study)
    done = [v for v in views if v.outcome == "complete" and v.values is not None and v.feasible]
    scores = [v.values[0] for v in done]
    lats = [v.values[1] for v in done]
    front: list[ParetoPoint] = pareto_front(scores, lats)
    hv = hypervolume(scores, lats, meta.reference_point)
    return Summary(views=views, counts=dict(Counter(v.outcome for v in views)),
                   front=[done[p.index] for p in front], hypervolume=hv)


def record_hypervolume(study: Any, summary: Summary) -> None:
    """Store the latest hypervolume next to ``StudyMeta`` (same reference point, so comparable)."""
    study.set_user_attr(HYPERVOLUME_ATTR, summary.hypervolume)


class ProgressBar:
    """tqdm on stderr: trained trials of the target, Pareto size, hypervolume, other outcomes."""

    def __init__(self, total: int, initial: int, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=min(initial, total), desc="search", unit="trial",
                        file=sys.stderr, disable=not enabled, dynamic_ncols=True)
        self._shown = min(initial, total)

    def update(self, summary: Summary, status: str = "") -> None:
        n = min(summary.trained, self.bar.total)
        advanced = n > self._shown
        if advanced:
            self.bar.update(n - self._shown)
            self._shown = n
        c = summary.counts
        post = {"pareto": len(summary.front), "hv": f"{summary.hypervolume:.4g}"}
        for key, short in (("rejected", "rej"), ("stopped", "stop"), ("failed", "fail"), ("interrupted", "int")):
            if c.get(key):
                post[short] = c[key]
        if status:
            post["now"] = status
        # redraw at once only when a trial finished; layer-by-layer status waits for tqdm's interval
        self.bar.set_postfix(post, refresh=advanced or not status)

    def close(self) -> None:
        self.bar.close()


def latency_label(meta: StudyMeta) -> str:
    return f"predicted on {meta.latency_profile} ({meta.latency_error})"


def score_label(meta: StudyMeta) -> str:
    return f"{describe_score(meta.score_name)} on {meta.score_data}"


def pareto_table(summary: Summary, meta: StudyMeta) -> str:
    """The front as a markdown table; the lines under it say what each number is and where it is from."""
    rows = []
    for v in summary.front:
        r = v.record
        rows.append([v.number, r.candidate.label, r.strategy, f"{r.params / 1e6:.3g}", f"{r.flops / 1e9:.3g}",
                     f"{v.values[0]:.4g}", f"{v.values[1]:.4g}"])  # 4 digits: a likelihood is ~0.02
    table = markdown_table(["trial", "architecture", "strategy", "params M", "GFLOPs", f"{meta.score_name} (1)",
                            f"latency ms, predicted on {meta.latency_profile} (2)"], rows)
    return (f"{table}\n(1) {score_label(meta)}\n(2) {latency_label(meta)}; batch 1, sequence length "
            f"{meta.space.get('fixed', {}).get('seq_len', '?')}; a prediction, not a measurement")


def outcome_line(summary: Summary) -> str:
    c = summary.counts
    parts = [f"{c.get(k, 0)} {k}" for k in ("complete", "stopped", "failed", "rejected", "interrupted", "running")
             if c.get(k)]
    return ", ".join(parts) or "no trials"
