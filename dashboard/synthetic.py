"""Synthetic studies for the dashboard's tests and scale benchmark.

The study is written exactly as a search writes one (``StudyMeta`` as one study user attribute, one
``TrialRecord`` per trial as trial user attributes, objective values ``(score, latency_ms)``), and
the candidates, parameter and FLOP counts are real (``search_spaces`` + ``search_spaces.ops.count``). Only the
**scores are made up** (a smooth function of size plus noise), and so are the timestamps; the study
says so in ``score_name`` / ``score_data``. Latency is the real predictor's when a profile is given,
else a stand-in proportional to FLOPs whose profile name (``synthetic-flops``) says what it is.

Nothing here is used by the dashboard itself.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

SYNTHETIC_SCORE = "synthetic_score"
SYNTHETIC_DATA = "no data: synthetic scores made up for a test (log-size trend + noise)"
STAND_IN_PROFILE = "synthetic-flops"


def first_installed_profile() -> str | None:
    """The first ``latency_models`` profile, or ``None`` while that package has none."""
    try:
        from latency_models import list_profiles
    except ImportError:
        return None
    names = list(list_profiles())
    return names[0] if names else None


def _stand_in_latency(c, counts) -> tuple[float, dict[str, float]]:
    """A FLOPs-proportional latency with a fixed per-op-class split: a stand-in, not a prediction."""
    ms = counts.flops / 2e9 * 1e3 + 0.05 * c.num_layers  # 2 GFLOP/s plus per-layer overhead
    if c.norm == "layer_norm":
        ms *= 1.3
    if c.act == "gelu":
        ms *= 1.1
    split = {"matmul": 0.62, "attention": 0.18, "norm": 0.08, "activation": 0.05, "elementwise": 0.05,
             "embedding": 0.02}
    return ms, {k: ms * v for k, v in split.items()}


def write_synthetic_study(storage: str, study_name: str, n_trials: int, *, space: str = "demo", seed: int = 0,
                          profile: str | None = None, n_running: int = 0, n_failed: int = 0,
                          latency_budget_ms: float | str | None = None):
    """Create ``study_name`` in ``storage`` with ``n_trials`` complete trials (plus running/failed ones).

    Returns the ``optuna.Study``. ``profile``: a ``latency_models`` profile to predict latency with
    (``None``: the FLOPs stand-in). With ``latency_budget_ms`` (ms, or ``"median"`` of the trials'
    latencies) trials over budget carry a violated Optuna constraint, as a budgeted search records them.
    """
    from nas.records import DIRECTIONS, StudyMeta, TrialRecord
    from search_spaces import load_space
    from search_spaces.ops import count
    from search_spaces.space import RandomSuggester

    sp = load_space(space)
    rng = np.random.default_rng(seed)
    suggester = RandomSuggester(seed)
    cands = []
    while len(cands) < n_trials + n_running + n_failed:  # a search revisits architectures too
        c = sp.suggest(suggester)
        if not sp.constraints.violations(c):
            cands.append(c)

    est = None
    if profile is not None:
        from latency_models import load_profile

        prof = load_profile(profile)
        est = [prof.estimate(c) for c in cands]
    counts = [count(c) for c in cands]
    latencies = [(e.latency_ms, dict(e.breakdown)) for e in est] if est else \
        [_stand_in_latency(c, k) for c, k in zip(cands, counts)]
    if latency_budget_ms == "median":
        latency_budget_ms = float(np.median([lat for lat, _ in latencies[:n_trials]]))
    teacher_params = count(sp.teacher).params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=study_name, directions=list(DIRECTIONS))
    t0 = dt.datetime(2026, 11, 21, 9, 0, 0)
    trials: list[FrozenTrial] = []
    lat_all = []
    for i, c in enumerate(cands):
        k = counts[i]
        lat, breakdown = latencies[i]
        lat_all.append(lat)
        # made-up score: rises with log size, LayerNorm/GELU a little better, noise
        score = (0.25 + 0.08 * math.log(k.params / teacher_params * 10 + 1) + 0.01 * (c.norm == "layer_norm")
                 + 0.005 * (c.act == "gelu") + rng.normal(0, 0.01))
        strategy = "progressive" if i % 3 else "theseus"
        losses = sorted((float(x) for x in rng.uniform(0.2, 1.5, c.num_layers)), reverse=True)
        start = t0 + dt.timedelta(seconds=40 * i)
        state = TrialState.COMPLETE
        if i >= n_trials + n_failed:
            state = TrialState.RUNNING
        elif i >= n_trials:
            state = TrialState.FAIL
        rec = TrialRecord(candidate=c.replace(name=f"trial-{i}"), params=k.params, flops=k.flops, latency_ms=lat,
                          latency_breakdown=breakdown,
                          score=None if state != TrialState.COMPLETE else score,
                          scores={} if state != TrialState.COMPLETE else {SYNTHETIC_SCORE: score},
                          layer_losses=losses if state == TrialState.COMPLETE else [], strategy=strategy,
                          teacher_hash="synthetic", seconds=38.0 if state != TrialState.RUNNING else None,
                          failure="synthetic failure (test fixture)" if state == TrialState.FAIL else None)
        system_attrs: dict[str, Any] = {}
        if latency_budget_ms is not None and state == TrialState.COMPLETE:
            system_attrs["constraints:latency_budget_ms"] = lat - latency_budget_ms  # as trial.set_constraint stores it
        trials.append(FrozenTrial(
            number=i, state=state, value=None, values=[score, lat] if state == TrialState.COMPLETE else None,
            datetime_start=start,
            datetime_complete=start + dt.timedelta(seconds=38) if state != TrialState.RUNNING else None,
            params={"norm": c.norm}, distributions={"norm": CategoricalDistribution(["layer_norm", "no_norm"])},
            user_attrs=rec.to_user_attrs(), system_attrs=system_attrs, intermediate_values={}, trial_id=i,
        ))
    study.add_trials(trials)

    prof_name = profile or STAND_IN_PROFILE
    err = est[0].error_summary if est else "none: a FLOPs-proportional stand-in for tests, not a predictor"
    meta = StudyMeta(space=sp.to_dict(), strategy="progressive", objective=f"{SYNTHETIC_SCORE},latency_ms",
                     score_name=SYNTHETIC_SCORE, score_data=SYNTHETIC_DATA, latency_profile=prof_name,
                     latency_error=str(err), teacher_hash="synthetic",
                     reference_point=(0.0, float(max(lat_all)) * 1.1), latency_budget_ms=latency_budget_ms,
                     run_dir=None, seed=seed)
    meta.save(study)
    return study
