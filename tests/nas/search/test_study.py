"""Storage bookkeeping: outcomes, resume of dead workers' trials, settings checks, samplers."""

from __future__ import annotations

import os
import re
import time

import pytest

from nas.distill.settings import RECIPE_VERSION
from nas.records import StudyMeta
from search_spaces.errors import UserError


def _meta(**changes) -> StudyMeta:
    base = dict(space={"name": "stub"}, strategy="progressive", objective="mlm", score_name="mlm_accuracy",
                score_data="held-out", latency_profile="pixel4-cpu-tflite", latency_error="±5%",
                teacher_hash="abc", reference_point=(0.0, 10.0), recipe=RECIPE_VERSION)
    return StudyMeta(**{**base, **changes})


@pytest.fixture
def storage(tmp_path):
    from nas.search.storage import open_storage

    return open_storage(f"sqlite:///{tmp_path / 'sub' / 's.db'}")  # the folder is created


def test_a_study_of_another_training_recipe_is_not_resumed(storage):
    """The recipe is part of a study's identity: a study made before recipes were versioned (recipe
    1, mbnas 0.2.0) or with another recipe is refused in one line naming the version that made it."""
    from nas.search.study import create_or_check

    create_or_check(storage, "old", _meta(recipe=None))
    with pytest.raises(UserError, match=r"study 'old' was trained with training recipe 1 \(mbnas 0.2.0 or "
                                        r"earlier\); this mbnas 0.3.0 or later trains with recipe 2") as e:
        create_or_check(storage, "old", _meta())
    assert "\n" not in str(e.value) and "--study NEW_NAME" in str(e.value)
    study, _ = create_or_check(storage, "new", _meta())
    assert study.metric_names == ["mlm_accuracy", "latency_ms (predicted, pixel4-cpu-tflite)"]  # Optuna's plots
    create_or_check(storage, "new", _meta())  # the same recipe resumes
    with pytest.raises(UserError, match="training recipe 2 \\(mbnas 0.3.0 or later\\); this mbnas 0.2.0 or earlier"):
        create_or_check(storage, "new", _meta(recipe=1))


def test_dead_workers_trials_are_marked_interrupted(storage):
    from optuna.trial import TrialState

    from nas.search.liveness import HEARTBEAT_ATTR, WORKER_ATTR, recover_interrupted, worker_identity
    from nas.search.outcomes import outcome_of
    from nas.search.study import create_or_check

    study, _ = create_or_check(storage, "s", _meta())
    me = worker_identity()
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
    # claimed on another host a moment ago, its first heartbeat not written yet: alive
    fresh = study.ask()
    fresh.set_user_attr(WORKER_ATTR, elsewhere)
    assert recover_interrupted(study, storage) == []


def test_resuming_with_other_settings_is_refused(storage):
    from nas.search.study import create_or_check

    create_or_check(storage, "s", _meta())
    create_or_check(storage, "s", _meta(run_dir="elsewhere"))  # run settings may differ
    create_or_check(storage, "seeded", _meta(seed=0))
    with pytest.raises(UserError, match="created with seed 0 \\(now 3; the seed also seeds"):  # every training too
        create_or_check(storage, "seeded", _meta(seed=3))
    with pytest.raises(UserError, match="created with latency_profile 'pixel4-cpu-tflite'"):
        create_or_check(storage, "s", _meta(latency_profile="other"))
    with pytest.raises(UserError, match="--study NEW_NAME"):
        create_or_check(storage, "s", _meta(teacher_hash="def"))
    # bf16 training scores candidates differently from fp32 (--precision resolved on the device)
    create_or_check(storage, "p", _meta(precision="fp32"))
    create_or_check(storage, "p", _meta(precision=None))  # a Ray driver that sees no GPU cannot tell
    with pytest.raises(UserError, match="created with training in fp32 \\(this run would train in bf16"):
        create_or_check(storage, "p", _meta(precision="bf16"))
    # --distill-option changes what the scores mean
    with pytest.raises(UserError, match="created with distill_options {}"):
        create_or_check(storage, "s", _meta(distill_options={"lr": 1e-3}))
    # a different score (--score, or a new default) would mix incomparable trials
    with pytest.raises(UserError, match="created with score_name"):
        create_or_check(storage, "s", _meta(score_name="teacher_fidelity"))


def test_a_profile_file_calibrated_again_in_place_is_refused(storage):
    """The same --device-profile path with other contents: the study's latencies would mix two
    predictors under one name. A study written before the hash was kept resumes."""
    from nas.search.study import create_or_check

    create_or_check(storage, "p", _meta(latency_profile="p6.json", latency_profile_hash="aaaaaaaaaaaa"))
    create_or_check(storage, "p", _meta(latency_profile="p6.json", latency_profile_hash="aaaaaaaaaaaa"))
    with pytest.raises(UserError, match="latency profile 'p6.json' of content aaaaaaaaaaaa .*changed since"):
        create_or_check(storage, "p", _meta(latency_profile="p6.json", latency_profile_hash="bbbbbbbbbbbb"))
    create_or_check(storage, "older", _meta())
    create_or_check(storage, "older", _meta(latency_profile_hash="cccccccccccc"))


def test_studies_from_before_distill_options_still_resume(storage):
    import optuna

    from nas.records import DIRECTIONS
    from nas.search.study import create_or_check

    study = optuna.create_study(storage=storage, study_name="old", directions=list(DIRECTIONS))
    # older versions wrote one attribute per field, and before that no distill_options
    for k, v in _meta().to_dict().items():
        if k != "distill_options":
            study.set_user_attr("mbnas." + k, v)
    _, meta = create_or_check(storage, "old", _meta())
    assert meta == _meta()
    with pytest.raises(UserError, match="created with strategy"):
        create_or_check(storage, "old", _meta(strategy="joint"))


def test_a_changed_space_file_is_named_by_the_field_that_changed(storage):
    """'was created with space 'smoke' (now 'smoke')' told nothing; the line names the field. A study
    made before budgets lived in space files is a recipe-1 study (test above)."""
    import copy

    from nas.search.study import create_or_check
    from search_spaces import load_space

    smoke = load_space("smoke").to_dict()
    assert smoke["budget"]["distill"]["layer_steps"] == 8
    create_or_check(storage, "sp", _meta(space=smoke))
    narrower = copy.deepcopy(smoke)
    narrower["search"]["intra_size"]["choices"] = [8, 16]
    with pytest.raises(UserError, match=re.escape("space 'smoke' whose search.intra_size.choices was [8, 16, 32] "
                                                  "(now [8, 16])")):
        create_or_check(storage, "sp", _meta(space=narrower))
    longer = copy.deepcopy(smoke)
    longer["budget"]["distill"]["layer_steps"] = 80
    with pytest.raises(UserError, match="whose budget.distill.layer_steps was 8 \\(now 80\\)"):
        create_or_check(storage, "sp", _meta(space=longer))


class _InterleavingStorage:
    """A storage that lets a second worker open the study right after the first one's first write."""

    def __init__(self, inner, second_worker):
        self._inner, self._second, self.seen = inner, second_worker, []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def set_study_user_attr(self, study_id, key, value):
        self._inner.set_study_user_attr(study_id, key, value)
        if self._second is not None:
            second, self._second = self._second, None
            self.seen.append(second())


def test_a_worker_opening_a_study_while_another_creates_it_sees_all_settings_or_none(storage):
    """The CI failure of two PostgreSQL workers: the second read ``space`` before ``reference_point``."""
    from nas.search.study import create_or_check

    racing = _InterleavingStorage(storage, lambda: create_or_check(storage, "race", _meta())[1])
    _, first = create_or_check(racing, "race", _meta())
    assert racing.seen == [_meta()] and first == _meta()


def test_two_workers_creating_one_study_with_different_settings_cannot_both_go_on(storage):
    import optuna

    from nas.records import DIRECTIONS
    from nas.search.study import create_or_check

    # both found the study without settings; the second worker's write lands right after the first's
    study = optuna.create_study(storage=storage, study_name="s", directions=list(DIRECTIONS))

    def second_writes():
        _meta(strategy="joint").save(study)

    racing = _InterleavingStorage(storage, second_writes)
    with pytest.raises(UserError, match="created with strategy 'joint' \\(now 'progressive'\\)"):
        create_or_check(racing, "s", _meta())
    _, meta = create_or_check(storage, "s", _meta(strategy="joint"))  # the second one goes on
    assert meta.strategy == "joint"


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_samplers(name):
    from nas.search.samplers import make_sampler

    assert make_sampler(name, 0) is not None


def test_unknown_storage_is_a_user_error():
    from nas.search.storage import open_storage

    with pytest.raises(UserError, match="not a database URL"):
        open_storage("runs/mbnas.db")


@pytest.mark.parametrize("url,match", [
    ("sqlite:/runs/x.db", "a SQLite URL needs three slashes"),  # was taken for an in-memory database
    ("postgres://me@127.0.0.1/db", "postgresql://, not postgres://"),  # was SQLAlchemy's "Can't load plugin"
    ("sqllite:///runs/x.db", "unknown database 'sqllite'"),
    ("postgresql+psycopg://me@127.0.0.1/db", "pip install psycopg, or use postgresql://"),
])
def test_a_mistyped_storage_url_is_one_line_with_the_fix(url, match):
    import importlib.util

    from nas.search.storage import open_storage

    if "psycopg:" in url and importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg (3) is installed here: the URL is fine")
    with pytest.raises(UserError, match=re.escape(match)):
        open_storage(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_in_memory_storage_is_refused(url):
    """Nothing would survive the search: no resume, no export, no dashboard."""
    from nas.search.storage import open_storage

    with pytest.raises(UserError, match="keeps the study in memory.*give a file, e.g. sqlite:///runs/mbnas.db"):
        open_storage(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_readers_refuse_an_in_memory_storage(url):
    """Export and the dashboard would open a new, empty database and report "no study"."""
    from dashboard.data import open_storage as dashboard_storage
    from nas.search.storage import open_storage

    for reader in (lambda: open_storage(url, must_exist=True), lambda: dashboard_storage(url)):
        with pytest.raises(UserError, match="in-memory database, which holds no study to read: give the file"):
            reader()


def test_storage_folder_that_cannot_be_created_is_a_user_error(tmp_path):
    from nas.search.storage import open_storage

    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match=r"cannot create the folder .*a-file.*give a path you can write to"):
        open_storage(f"sqlite:///{tmp_path / 'a-file' / 'mbnas.db'}")


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_samplers_survive_every_outcome(name):
    """Rejected (PRUNED, infeasible), stopped (PRUNED, feasible), failed and complete trials mixed:
    multi-objective TPE reads pruned trials' intermediate values through ``study.direction``, which a
    multi-objective study refuses, so the search must never report them (it does not)."""
    import optuna
    from optuna.trial import TrialState

    from nas.records import DIRECTIONS
    from nas.search.samplers import make_sampler
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


def test_a_trial_record_written_attribute_by_attribute_reads_whole_or_not_at_all():
    """Another worker's repeat check reads records while their trials are being written."""
    from nas.records import TrialRecord
    from search_spaces import load_space

    cand = load_space("smoke").build(intra_size=8, num_ffn=1, mha_ffn_ratio=0.5, norm="no_norm", act="relu",
                                     attention="shared_qk")
    rec = TrialRecord(candidate=cand, params=1, flops=2, latency_ms=1.0, strategy="progressive", teacher_hash="x")
    attrs = list(rec.to_user_attrs().items())
    for n in range(len(attrs)):  # every point the writer can be interrupted at
        assert TrialRecord.from_user_attrs(dict(attrs[:n])) is None
    assert TrialRecord.from_user_attrs(dict(attrs)) == rec


_OPEN_AT = """
import sys, time
from nas.search.storage import open_storage
start, urls = float(sys.argv[1]), sys.argv[2:]
for k, url in enumerate(urls):
    while time.time() < start + k:  # every process opens file k at the same moment
        pass
    try:
        open_storage(url)
        print("ok", flush=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
"""


def test_processes_opening_one_fresh_sqlite_file_at_once_all_get_the_storage(tmp_path):
    """What failed in CI once: a search and a reader created a new SQLite file's tables together and
    one died with "table studies already exists" (a ``--jobs 2`` pair can do the same). Before the
    fix 8 of 10 rounds of 4 processes failed."""
    import subprocess
    import sys

    urls = [f"sqlite:///{tmp_path / f'{k}.db'}" for k in range(6)]
    start = time.time() + 15  # after every process has imported optuna
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(start), *urls], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outcomes = [line.strip() for p in procs for line in p.communicate(timeout=120)[0].splitlines()]
    assert outcomes == ["ok"] * (4 * len(urls))


def test_each_score_names_its_own_data(storage):
    """With a downstream objective the task score is measured on the task's dev split and every
    masked-LM score on held-out text: the study records both, as the first completed trial said.
    A study written before ``heldout_data`` existed names its objective's data for every score."""
    from nas.records import settle_score_meta
    from nas.search.objective import Outcome
    from nas.search.study import create_or_check

    study, meta = create_or_check(storage, "d", _meta(objective="downstream", score_name="downstream_accuracy",
                                                      score_data="(named by the first completed trial)"))
    done = Outcome("complete", score=0.7, score_name="downstream_accuracy", score_data="rotten tomatoes dev",
                   heldout_data="news held-out")
    settle_score_meta(study, meta, done)
    back = StudyMeta.from_study(study)
    assert back.data_of("downstream_accuracy") == "rotten tomatoes dev"
    assert back.data_of("mlm_accuracy") == back.data_of("teacher_kl") == "news held-out"
    old = _meta()
    assert old.heldout_data is None and old.data_of("teacher_kl") == "held-out"


def test_a_study_of_unknown_precision_takes_its_first_trained_trials(storage):
    """A Ray driver that sees no GPU (or an older study) cannot tell what --precision auto trains in:
    the first completed trial says it, and a later outcome does not overwrite it."""
    from nas.records import settle_score_meta
    from nas.search.objective import Outcome
    from nas.search.study import create_or_check

    study, meta = create_or_check(storage, "r", _meta(precision=None))
    meta = settle_score_meta(study, meta, Outcome("complete", score=0.6, precision="bf16"))
    assert StudyMeta.from_study(study).precision == "bf16"
    meta = settle_score_meta(study, meta, Outcome("complete", score=0.5, precision="fp32"))
    assert meta.precision == StudyMeta.from_study(study).precision == "bf16"
    with pytest.raises(UserError, match="created with training in bf16"):
        create_or_check(storage, "r", _meta(precision="fp32"))


def test_a_storage_file_that_is_not_a_database_is_one_line(tmp_path):
    """A --storage naming some other file: one line, for the search (writer) and export/dashboard
    (readers), and the file is not touched."""
    from nas.search.storage import open_storage

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for must_exist in (False, True):
        with pytest.raises(UserError, match=f"{notes} is not an SQLite database"):
            open_storage(f"sqlite:///{notes}", must_exist=must_exist)
    assert notes.read_text() == "my notes\n"
    (tmp_path / "empty.db").write_bytes(b"")  # an empty file is a new database
    open_storage(f"sqlite:///{tmp_path / 'empty.db'}")
