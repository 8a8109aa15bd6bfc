"""End to end on the smoke space with the real teacher, trainer and latency profile, on real SQLite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from nas.records import StudyMeta, TrialRecord


def test_search_end_to_end(run_mbnas, smoke_search, load_study, tmp_path):
    from nas.pareto import hypervolume
    from nas.search import outcome_of
    from nas.search.outcomes import HYPERVOLUME_ATTR

    storage = f"sqlite:///{tmp_path / 'runs' / 'mbnas.db'}"
    p = run_mbnas(*smoke_search(storage, trials=2))
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    assert "Pareto front" in out and "predicted on pixel4-cpu-tflite" in out
    assert f"mbnas dashboard --storage {storage} --study smoke-progressive-mlm" in out

    study = load_study(storage)
    meta = StudyMeta.from_study(study)
    assert meta.strategy == "progressive" and meta.latency_profile == "pixel4-cpu-tflite"
    assert meta.precision == "fp32"  # --precision auto, on a CPU
    from nas.distill.settings import DEFAULT_SCORE

    assert meta.score_name == DEFAULT_SCORE and "held-out" in meta.score_data  # the default, named by the trainer
    assert meta.score_data in out and meta.heldout_data == meta.score_data  # the objective is a held-out score
    trained = [t for t in study.trials if outcome_of(t) in ("complete", "stopped", "failed")]
    assert len(trained) == 2
    done = [t for t in study.trials if outcome_of(t) == "complete"]
    assert done, [t.user_attrs.get("mbnas.failure") for t in study.trials]
    for t in done:
        rec = TrialRecord.from_trial(t)
        assert t.values == [rec.score, rec.latency_ms] and 0 <= rec.score <= 1
        assert rec.teacher_hash == meta.teacher_hash and rec.strategy == "progressive"
        assert rec.precision == "fp32"  # auto, on a CPU
        assert len(rec.layer_losses) == rec.candidate.num_layers and rec.seconds > 0
        assert math.isclose(sum(rec.latency_breakdown.values()), rec.latency_ms, rel_tol=1e-6)
        assert (Path(meta.run_dir) / rec.weights).exists()
    # the hypervolume recorded against the study's fixed reference point
    hv = hypervolume([t.values[0] for t in done], [t.values[1] for t in done], meta.reference_point)
    assert study.user_attrs[HYPERVOLUME_ATTR] == pytest.approx(hv)

    # the same command again finds the study complete: nothing is retrained
    again = run_mbnas(*smoke_search(storage, trials=2))
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(load_study(storage).trials) == len(study.trials)
    # the same arithmetic asked for by name resumes it; bf16 training would score differently: refused
    same = run_mbnas(*smoke_search(storage, trials=2), "--precision", "fp32")
    assert same.returncode == 0, same.stderr[-3000:]
    other = run_mbnas(*smoke_search(storage, trials=3), "--precision", "bf16")
    assert other.returncode == 2 and "created with training in fp32 (this run would train in bf16; give --precision " \
        "fp32 to resume it" in other.stderr
    assert len(load_study(storage).trials) == len(study.trials)


def test_budget_rejects_before_training(smoke_teacher_dir, load_study, tmp_path):
    from latency_models import load_profile
    from nas.search import SearchConfig, outcome_of, run_search
    from search_spaces import load_space
    from search_spaces.space import RandomSuggester

    space = load_space("smoke")
    rng = RandomSuggester(1)
    lats = load_profile("pixel4-cpu-tflite").estimate_many([space.suggest(rng) for _ in range(200)])
    budget = float(np.quantile(lats, 0.3))
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    res = run_search(SearchConfig(space="smoke", trials=2, storage=storage, teacher=str(smoke_teacher_dir), threads=1,
                                  latency_budget_ms=budget, progress=False), log=lambda s: None)
    assert res.meta.latency_budget_ms == budget and res.meta.reference_point[1] == budget
    study = load_study(storage)
    rejected = [t for t in study.trials if outcome_of(t) == "rejected"]
    assert rejected, "a budget at the 30% quantile rejects some of the first proposals"
    for t in rejected:
        rec = TrialRecord.from_trial(t)
        assert rec.failure.startswith("rejected: predicted") and "over the budget" in rec.failure
        assert rec.latency_ms > budget and t.constraints["latency_budget_ms"] > 0
        assert rec.seconds is None and rec.weights is None and rec.score is None  # never trained
        assert not (Path(res.meta.run_dir) / f"trial-{t.number:04d}").exists()
    trained = [t for t in study.trials if outcome_of(t) != "rejected"]
    assert len(trained) == 2
    assert all(t.constraints["latency_budget_ms"] <= 0 for t in trained)
    assert res.summary.counts["rejected"] == len(rejected)


def test_diverging_candidates_fail_with_reason_and_search_goes_on(smoke_teacher_dir, load_study, tmp_path):
    from nas.search import SearchConfig, outcome_of, run_search

    storage = f"sqlite:///{tmp_path / 'nan.db'}"
    res = run_search(SearchConfig(space="smoke", trials=2, storage=storage, teacher=str(smoke_teacher_dir), threads=1,
                                  distill_options={"lr": 1e12}, progress=False), log=lambda s: None)
    study = load_study(storage)
    assert [outcome_of(t) for t in study.trials] == ["failed", "failed"]
    for t in study.trials:
        rec = TrialRecord.from_trial(t)
        assert rec.failure.startswith("diverged:") and rec.score is None and rec.weights is None
    assert res.summary.front == [] and res.summary.hypervolume == 0.0


def test_bad_settings_are_one_line_errors(run_mbnas, smoke_search, smoke_teacher_dir, tmp_path):
    from nas.search import SearchConfig, run_search
    from search_spaces.errors import UserError

    storage = f"sqlite:///{tmp_path / 'e.db'}"
    p = run_mbnas(*smoke_search(storage, "--device-profile", "no-such-phone"))
    assert p.returncode == 2 and "no-such-phone" in p.stderr and "Traceback" not in p.stderr
    base = dict(space="smoke", storage=storage, teacher=str(smoke_teacher_dir), threads=1, progress=False)
    with pytest.raises(UserError, match="--strategy is 'magic'; choose one of"):
        run_search(SearchConfig(**base, strategy="magic"))
    with pytest.raises(UserError, match="raise the budget"):
        run_search(SearchConfig(**base, latency_budget_ms=1e-6))
    with pytest.raises(UserError, match="not a distillation setting"):
        run_search(SearchConfig(**base, distill_options={"learning_rate": 1.0}))
    with pytest.raises(UserError, match="distill setting 'lr' must be a number, got 'abc'"):
        run_search(SearchConfig(**base, distill_options={"lr": "abc"}))
    with pytest.raises(UserError, match="--jobs must be at least 1"):
        run_search(SearchConfig(**base, jobs=0))
    with pytest.raises(UserError, match="--jobs is for the optuna backend"):
        run_search(SearchConfig(**base, jobs=2, backend="ray"))
    # Ray would wait forever for a trial that asks for more than a local cluster has
    with pytest.raises(UserError, match="--cpus-per-trial 4096: this machine has"):
        run_search(SearchConfig(**base, backend="ray", cpus_per_trial=4096))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--gpus-per-trial 1: torch sees 0 GPU"):
            run_search(SearchConfig(**base, backend="ray", gpus_per_trial=1))
    # an address where nothing listens: ray.init would retry it for ever
    with pytest.raises(UserError, match="--ray-address 127.0.0.1:1: nothing answers there"):
        run_search(SearchConfig(**base, backend="ray", ray_address="127.0.0.1:1"))
    # none of the refusals above left a study behind (the dashboard would open an empty one)
    import optuna

    from nas.search.storage import open_storage

    assert optuna.get_all_study_summaries(open_storage(storage), include_best_trial=False) == []


def test_early_stopping_stops_hopeless_candidates(smoke_teacher_dir, load_study, tmp_path):
    """A rule set to fire easily (one completed trial of any latency with a lower loss at the same
    layer is enough): stopped trials are recorded as such, with the layer and the peers that beat them."""
    from optuna.trial import TrialState

    from nas.search import EarlyStopRule, SearchConfig, outcome_of, run_search

    rule = EarlyStopRule(factor=1.0, min_peers=1, latency_tol=1e9, min_completed=1)
    storage = f"sqlite:///{tmp_path / 'es.db'}"
    run_search(SearchConfig(space="smoke", trials=4, storage=storage, teacher=str(smoke_teacher_dir), threads=1,
                            early_stop=rule, progress=False), log=lambda s: None)
    study = load_study(storage)
    stopped = [t for t in study.trials if outcome_of(t) == "stopped"]
    assert stopped, [outcome_of(t) for t in study.trials]
    first = next(t for t in study.trials if outcome_of(t) == "complete")
    for t in stopped:
        rec = TrialRecord.from_trial(t)
        assert t.state == TrialState.PRUNED and t.number > first.number
        assert rec.failure.startswith("stopped early: transfer loss") and "at layer 0" in rec.failure
        assert len(rec.layer_losses) == 1 and rec.weights is None and rec.score is None
        assert rec.layer_losses[0] >= min(TrialRecord.from_trial(p).layer_losses[0] for p in study.trials
                                          if outcome_of(p) == "complete" and p.number < t.number)


def test_repeated_candidates_are_not_retrained(smoke_teacher_dir, load_study, tmp_path):
    """A space of two candidates: both are trained once; every repeat is recorded as rejected, and a
    search asked for more trials than the space holds ends once the space is exhausted, saying so."""
    from nas.search import SearchConfig, outcome_of, run_search
    from search_spaces.space import BUILTIN_DIR

    raw = yaml.safe_load((BUILTIN_DIR / "smoke.yaml").read_text())
    raw["name"] = "two"
    raw["search"] = {"intra_size": {"choices": [8, 16]}, "num_ffn": {"choices": [1]},
                     "mha_ffn_ratio": {"choices": [0.5]}, "norm": {"choices": ["no_norm"]},
                     "act": {"choices": ["relu"]}, "attention": {"choices": ["shared_qk"]}}
    space = tmp_path / "two.yaml"
    space.write_text(yaml.safe_dump(raw))
    storage = f"sqlite:///{tmp_path / 'dup.db'}"
    said: list[str] = []
    # random sampling: TPE would also get there, but re-proposes its favourite many times first.
    # The copy keeps smoke's budget (its file's 'budget'), so each trial takes seconds under its new name.
    res = run_search(SearchConfig(space=str(space), trials=3, storage=storage, teacher=str(smoke_teacher_dir),
                                  threads=1, sampler="random", progress=False), log=said.append)
    assert any("every one of the 2 candidates of space 'two' has been tried" in s for s in said), said
    assert res.summary.trained == 2
    study = load_study(storage, "two-progressive-mlm")
    complete = [t for t in study.trials if outcome_of(t) == "complete"]
    assert sorted(t.params["intra_size"] for t in complete) == [8, 16]
    for t in study.trials:
        if outcome_of(t) == "rejected":  # TPE may propose a repeat before the space runs out
            assert "same candidate and strategy as trial" in t.user_attrs["mbnas.failure"]
            assert TrialRecord.from_trial(t).weights is None


def test_duplicate_of_names_the_trial_that_was_trained(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from nas.search.objective import duplicate_of
    from search_spaces import load_space

    space = load_space("smoke")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'd.db'}", directions=["maximize", "minimize"])

    def cand(intra: int, ratio: float):
        return space.build(intra_size=intra, num_ffn=1, mha_ffn_ratio=ratio, norm="no_norm", act="relu",
                           attention="shared_qk")

    def ask(c):
        t = study.ask()
        rec = TrialRecord(candidate=c.replace(name=f"trial-{t.number}"), params=1, flops=1, latency_ms=1.0,
                          latency_breakdown={}, strategy="progressive", teacher_hash="x")
        for k, v in rec.to_user_attrs().items():
            t.set_user_attr(k, v)
        return t

    first = ask(cand(8, 0.5))
    assert duplicate_of(first, cand(8, 0.5), "progressive") is None
    study.tell(first, [0.2, 1.0])
    assert duplicate_of(ask(cand(8, 0.5)), cand(8, 0.5), "progressive") == first.number  # trained: not again
    # another sampled ratio that rounds to the same FFN width builds the same model: not again either
    same_model = cand(8, 0.5).replace(mha_ffn_ratio=0.55)
    assert duplicate_of(ask(same_model), same_model, "progressive") == first.number
    assert duplicate_of(ask(cand(8, 0.5)), cand(8, 0.5), "joint") is None  # another strategy is another trial
    failed = ask(cand(16, 0.5))
    study.tell(failed, state=TrialState.FAIL)
    assert duplicate_of(ask(cand(16, 0.5)), cand(16, 0.5), "progressive") is None  # a failed trial is worth another try


def test_two_workers_planning_one_candidate_at_once_train_it_once(tmp_path):
    """--jobs 2 trained one candidate twice: both workers checked for repeats before either had
    written its record. Now each writes first; the lower-numbered trial trains, the higher one
    waits for a lower one still planning, and neither rejects the candidate for the other."""
    import threading
    import time

    import optuna

    from nas.search.objective import duplicate_of
    from search_spaces import load_space

    space = load_space("smoke")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}", directions=["maximize", "minimize"])
    cand = space.build(intra_size=8, num_ffn=1, mha_ffn_ratio=0.5, norm="no_norm", act="relu",
                       attention="shared_qk")

    def write(t, c=cand):
        rec = TrialRecord(candidate=c.replace(name=f"trial-{t.number}"), params=1, flops=1, latency_ms=1.0,
                          strategy="progressive", teacher_hash="x")
        for k, v in rec.to_user_attrs().items():
            t.set_user_attr(k, v)

    low, high = study.ask(), study.ask()
    write(high)  # the higher-numbered worker got there first; the lower one is still sampling
    late = threading.Timer(0.5, write, args=(low,))
    late.start()
    assert duplicate_of(high, cand, "progressive") == low.number  # it waited for the lower one's record
    late.join()
    assert duplicate_of(low, cand, "progressive") is None  # the lower one trains it
    # a lower-numbered worker that died before writing its record holds the others up only for a while
    dead, third = study.ask(), study.ask()
    assert dead.number < third.number and "mbnas.candidate" not in dead.user_attrs
    write(third)
    began = time.monotonic()
    assert duplicate_of(third, cand.replace(intra_size=16), "progressive", wait_s=0.3) is None
    assert 0.3 <= time.monotonic() - began < 5
    # a lower-numbered worker that is alive (its heartbeat is fresh) but still sampling is waited for
    # past that: a sampler's fit on a long study can take longer than any fixed wait
    from nas.search.liveness import HEARTBEAT_ATTR

    slow, fourth = study.ask(), study.ask()
    slow.set_user_attr(HEARTBEAT_ATTR, time.time())
    other = cand.replace(intra_size=32)
    write(fourth, other)
    late = threading.Timer(0.8, write, args=(slow, other))
    late.start()
    assert duplicate_of(fourth, other, "progressive", wait_s=0.2) == slow.number
    late.join()


def test_plan_trial_writes_its_record_before_it_checks_for_repeats(tmp_path):
    """The whole plan step, not only duplicate_of: two trials asked for one candidate at once, the
    lower-numbered one planning late, end as one trained and one rejected naming it."""
    import threading
    from types import SimpleNamespace

    import optuna

    from latency_models import load_profile
    from nas.search.objective import TrialContext, plan_trial
    from search_spaces import load_space

    ctx = TrialContext(space=load_space("smoke"), strategy="progressive", objective="mlm",
                       profile=load_profile("pixel4-cpu-tflite"), teacher=SimpleNamespace(hash="x"))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}", directions=["maximize", "minimize"])
    params = {"intra_size": 16, "num_ffn": 1, "mha_ffn_ratio": 0.5, "norm": "no_norm", "act": "relu",
              "attention": "shared_qk"}
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    low, high = study.ask(), study.ask()
    plans = {}
    late = threading.Timer(0.5, lambda: plans.__setitem__("low", plan_trial(low, ctx)))
    late.start()
    plans["high"] = plan_trial(high, ctx)
    late.join()
    assert plans["low"].rejected is None
    assert f"same candidate and strategy as trial {low.number}" in plans["high"].rejected
    assert study.trials[high.number].user_attrs["mbnas.failure"] == plans["high"].rejected


def test_score_is_identified_once_by_score_name(smoke_teacher_dir, tmp_path):
    """--score names the study's score; naming the default explicitly resumes a study made without it,
    and another score is refused (it is not also a distill option)."""
    from nas.distill.settings import DEFAULT_SCORE, SCORES
    from nas.search.runner import SearchConfig, prepare
    from search_spaces.errors import UserError

    base = dict(space="smoke", storage=f"sqlite:///{tmp_path / 's.db'}", teacher=str(smoke_teacher_dir))
    meta = prepare(SearchConfig(**base), log=lambda s: None).meta
    assert meta.score_name == DEFAULT_SCORE and meta.distill_options == {}
    again = prepare(SearchConfig(**base, score=DEFAULT_SCORE), log=lambda s: None).meta
    assert again.score_name == DEFAULT_SCORE
    with pytest.raises(UserError, match=f"created with score_name '{DEFAULT_SCORE}'"):
        prepare(SearchConfig(**base, score=next(s for s in SCORES if s != DEFAULT_SCORE)), log=lambda s: None)


def test_a_bug_stops_the_search_after_three_errors_in_a_row(smoke_teacher_dir, tmp_path, monkeypatch):
    """An unexpected error in every trial is a bug, not a candidate: the search stops after
    MAX_ERRORS_IN_A_ROW instead of failing all of --trials; the failures are recorded."""
    import optuna
    from optuna.trial import TrialState

    import nas.distill
    from nas.search import SearchConfig, run_search
    from nas.search.objective import MAX_ERRORS_IN_A_ROW, ErrorStreak, Outcome

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the trainer")

    monkeypatch.setattr(nas.distill, "distill_candidate", broken)
    storage = f"sqlite:///{tmp_path / 'bug.db'}"
    with pytest.raises(RuntimeError, match=f"{MAX_ERRORS_IN_A_ROW} trials in a row failed .*a bug in the trainer"):
        run_search(SearchConfig(space="smoke", trials=8, storage=storage, teacher=str(smoke_teacher_dir), threads=1,
                                progress=False), log=lambda s: None)
    trials = optuna.load_study(study_name="smoke-progressive-mlm", storage=storage).trials
    assert [t.state for t in trials if t.state != TrialState.PRUNED] == [TrialState.FAIL] * MAX_ERRORS_IN_A_ROW
    # a failure of the candidate itself (NaN, out of memory) breaks the streak: the Ray driver counts alike
    s = ErrorStreak()
    assert not s.add(Outcome("failed", failure="error: x")) and not s.add(Outcome("failed", failure="error: x"))
    assert not s.add(Outcome("failed", failure="diverged: loss became nan")) and s.n == 0
