"""Real SQLite Optuna studies written the way ``mbnas search`` writes them.

Candidates, parameter and FLOP counts are real (demo space, ``search_spaces.ops.count``); the **scores are
synthetic** (``dashboard.synthetic``: the dashboard only displays scores, it never computes them).
Latency comes from the first installed ``latency_models`` profile, or from a FLOPs stand-in that is
named as such while that package has no profile.
"""

from __future__ import annotations

import pytest

from dashboard.synthetic import first_installed_profile as installed_profile


@pytest.fixture(scope="session")
def study_db(tmp_path_factory):
    """(storage URL, study name): 60 complete trials, 3 failed, 2 running."""
    from dashboard.synthetic import write_synthetic_study

    path = tmp_path_factory.mktemp("dash") / "study.db"
    url = f"sqlite:///{path}"
    write_synthetic_study(url, "demo-study", 60, n_failed=3, n_running=2, seed=1, profile=installed_profile())
    return url, "demo-study"


@pytest.fixture(scope="session")
def budget_db(tmp_path_factory):
    """(storage URL, study name): a budgeted study; trials over the budget carry a violated constraint."""
    from dashboard.synthetic import write_synthetic_study

    path = tmp_path_factory.mktemp("dash") / "budget.db"
    url = f"sqlite:///{path}"
    write_synthetic_study(url, "budget", 40, seed=2, profile=installed_profile(), latency_budget_ms="median")
    return url, "budget"
