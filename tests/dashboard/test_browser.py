"""End to end: ``mbnas dashboard`` on 127.0.0.1, driven by headless Debian Chromium (docs/FACTS.md section 5).

Counts the points the browser actually drew in the Pareto trace and compares them with Optuna's own
``study.best_trials`` (``dashboard.browser``). Set ``MBNAS_DASHBOARD_SCREENSHOT=path.png`` to keep
the screenshot somewhere else too.
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

from dashboard.browser import CHROMIUM, FIRST_PARETO_POINT_BOX, chromium_page, serve, wait_for_pareto

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install "
                                                                       f"chromium (make install does)")]


def test_pareto_points_drawn_equal_study_pareto_set(study_db, tmp_path):
    import optuna

    url, name = study_db
    expected = len(optuna.load_study(study_name=name, storage=url).best_trials)
    shot = tmp_path / "dashboard.png"
    with serve(url, name, tmp_path) as base, chromium_page(tmp_path) as page:
        page.goto(base)
        assert wait_for_pareto(page, expected) == expected
        assert page.get_by_text(f"Study {name}").count() >= 1
        # hover shows the architecture
        point = page.evaluate(FIRST_PARETO_POINT_BOX)
        page.mouse.move(point["x"], point["y"])
        page.wait_for_selector(".js-plotly-plot .hoverlayer .hovertext", timeout=10_000)
        hover = page.locator(".js-plotly-plot .hoverlayer .hovertext").first.text_content()
        assert "trial" in hover and "params" in hover and "FFN" in hover
        page.mouse.move(0, 0)
        page.wait_for_timeout(500)
        page.screenshot(path=str(shot))
        # a click on a Pareto point opens it in the Trial tab
        page.mouse.click(point["x"], point["y"])
        page.wait_for_selector("text=Transfer loss by layer", timeout=60_000)
        page.wait_for_function("() => document.body.innerText.includes('mbnas export --study')", timeout=30_000)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MBNAS_DASHBOARD_SCREENSHOT"):
        shutil.copy(shot, os.environ["MBNAS_DASHBOARD_SCREENSHOT"])


def test_page_follows_a_running_search(study_db, tmp_path):
    """A trial that finishes while the page is open shows up without a reload."""
    import optuna

    from nas.search.storage import sqlite_path

    src_url, name = study_db
    shutil.copy(sqlite_path(src_url), tmp_path / "live.db")
    url = f"sqlite:///{tmp_path / 'live.db'}"
    study = optuna.load_study(study_name=name, storage=url)
    before = len(study.best_trials)
    with serve(url, name, tmp_path, refresh=2) as base, chromium_page(tmp_path) as page:
        page.goto(base)
        wait_for_pareto(page, before)
        # what a search writes when a trial finishes: record + values; this one beats every trial
        done = [t for t in study.trials if t.values]
        best_score = max(t.values[0] for t in done) + 0.05
        fastest = min(t.values[1] for t in done) * 0.9
        study.add_trial(optuna.trial.create_trial(values=[best_score, fastest], user_attrs=done[0].user_attrs))
        assert len(study.best_trials) == 1
        wait_for_pareto(page, 1, timeout_s=60)
        assert page.get_by_text(f"{len(done) + 1}", exact=True).count() >= 1  # the "complete trials" metric


def test_binds_loopback_only(study_db, tmp_path):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.connect(("192.0.2.1", 9))  # picks the outward interface; sends nothing
            ip = u.getsockname()[0]
    except OSError:
        ip = "127.0.0.1"
    if ip.startswith("127."):
        pytest.skip("the host has no non-loopback address to probe")
    with serve(*study_db, tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((ip, port)) != 0  # refused on the outward address
        with urllib.request.urlopen(base + "/_stcore/health", timeout=5) as r:
            assert r.status == 200


def test_relative_sqlite_url_means_the_callers_directory(tmp_path, monkeypatch):
    """The server runs in a temporary directory: ``sqlite:///runs/mbnas.db`` (the README's
    screenshot command) must still name the caller's file, or the page has no study to draw."""
    from dashboard.browser import absolute_sqlite

    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite("sqlite:///runs/mbnas.db") == f"sqlite:///{tmp_path}/runs/mbnas.db"
    assert absolute_sqlite("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert absolute_sqlite("postgresql://u@127.0.0.1/db") == "postgresql://u@127.0.0.1/db"
