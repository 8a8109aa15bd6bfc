"""``mbnas latency``: predictions say they are predicted, bad input is one line and exit 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from latency_models.calibrate import HOST_HELDOUT, HOST_TRAIN

DATA = Path(__file__).parent / "data"


def test_console_script_bad_device_exit_2(mbnas):
    code, out, err = mbnas("latency", "predict", "--device", "pixel9", "mobilebert")
    assert code == 2 and err.strip() == (
        "mbnas: error: 'pixel9' is neither a built-in device profile (host-cpu-litert, pixel4-cpu-tflite) "
        "nor a .json file")


def test_devices(cli):
    code, out, err = cli("latency", "devices")
    assert code == 0, err
    assert "host-cpu-litert" in out and "pixel4-cpu-tflite" in out and "leave-one-out" in out


def test_predict_text_says_predicted_and_error(cli):
    code, out, err = cli("latency", "predict", "--device", "pixel4-cpu-tflite", "mobilebert")
    assert code == 0, err
    assert "predicted by pixel4-cpu-tflite" in out and "leave-one-out error" in out
    for k in ("matmul", "attention", "norm", "activation", "elementwise", "embedding"):
        assert k in out


def test_predict_json(cli, tmp_path):
    cfg = {"model_type": "mobilebert", "num_hidden_layers": 12, "hidden_act": "relu", "normalization_type": "no_norm"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    code, out, err = cli("latency", "predict", "--device", "host-cpu-litert", str(tmp_path / "config.json"), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["predicted"] is True and d["profile"] == "host-cpu-litert" and d["error_summary"]
    assert d["latency_ms"] == pytest.approx(sum(d["breakdown"].values()))
    assert set(d["breakdown"]) == {"matmul", "attention", "norm", "activation", "elementwise", "embedding"}


@pytest.mark.parametrize("args,match", [
    (("predict", "--device", "pixel9", "mobilebert"),
     "'pixel9' is neither a built-in device profile (host-cpu-litert, pixel4"),
    (("predict", "--device", "pixel4-cpu-tflite", "gpt-5"), "neither a reference architecture"),
    (("predict", "--device", "pixel4-cpu-tflite", "mobilebert", "--seq-len", "0"), "--seq-len must be >= 1"),
    (("report", "--device", "nope"), "'nope' is neither a built-in device profile"),
    (("dataset", "--space", "smoke", "-n", "1", "--out", "x.csv", "--layers", "a,b"), "--layers must be"),
    (("dataset", "--space", "nope", "-n", "1", "--out", "x.csv"), "neither a built-in space"),
    (("calibrate", "--device", "p", "missing.csv"), "missing.csv: no such file"),
    (("calibrate", "--device", "bad name", "x.csv"), "--device 'bad name'"),
    (("measure", "gpt-5"), "neither a reference architecture"),
    (("measure", "mobilebert", "--warmup", "-1"), "--warmup must be >= 0, got -1"),
    (("dataset", "--space", "smoke", "-n", "0", "--out", "x.csv"), "-n must be >= 1, got 0"),
    (("predict", "--device", "nope.json", "mobilebert"), "nope.json: no such file"),
])
def test_bad_input_is_one_line_exit_2(cli, args, match):
    code, out, err = cli("latency", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("mbnas: error:")
    assert match in err


def test_calibrate_malformed_csv_names_the_line(cli, tmp_path):
    lines = HOST_TRAIN.read_text().splitlines()
    bad = lines[:4] + [lines[4].replace(",ok,", ",okay,")]
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    code, _, err = cli("latency", "calibrate", "--device", "x", str(tmp_path / "bad.csv"))
    assert code == 2 and "bad.csv: line 5: column 'status'" in err


def test_calibrate_from_phone_logs_then_predict(cli, tmp_path):
    for f in ("benchmark_mobilebert_xnnpack.txt", "benchmark_mobilebert-no-opt_builtin.txt"):
        shutil.copy(DATA / f, tmp_path / f)
    code, out, err = cli("latency", "calibrate", "--device", "my-phone",
                         str(tmp_path / "benchmark_mobilebert_xnnpack.txt"),
                         str(tmp_path / "benchmark_mobilebert-no-opt_builtin.txt"), "--out", str(tmp_path / "p.json"))
    assert code == 0, err
    assert "op profile ms" in out and "leave-one-out" in out
    prof = json.loads((tmp_path / "p.json").read_text())
    assert prof["name"] == "my-phone" and prof["conditions"]["threads"] == 4
    assert len(prof["error"]["points"]) == 2
    code, out, err = cli("latency", "predict", "--device", str(tmp_path / "p.json"), "mobilebert-tiny")
    assert code == 0 and "predicted by my-phone" in out


def test_calibrate_op_level_from_csv(cli, tmp_path):
    code, out, err = cli("latency", "calibrate", "--device", "host-again", str(HOST_TRAIN), "--heldout",
                         str(HOST_HELDOUT), "--out", str(tmp_path / "h.json"))
    assert code == 0, err
    prof = json.loads((tmp_path / "h.json").read_text())
    assert prof["fit"]["rows"] >= 40 and "cv5" in prof["error"] and prof["error"]["heldout"]["n"] >= 40
    assert "held-out error" in prof["error"]["summary"]


def test_report_pixel_and_host(cli):
    code, out, err = cli("latency", "report", "--device", "pixel4-cpu-tflite")
    assert code == 0, err
    assert out.count("leave-one-out") >= 4 and out.count("shown, not fitted") == 2
    code, out, err = cli("latency", "report", "--device", "host-cpu-litert")
    assert code == 0, err
    assert out.count("held-out") >= 40
    code, out, err = cli("latency", "report", "--device", "host-cpu-litert", "--csv", str(HOST_HELDOUT), "--json")
    assert code == 0 and json.loads(out)["points"]


def test_calibrate_never_writes_over_its_input_or_an_existing_file(cli, tmp_path):
    """Before, '--out victim.csv' replaced the measurements with the profile, and any existing file went too."""
    csv = tmp_path / "victim.csv"
    csv.write_text(HOST_TRAIN.read_text())
    before = csv.read_bytes()
    code, _, err = cli("latency", "calibrate", "--device", "x", str(csv), "--out", str(csv), "--force")
    assert code == 2 and "--out" in err and "is also an input" in err and csv.read_bytes() == before
    (tmp_path / "p.json").write_text("my notes")
    code, _, err = cli("latency", "calibrate", "--device", "x", str(csv), "--out", str(tmp_path / "p.json"))
    assert code == 2 and "exists" in err and "--force" in err and (tmp_path / "p.json").read_text() == "my notes"
    code, out, err = cli("latency", "calibrate", "--device", "x", str(csv), "--out", str(tmp_path / "p.json"),
                         "--force")
    assert code == 0, err
    assert json.loads((tmp_path / "p.json").read_text())["name"] == "x"


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(HOST_TRAIN.read_text().encode("utf-16")), "not UTF-8 text"),
    (lambda p: p.write_bytes(b"TFL3\x00\x00\xff\xfe" * 8), "not UTF-8 text"),  # a .tflite given by mistake
    (lambda p: p.write_text("STARTING!\nLog parameter values verbosely: [0]\n"),
     "neither a latency CSV .* nor TFLite benchmark_model output"),  # a log cut short before its 'Graph:' line
])
def test_calibrate_input_that_is_not_text_or_not_a_measurement_is_one_line(cli, tmp_path, make, match):
    make(tmp_path / "in.csv")
    code, _, err = cli("latency", "calibrate", "--device", "x", str(tmp_path / "in.csv"), "--out",
                       str(tmp_path / "p.json"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "p.json").exists()


def test_predict_of_a_binary_file_is_one_line(cli, tmp_path):
    (tmp_path / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3\xff" * 4)
    code, _, err = cli("latency", "predict", "--device", "pixel4-cpu-tflite", str(tmp_path / "model.tflite"))
    assert code == 2 and "model.tflite: not UTF-8 text" in err and len(err.strip().splitlines()) == 1


def test_calibrate_heldout_missing_is_refused_and_unused_is_said(cli, tmp_path):
    logs = [shutil.copy(DATA / f, tmp_path / f) for f in ("benchmark_mobilebert_xnnpack.txt",
                                                          "benchmark_mobilebert-no-opt_builtin.txt")]
    code, _, err = cli("latency", "calibrate", "--device", "x", *map(str, logs), "--heldout", "nope.csv",
                       "--out", str(tmp_path / "p.json"))
    assert code == 2 and "--heldout nope.csv: no such file" in err
    code, out, err = cli("latency", "calibrate", "--device", "x", *map(str, logs), "--heldout", str(HOST_HELDOUT),
                         "--out", str(tmp_path / "p.json"))
    assert code == 0, err
    assert "--heldout is not used" in out


def test_calibrate_warns_when_leave_one_out_says_the_points_do_not_agree(cli, tmp_path):
    """Four host rows with their latencies shuffled: no scaling of the host's shape fits them."""
    lines = HOST_TRAIN.read_text().splitlines()
    header, rows = lines[0], lines[1:5]
    col = header.split(",").index("latency_ms")
    cells = [r.split(",") for r in rows]
    lat = [c[col] for c in cells]
    for c, v in zip(cells, [str(float(lat[0]) * 20), lat[1], str(float(lat[2]) / 20), lat[3]]):
        c[col] = v
    (tmp_path / "odd.csv").write_text("\n".join([header] + [",".join(c) for c in cells]) + "\n")
    code, out, err = cli("latency", "calibrate", "--device", "odd", str(tmp_path / "odd.csv"), "--out",
                         str(tmp_path / "p.json"))
    assert code == 0, err
    assert "warning: a leave-one-out error of" in err and "do not pin" in err


def test_bench_suite_refuses_a_folder_that_holds_files(cli, tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "mobilebert.txt").write_text("an earlier phone run")
    code, _, err = cli("latency", "bench-suite", "--out", str(tmp_path))
    assert code == 2 and "holds files" in err and "--force" in err
    assert (tmp_path / "logs" / "mobilebert.txt").read_text() == "an earlier phone run"


def test_measure_keep_refuses_an_existing_file(cli, tmp_path):
    (tmp_path / "p.csv").write_text("my measurements")
    code, _, err = cli("latency", "measure", "mobilebert-tiny", "--keep", str(tmp_path / "p.csv"))
    assert code == 2 and "--keep" in err and "exists" in err
    assert (tmp_path / "p.csv").read_text() == "my measurements"
