"""The default sampler: what the CLI and its help say it is, and how it behaves with a second worker."""

from __future__ import annotations


def test_default_sampler_is_the_documented_one():
    import argparse

    import optuna

    from nas.cli import search as cli_search
    from nas.search.defaults import DEFAULT_SAMPLER, GP_STARTUP_TRIALS, SAMPLER_HELP
    from nas.search.runner import SearchConfig
    from nas.search.samplers import make_sampler

    parser = argparse.ArgumentParser()
    cli_search.register(parser.add_subparsers())
    args = parser.parse_args(["search"])
    assert args.sampler == DEFAULT_SAMPLER == SearchConfig().sampler == "gp"
    assert SAMPLER_HELP.startswith(f"{DEFAULT_SAMPLER} (default)")
    assert f"{GP_STARTUP_TRIALS} random start-up trials" in SAMPLER_HELP
    sampler = make_sampler(DEFAULT_SAMPLER, 0)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    assert isinstance(sampler.gp, optuna.samplers.GPSampler)
    assert sampler.gp._n_startup_trials == GP_STARTUP_TRIALS
    assert not sampler.gp._deterministic  # the real score is noisy
    assert isinstance(sampler.tpe, optuna.samplers.TPESampler)


def test_default_sampler_keeps_two_workers_apart(tmp_path):
    """Two workers (two sampler instances, their own seeds) on one SQLite study, as ``--jobs 2`` runs
    them: whenever one asks, the other's trial is RUNNING. Once modelling, a worker must not propose the
    candidate the other is training (the GP's batch acquisition over running trials)."""
    import optuna

    from nas.records import DIRECTIONS
    from nas.search.samplers import make_sampler
    from nas.search.storage import open_storage
    from search_spaces import load_space

    space = load_space("smoke")
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    optuna.create_study(storage=storage, study_name="s", directions=list(DIRECTIONS))
    workers = [optuna.load_study(study_name="s", storage=storage, sampler=make_sampler("gp", seed))
               for seed in (11, 12)]
    running = None  # (study, trial, candidate) of the other worker
    same = 0
    for i in range(8):
        study = workers[i % 2]
        trial = study.ask()
        c = space.suggest(trial)
        if running is not None:
            same += c == running[2]
            other, t, oc = running
            other.tell(t, [oc.intra_size / 32 + oc.num_ffn / 10, float(oc.intra_size * oc.num_ffn)])
        running = (study, trial, c)
    assert same == 0
    states = [t.state for t in workers[0].trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 7


def test_tpe_proposes_where_the_gp_cannot_learn():
    """The GP fits only complete trials: after a rejected / stopped / failed trial, and for good once a
    trial is infeasible (over the latency budget), TPE proposes, or the GP would repeat a rejected
    candidate for ever. Otherwise the GP proposes."""
    import optuna
    from optuna.trial import TrialState

    from nas.records import DIRECTIONS
    from nas.search.samplers import make_sampler
    from search_spaces import load_space

    space = load_space("smoke")

    def searcher(budgeted: bool):
        """A study and a step function: ask, tell (complete unless told otherwise), say who proposed."""
        sampler = make_sampler("gp", 0)
        study = optuna.create_study(directions=list(DIRECTIONS), sampler=sampler)

        def step(state=TrialState.COMPLETE, over=False):
            trial = study.ask()
            c = space.suggest(trial)
            if budgeted:  # as plan_trial: every trial of a budgeted search has the constraint
                trial.set_constraint("latency_budget_ms", 2.0 if over else -1.0)
            if state == TrialState.COMPLETE:
                study.tell(trial, [c.intra_size / 32 + c.num_ffn / 10, float(c.intra_size * c.num_ffn)])
            else:
                study.tell(trial, state=state)
            return sampler.last_pick

        return step

    step = searcher(budgeted=False)
    for _ in range(3):
        step()
    assert step() == "gp"
    step(TrialState.PRUNED)  # proposed by the GP, then rejected (a repeat) or stopped early
    assert step() == "tpe"
    assert step() == "gp"
    step(TrialState.FAIL)
    assert step() == "tpe"

    step = searcher(budgeted=True)
    for _ in range(3):
        step()
    assert step() == "gp"
    step(TrialState.PRUNED, over=True)  # over the budget: infeasible
    assert [step() for _ in range(3)] == ["tpe"] * 3
