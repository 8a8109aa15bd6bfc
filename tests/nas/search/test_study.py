"""Storage bookkeeping: outcomes, resume of dead workers' trials, settings checks, samplers."""

from __future__ import annotations

import os
import time

import pytest

from nas.errors import UserError
from nas.records import StudyMeta


def _meta(**changes) -> StudyMeta:
    base = dict(space={"name": "smoke"}, strategy="progressive", objective="mlm", score_name="mlm_accuracy",
                score_data="held-out", latency_profile="pixel4-cpu-tflite", latency_error="±5%",
                teacher_hash="abc", reference_point=(0.0, 10.0))
    return StudyMeta(**{**base, **changes})


@pytest.fixture
def storage(tmp_path):
    from nas.search.study import open_storage

    return open_storage(f"sqlite:///{tmp_path / 'sub' / 's.db'}")  # the folder is created


def test_dead_workers_trials_are_marked_interrupted(storage):
    from optuna.trial import TrialState

    from nas.search.study import HEARTBEAT_ATTR, WORKER_ATTR, _identity, create_or_check, outcome_of, \
        recover_interrupted

    study, _ = create_or_check(storage, "s", _meta())
    me = _identity()
    here_dead = {**me, "pid": os.getpid(), "started": "0"}  # this pid, but another process's start time
    elsewhere = {**me, "key": "other-host/boot/1", "host": "other-host"}
    trials = [study.ask() for _ in range(4)]
    now = time.time()
    for t, worker, beat in [(trials[0], here_dead, now), (trials[1], me, now),
                            (trials[2], elsewhere, now - 1000), (trials[3], elsewhere, now)]:
        t.set_user_attr(WORKER_ATTR, worker)
        t.set_user_attr(HEARTBEAT_ATTR, beat)
    assert recover_interrupted(study, storage) == [0, 2]
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING]
    assert [outcome_of(t) for t in study.trials] == ["interrupted", "running", "interrupted", "running"]
    assert "other-host" in study.trials[2].user_attrs["mbnas.failure"]


def test_resuming_with_other_settings_is_refused(storage):
    from nas.search.study import create_or_check

    create_or_check(storage, "s", _meta())
    create_or_check(storage, "s", _meta(seed=3))  # run settings may differ
    with pytest.raises(UserError, match="created with latency_profile 'pixel4-cpu-tflite'"):
        create_or_check(storage, "s", _meta(latency_profile="other"))
    with pytest.raises(UserError, match="--study NEW_NAME"):
        create_or_check(storage, "s", _meta(teacher_hash="def"))
    # --distill-option changes what the scores mean
    with pytest.raises(UserError, match="created with distill_options {}"):
        create_or_check(storage, "s", _meta(distill_options={"lr": 1e-3}))
    # a different score (--score, or a new default) would mix incomparable trials
    with pytest.raises(UserError, match="created with score_name"):
        create_or_check(storage, "s", _meta(score_name="teacher_fidelity"))


def test_studies_from_before_distill_options_still_resume(storage):
    import optuna

    from nas.records import DIRECTIONS
    from nas.search.study import create_or_check

    study = optuna.create_study(storage=storage, study_name="old", directions=list(DIRECTIONS))
    for k, v in _meta().to_user_attrs().items():
        if k != "mbnas.distill_options":  # an older version did not record it
            study.set_user_attr(k, v)
    _, meta = create_or_check(storage, "old", _meta())
    assert meta.distill_options == {}


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_samplers(name):
    from nas.search.study import make_sampler

    assert make_sampler(name, 0) is not None


def test_unknown_storage_is_a_user_error():
    from nas.search.study import open_storage

    with pytest.raises(UserError, match="not a database URL"):
        open_storage("runs/mbnas.db")


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_samplers_survive_every_outcome(name):
    """Rejected (PRUNED, infeasible), stopped (PRUNED, feasible), failed and complete trials mixed:
    multi-objective TPE reads pruned trials' intermediate values through ``study.direction``, which a
    multi-objective study refuses, so the search must never report them (it does not)."""
    import optuna
    from optuna.trial import TrialState

    from nas.records import DIRECTIONS
    from nas.search.study import make_sampler
    from search_spaces import load_space

    space = load_space("smoke")
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=make_sampler(name, 0))
    n = 8 if name == "gp" else 14  # the GP refits per trial: slow on a shared CPU
    for i in range(n):
        trial = study.ask()
        c = space.suggest(trial)
        trial.set_constraint("latency_budget_ms", c.intra_size - 16.0)
        if c.intra_size > 16:
            study.tell(trial, state=TrialState.PRUNED)  # rejected over the budget
        elif i % 5 == 1:
            study.tell(trial, state=TrialState.PRUNED)  # stopped early
        elif i % 5 == 2:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, [c.num_ffn / 10 + i / 100, float(c.intra_size)])
    assert len(study.trials) == n
