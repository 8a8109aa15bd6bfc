"""``mbnas latency``: predictions say they are predicted, bad input is one line and exit 2."""

from __future__ import annotations

import json
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
