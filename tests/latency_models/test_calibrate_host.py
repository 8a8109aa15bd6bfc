"""``mbnas latency calibrate-host``: the designed plan, a real small calibration, and bad input."""

from __future__ import annotations

import json
import time

import pytest

from latency_models.calibrate_host import (ANCHOR, DesignPoint, HostCalibrationConfig, _ExportRate, calibrate_host,
                                           design, export_all)
from latency_models.dataset import read_rows, tflite_name
from latency_models.features import FEATURES
from search_spaces import load_space
from search_spaces.candidate import ATTENTIONS
from search_spaces.references import REFERENCES


def test_the_plan_fits_a_cost_per_feature_and_holds_out_the_paper_shape():
    a, b = design(), design()
    assert [tflite_name(p.candidate) for p in a] == [tflite_name(p.candidate) for p in b]  # deterministic
    assert a[0].candidate == REFERENCES[ANCHOR].candidate and a[0].role == "heldout"  # ratios are to it
    assert len({tflite_name(p.candidate) for p in a}) == len(a)  # each shape timed once
    fit = [p.candidate for p in a if p.role == "fit"]
    held = [p for p in a if p.role == "heldout"]
    assert len(fit) >= 2 * len(FEATURES)  # enough for the op-level fit
    assert {c.attention for c in fit} == set(ATTENTIONS)
    assert {(c.norm, c.act) for c in fit} == {(n, x) for n in ("no_norm", "layer_norm") for x in ("relu", "gelu")}
    assert sum(p.candidate.num_layers == 24 for p in held) >= 3  # paper-shape models never fitted
    assert {p.candidate.seq_len for p in held} == {64, 128}  # the demo's and the paper's
    # the small models come before the deep ones: a short budget still fits and holds out
    first_deep = next(i for i, p in enumerate(a[1:], 1) if p.candidate.num_layers >= 24)
    assert all(p.candidate.num_layers <= 12 for p in a[1:first_deep]) and first_deep > 50


def test_the_export_rate_learns_from_what_it_saw():
    r = _ExportRate()
    c = load_space("smoke").sample(1, 0)[0].replace(num_layers=10)
    guess = r.estimate(c)
    r.add(2, r.base + 2 * 10.0)  # 10 s a block here
    assert r.estimate(c) > guess and r.estimate(c) == pytest.approx(r.base + 100)


def test_nothing_is_exported_past_the_deadline(tmp_path):
    pts = [DesignPoint(c, "smoke", "fit") for c in load_space("smoke").sample(2, 0)]
    exported, reused, skipped, failed = export_all(pts, tmp_path, export=None, deadline=time.monotonic() - 1,
                                                   jobs=1, log=lambda s: None)
    assert (exported, reused, failed) == ([], [], []) and len(skipped) == 2  # both left out for time
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, match", [
    (["--minutes", "0"], "--minutes must be > 0"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--name", "a b"], "--name 'a b'"),
])
def test_bad_arguments_are_one_line(cli, tmp_path, args, match):
    code, _, err = cli("latency", "calibrate-host", "--out", str(tmp_path / "p.json"), *args)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_out_must_not_be_a_csv_or_exist(cli, tmp_path):
    code, _, err = cli("latency", "calibrate-host", "--out", str(tmp_path / "p.csv"))
    assert code == 2 and "give FILE.json" in err
    (tmp_path / "p.csv").write_text("mine\n")
    code, _, err = cli("latency", "calibrate-host", "--out", str(tmp_path / "p.json"))
    assert code == 2 and "p.csv exists" in err and (tmp_path / "p.csv").read_text() == "mine\n"


def test_a_budget_too_short_to_export_anything_is_one_line(cli, tmp_path):
    code, _, err = cli("latency", "calibrate-host", "--out", str(tmp_path / "p.json"), "--minutes", "0.01",
                       "--keep-dir", str(tmp_path / "keep"))
    assert code == 2 and "no model to fit was exported" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
def test_a_small_real_calibration_then_its_rerun_reuses_the_exports(tmp_path, monkeypatch):
    from latency_models import load_profile
    from nas.tflite import export_candidate

    monkeypatch.setenv("MBNAS_CACHE", str(tmp_path / "cache"))
    smoke = load_space("smoke")
    cands = [c.replace(num_layers=n) for c, n in zip(smoke.sample(7, 3), (1, 2, 1, 2, 1, 2, 1))]
    plan = ([DesignPoint(cands[0], "anchor", "heldout")] + [DesignPoint(c, "smoke", "fit") for c in cands[1:5]]
            + [DesignPoint(c, "smoke", "heldout") for c in cands[5:]])
    cfg = HostCalibrationConfig(minutes=5, rounds=4, runs=5, keep_dir=tmp_path / "keep", name="mine")
    res = calibrate_host(tmp_path / "p.json", export_candidate, cfg, points=plan, log=lambda s: None)
    assert len(res.exported) == 7 and not res.reused and not res.skipped and not res.failed
    assert not list((tmp_path / "keep").glob("*.part"))
    rows = read_rows(res.csv)
    assert len(rows) == 7 and all(r.ok and r.extra["rounds"] == "4" for r in rows) and res.rounds == 4
    assert sum("calibrate-host fit" in r.source for r in rows) == 4
    prof = load_profile(tmp_path / "p.json")
    assert prof.name == "mine" and prof.conditions["cpu"] and "factor(s) over host-cpu-litert" in res.method
    assert res.heldout["n"] == 3 and res.ratio["n"] == 2  # the anchor is not its own ratio
    assert prof.error["ratio_to_anchor"] == res.ratio and res.ratio["anchor"].startswith(cands[0].label)
    assert res.noise["models"] == 7
    assert any(line.startswith("aim (90%") for line in res.report())
    again = calibrate_host(tmp_path / "q.json", export_candidate, cfg, points=plan, log=lambda s: None)
    assert len(again.reused) == 7 and not again.exported
    assert json.loads((tmp_path / "q.json").read_text())["coefficients"]


def _killed_exporter(c, path, seq_len):  # runs in an export process: the OOM killer's kill -9 of it
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_an_export_process_killed_stops_the_exports_and_says_so(tmp_path):
    pts = [DesignPoint(c, "smoke", "fit") for c in load_space("smoke").sample(3, 0)]
    lines = []
    exported, reused, skipped, failed = export_all(pts, tmp_path, _killed_exporter, deadline=time.monotonic() + 300,
                                                   jobs=1, log=lines.append)
    assert not exported and not reused and len(failed) == 1 and "export process died" in failed[0]
    assert len(skipped) == 2 and not list(tmp_path.iterdir())
