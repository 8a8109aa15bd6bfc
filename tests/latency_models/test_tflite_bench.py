"""benchmark_model output parser (on realistic logs kept in data/) and the phone benchmark suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from latency_models.tflite_bench import (NODE_CLASS, candidate_for, looks_like_benchmark_output,
                                         parse_benchmark_output, read_benchmark_file)
from search_spaces.errors import UserError
from search_spaces.references import REFERENCES

DATA = Path(__file__).parent / "data"


def test_parses_xnnpack_run():
    r = read_benchmark_file(DATA / "benchmark_mobilebert_xnnpack.txt")
    assert (r.name, r.threads, r.xnnpack, r.runs) == ("mobilebert", 4, True, 50)
    assert r.avg_ms == pytest.approx(58.512)  # the timed runs, not the warm-up line (avg=60531.3)
    assert r.std_ms == pytest.approx(0.760) and r.min_ms == pytest.approx(57.40)
    # the op table of the regular runs, not the initialisation table (ModifyGraphWithDelegate)
    types = {s.node_type: s for s in r.node_types}
    assert "ModifyGraphWithDelegate" not in types
    assert types["TfLiteXNNPackDelegate"].count == 25 and types["TfLiteXNNPackDelegate"].avg_ms == pytest.approx(54.21)
    assert r.class_ms()["delegate"] == pytest.approx(54.21)


def test_parses_op_profile_without_xnnpack():
    r = read_benchmark_file(DATA / "benchmark_mobilebert-no-opt_builtin.txt")
    assert (r.name, r.xnnpack, r.avg_ms) == ("mobilebert-no-opt", False, pytest.approx(192.4))
    assert len(r.node_types) == 16
    by_class = r.class_ms()
    assert by_class["matmul"] == pytest.approx(88.514)
    assert by_class["norm"] == pytest.approx(41.21 + 8.99 + 0.82)  # MEAN + SQUARED_DIFFERENCE + RSQRT
    assert by_class["activation"] == pytest.approx(14.87)
    assert sum(by_class.values()) == pytest.approx(sum(s.avg_ms for s in r.node_types))


def test_table_without_mem_column():
    text = (DATA / "benchmark_mobilebert-no-opt_builtin.txt").read_text()
    old = text.replace("\t  [mem KB]", "").replace("\t     0.000\t", "\t")
    r = parse_benchmark_output(old)
    assert r.node_types[0].node_type == "FULLY_CONNECTED" and r.node_types[0].times_called == 361


def test_inference_avg_line_alone_is_enough():
    r = parse_benchmark_output("Graph: [/x/m.tflite]\nNum threads: [2]\nInference timings in us: Init: 1, "
                               "First inference: 2, Warmup (avg): 3, Inference (avg): 4500\n")
    assert (r.avg_ms, r.threads, r.node_types) == (4.5, 2, ())


@pytest.mark.parametrize("text,match", [
    ("hello", "not TFLite benchmark_model output"),
    ((DATA / "benchmark_failed.txt").read_text(), "without timings"),
])
def test_bad_output(text, match):
    with pytest.raises(UserError, match=match):
        parse_benchmark_output(text, where="log.txt")


def test_candidate_lookup(tmp_path):
    assert looks_like_benchmark_output(DATA / "benchmark_mobilebert_xnnpack.txt")
    assert not looks_like_benchmark_output(Path(__file__))
    r = read_benchmark_file(DATA / "benchmark_mobilebert_xnnpack.txt")
    assert candidate_for(r, [tmp_path]) == REFERENCES["mobilebert"].candidate
    # a suite's own candidate file next to the log wins
    REFERENCES["mobilebert-tiny"].candidate.save(tmp_path / "mobilebert.json")
    assert candidate_for(r, [tmp_path]).num_ffn == 2
    shutil.copy(DATA / "benchmark_mobilebert_xnnpack.txt", tmp_path / "log.txt")
    other = parse_benchmark_output((tmp_path / "log.txt").read_text().replace("mobilebert.tflite", "mystery.tflite"))
    with pytest.raises(UserError, match="no 'mystery.json' candidate file"):
        candidate_for(other, [tmp_path])


def test_node_classes_are_op_classes():
    from search_spaces.ops import OP_CLASSES

    assert set(NODE_CLASS.values()) <= set(OP_CLASSES) | {"delegate"}


@pytest.mark.slow
def test_bench_suite_writes_models_and_script(mbnas, tmp_path):
    from search_spaces import load_space

    c = load_space("smoke").sample(1, seed=0)[0].replace(num_layers=1, name="tiny1")
    c.save(tmp_path / "tiny1.json")
    code, out, err = mbnas("latency", "bench-suite", "--out", str(tmp_path / "suite"),
                           "--arch", str(tmp_path / "tiny1.json"))
    assert code == 0, err
    suite = tmp_path / "suite"
    assert (suite / "tiny1.tflite").stat().st_size > 0 and (suite / "tiny1.json").exists()
    script = (suite / "run_benchmarks.sh").read_text()
    for needle in ("adb push", "adb pull", "--enable_op_profiling=true", "--num_threads=$THREADS", "for m in tiny1;"):
        assert needle in script
    assert (suite / "run_benchmarks.sh").stat().st_mode & 0o111


def test_log_level_prefixes_of_newer_builds_are_read(tmp_path):
    """Newer benchmark_model builds print 'INFO: Graph: [...]': the same run, read the same."""
    plain = DATA / "benchmark_mobilebert_xnnpack.txt"
    prefixed = tmp_path / "prefixed.txt"
    prefixed.write_text("".join(f"INFO: {line}" for line in plain.read_text().splitlines(keepends=True)))
    assert looks_like_benchmark_output(prefixed)
    assert read_benchmark_file(prefixed) == read_benchmark_file(plain)
