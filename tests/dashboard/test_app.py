"""The Streamlit app, run headless by ``streamlit.testing.v1.AppTest`` on real SQLite studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dashboard.data as data

APP = str(Path(data.__file__).with_name("app.py"))


def run_app(url: str, study: str | None = None, tab: str | None = None):
    """Run the app once; ``tab`` opens one of its lazy tabs ("Pareto front", "Trial", "History")."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["storage_url"] = url
    if study is not None:
        at.session_state["study"] = study
    if tab is not None:
        at.session_state["view"] = tab
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def array(v) -> list:
    """A plotly figure array: plain JSON, or plotly's base64 typed-array encoding."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def pareto_figure(at) -> dict:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(c for c in charts if any(t.get("name", "").startswith("Pareto set") for t in c["data"]))


def test_pareto_view_labels_every_number(study_db):
    import optuna

    url, name = study_db
    at = run_app(url)
    study = optuna.load_study(study_name=name, storage=url)
    n_front = len(study.best_trials)
    assert at.title[0].value == f"Study {name}"
    assert metric(at, "Pareto set") == str(n_front) and metric(at, "complete trials") == "60"
    assert metric(at, "running") == "2" and metric(at, "failed / pruned") == "3"
    caption = texts(at, "caption")
    meta = data.StudyMeta.from_study(study)
    assert meta.score_name in caption and meta.score_data in caption
    assert f"predicted by profile `{meta.latency_profile}`" in caption and meta.latency_error in caption
    fig = pareto_figure(at)
    front = next(t for t in fig["data"] if t["name"].startswith("Pareto set"))
    assert sorted(array(front["customdata"])) == sorted(t.number for t in study.best_trials)
    x_title = fig["layout"]["xaxis"]["title"]["text"]
    assert x_title.startswith(f"latency, ms: predicted ({meta.latency_profile})") and meta.latency_error in x_title
    assert "best under" in texts(at, "success")


@pytest.mark.parametrize("colour", list(data.COLOUR_BY))
def test_colour_by_every_dimension(study_db, colour):
    at = run_app(study_db[0])
    at.selectbox(key="colour").select(colour).run()
    assert not at.exception
    fig = pareto_figure(at)
    assert fig["layout"]["legend"]["title"]["text"] == colour + ":"


def test_budget_names_best_feasible_and_shades_region(study_db):
    url, name = study_db
    view = data.load_study(data.open_storage(url), name)
    fastest = view.frame.sort_values(["latency_ms", "score"], ascending=[True, False]).iloc[0]
    at = run_app(url)
    at.slider(key="budget-recorded").set_value(float(fastest["latency_ms"])).run()
    assert f"**trial {int(fastest['number'])}**" in texts(at, "success")
    shapes = pareto_figure(at)["layout"]["shapes"]
    assert any(s["type"] == "rect" and s["x1"] == pytest.approx(float(fastest["latency_ms"])) for s in shapes)


def test_trial_view_and_export(study_db):
    url, name = study_db
    view = data.load_study(data.open_storage(url), name)
    number = int(view.frame.loc[~view.frame["pareto"], "number"].iloc[0])
    at = run_app(url, tab="Trial")
    best = data.best_under_budget(view.frame, data.default_budget(view))
    assert at.selectbox(key="trial").value == int(best["number"])  # opens on the best under the budget
    assert not at.get("plotly_chart") or "Pareto set" not in texts(at, "caption")  # lazy: only this tab ran
    at.selectbox(key="trial").select(number).run()
    assert not at.exception
    rec = view.records[number]
    assert metric(at, "parameters") == f"{rec.params / 1e6:.2f}M"
    assert metric(at, "synthetic_score") == f"{view.frame.set_index('number').at[number, 'score']:.4g}"
    assert f"mbnas export --study {name} --storage {url} --trial {number}" in texts(at, "code")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["config.json (transformers)", "architecture.json"]
    tables = [t.value for t in at.dataframe]
    assert any(rec.candidate.label in t.to_string() or str(rec.candidate.intra_size) in t["value"].tolist()
               for t in tables if "field" in t)


def test_history_tab(study_db):
    at = run_app(study_db[0], tab="History")
    names = [t.get("name") for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]
    assert "hypervolume" in names and "best feasible so far" in names


def test_missing_storage_is_a_message(tmp_path):
    at = run_app(f"sqlite:///{tmp_path / 'runs' / 'mbnas.db'}")
    assert "does not exist" in texts(at, "info") and not at.title
    assert not (tmp_path / "runs").exists()


def test_empty_storage_is_a_message(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url)  # creates the schema, no study
    assert "holds no studies yet" in texts(run_app(url), "info")


def test_no_finished_trials_is_a_message(tmp_path):
    from dashboard.synthetic import write_synthetic_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    write_synthetic_study(url, "starting", 0, n_running=2)
    at = run_app(url)
    assert "no finished trials yet" in texts(at, "info") and "2 running" in texts(at, "info")


def test_a_study_on_the_users_data_says_so(tmp_path):
    import dataclasses

    import optuna

    from dashboard.synthetic import write_synthetic_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    write_synthetic_study(url, "mine", 5, seed=3)
    study = optuna.load_study(study_name="mine", storage=url)
    mine = "corpus: 1 user file(s), token sha256 0123456789abcdef"
    dataclasses.replace(data.StudyMeta.from_study(study), user_data=mine, precision="bf16").save(study)
    caption = texts(run_app(url), "caption")
    assert f"Your data: {mine}." in caption and "(trained in bf16)" in caption  # what the training computed in


def test_profile_switch_rescores(study_db):
    from dashboard.synthetic import first_installed_profile

    names, why = data.profiles_available()
    if why or not names:
        pytest.skip(f"no latency_models profile to switch to yet: {why or 'no profiles installed'}")
    url, name = study_db
    at = run_app(url)
    target = names[-1] if names[-1] != first_installed_profile() or len(names) == 1 else names[0]
    options = at.selectbox(key="profile").options
    if target not in options:
        pytest.skip("only the study's own profile is installed")
    at.selectbox(key="profile").select(target).run()
    assert not at.exception
    assert f"predicted by profile `{target}`" in texts(at, "caption") and "re-scored here" in texts(at, "caption")
    assert metric(at, "hypervolume") == "n/a (re-scored)"
    at.session_state["view"] = "Trial"
    at.run()
    assert not at.exception
    bars = json.loads(next(c for c in at.get("plotly_chart") if "Bar" in c.proto.spec or '"bar"' in c.proto.spec)
                      .proto.spec)
    assert [t["name"].split(":")[0] for t in bars["data"]] == [f"trial {at.selectbox(key='trial').value}",
                                                               f"MobileBERT (24 blocks, seq {64})"]
    assert target in bars["layout"]["yaxis"]["title"]["text"]


def test_constrained_study_marks_infeasible_trials(budget_db):
    at = run_app(budget_db[0])
    names = [t.get("name", "") for t in pareto_figure(at)["data"]]
    assert "violates the study's constraints" in names


def test_a_study_not_in_the_storage_is_said(study_db, tmp_path, monkeypatch):
    """A typo in --study (or a search not started yet): the CLI notes it before the server starts,
    and the page says which study it shows instead."""
    import optuna

    from nas.cli.dashboard import _missing_study

    url, name = study_db
    assert _missing_study(url, name) is None
    assert _missing_study(url, "demo-stduy") == (f"note: no study 'demo-stduy' in {url} (studies there: {name}; "
                                                 f"showing '{name}' until it exists)")
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(empty)
    assert _missing_study(empty, "x") == f"note: no study 'x' in {empty} (no studies yet)"
    monkeypatch.setattr("sys.argv", ["app.py", "--storage", url, "--study", "demo-stduy"])
    at = run_app(url)
    assert f"no study named 'demo-stduy' in {url}; showing '{name}'" in texts(at, "warning")
    assert at.title[0].value == f"Study {name}"


def test_the_asked_study_is_shown_once_its_search_creates_it(tmp_path, monkeypatch):
    from dashboard.synthetic import write_synthetic_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    write_synthetic_study(url, "older", 5, seed=1)
    monkeypatch.setattr("sys.argv", ["app.py", "--storage", url, "--study", "mine"])
    at = run_app(url)
    assert at.title[0].value == "Study older" and "no study named 'mine'" in texts(at, "warning")
    write_synthetic_study(url, "mine", 5, seed=2)  # the search starts while the page is open
    at.run()
    assert at.title[0].value == "Study mine" and not at.warning
    at.sidebar.selectbox[0].set_value("older").run()  # the user's pick stays
    assert at.title[0].value == "Study older"
    at.run()
    assert at.title[0].value == "Study older"


def test_bad_port_is_one_line(mbnas):
    code, out, err = mbnas("dashboard", "--port", "70000")
    assert code == 2 and "--port must be between 1 and 65535" in err and len(err.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line_before_any_url(mbnas):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, out, err = mbnas("dashboard", "--port", str(port))
    assert code == 2 and f"--port {port}: 127.0.0.1:{port} is not available" in err
    assert len(err.strip().splitlines()) == 1 and "http://" not in err


def test_cli_binds_loopback_headless_by_default():
    from nas.cli import build_parser
    from nas.cli.dashboard import streamlit_command

    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port, args.storage) == ("127.0.0.1", 8501, "sqlite:///runs/mbnas.db")
    cmd = streamlit_command(args.storage, None, args.host, args.port)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--storage") + 1] == f"sqlite:///{Path('runs/mbnas.db').resolve()}"


def test_streamlit_run_by_hand_from_the_repo_binds_loopback():
    """``streamlit run dashboard/app.py`` started by hand reads the repository's .streamlit/config.toml
    (asked of Streamlit itself): loopback, not Streamlit's every-interface default."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=root, capture_output=True,
                           text=True, timeout=120).stdout
    assert '\naddress = "127.0.0.1"\n' in shown


def test_screenshot_of_a_study_with_nothing_to_draw_is_one_line(tmp_path):
    """Before, the README's screenshot command waited two minutes in Chromium for points an empty
    newest study (a refused search's, say) never draws, and ended in a Playwright timeout."""
    import optuna

    from dashboard.browser import screenshot
    from nas.records import DIRECTIONS
    from search_spaces.errors import UserError

    url = f"sqlite:///{tmp_path / 'e.db'}"
    optuna.create_study(storage=url, study_name="older", directions=list(DIRECTIONS))
    optuna.create_study(storage=url, study_name="empty", directions=list(DIRECTIONS))
    with pytest.raises(UserError, match=r"study 'empty' .*nothing to draw \(other studies: older; give --study\)"):
        screenshot(url, None, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
