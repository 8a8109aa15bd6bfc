"""The benchmark_model parser on real published outputs (tests/latency_models/data/real/, each with its
source in its header): TFLite 1.12 to 2.20 and LiteRT, with and without op profiling. Each one is read
or refused in one line that says what is missing, by the parser and by ``mbnas latency calibrate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from latency_models.tflite_bench import _unprefixed, parse_benchmark_output, read_benchmark_file
from search_spaces.errors import UserError

REAL = Path(__file__).parent / "data" / "real"

# file -> (graph stem, avg ms, timed runs, threads, xnnpack, node types in the op profile)
PARSED = {
    "armnn-issue541-aarch64-cpu.txt": ("model_32bits_float", 0.166798, 5961, None, None, 0),
    "tflite-1.12-am57x-cpu.txt": ("mobilenet_v1_1.0_224_quant", 137.722, 50, 1, None, 0),
    "tflite-2.8-riscv64-qemu-op-profiling.txt": ("mobilenet_v1_1.0_224", 2950.34, 50, 4, None, 5),
    "tflite-2.13-arm-tc2-xnnpack-op-profiling.txt": ("mobile_object_localizer_v1", 7.45497, 67, 4, True, 8),
    "tflite-2.18-am62x-cpu.txt": ("ssd_mobilenet_v2_coco", 971.535, 50, 4, False, 0),
    "tflite-2.20-am62x-xnnpack.txt": ("ssd_mobilenet_v2_coco", 899.641, 50, None, True, 0),
}
# published in part only: the model's name is not in what was published
REFUSED = {
    "litert-arm-sme2-use-profiler-partial.txt": "no 'Graph: [...]' or 'Loading model from:' line",
    "tflite-readme-op-profiling-partial.txt": "no 'Graph: [...]' or 'Loading model from:' line",
}


def test_every_real_log_is_accounted_for():
    assert {p.name for p in REAL.glob("*.txt")} == set(PARSED) | set(REFUSED)
    for p in REAL.glob("*.txt"):
        head = p.read_text().split("# ---", 1)[0]
        assert "# source: http" in head, f"{p.name}: its source must be named in the header"


@pytest.mark.parametrize("name", sorted(PARSED))
def test_real_log_parses(name):
    stem, avg_ms, runs, threads, xnnpack, n_types = PARSED[name]
    r = read_benchmark_file(REAL / name)
    assert (r.name, r.runs, r.threads, r.xnnpack, len(r.node_types)) == (stem, runs, threads, xnnpack, n_types)
    assert r.avg_ms == pytest.approx(avg_ms, rel=1e-6)
    if n_types:  # the op profile's node types add up to about the average (the tables are per inference)
        assert sum(s.avg_ms for s in r.node_types) == pytest.approx(r.avg_ms, rel=0.1)


def test_xnnpack_node_names_get_op_classes():
    r = read_benchmark_file(REAL / "tflite-2.13-arm-tc2-xnnpack-op-profiling.txt")
    classes = r.class_ms()
    assert classes["matmul"] > 0.5 * r.avg_ms  # "Convolution (NHWC, QU8) GEMM" and friends are matmuls


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_partial_real_log_is_refused_in_one_line(name):
    with pytest.raises(UserError, match=REFUSED[name].replace("[", r"\[").replace("]", r"\]")):
        read_benchmark_file(REAL / name)


def test_prefixes_of_logcat_and_litert_lines_are_read():
    # line formats quoted from tensorflow/tensorflow#56301 (logcat) and a LiteRT CompiledModel run
    text = ("06-18 10:20:41.893  4669  4669 I tflite  : Graph: [/data/local/tmp/m.tflite]\n"
            "INFO: [./litert/tools/benchmark_litert_model.h:88] Inference (avg):      0.46 ms (2112 runs)\n")
    assert "Graph: [/data/local/tmp/m.tflite]" in _unprefixed(text).splitlines()[0]
    r = parse_benchmark_output(text)
    assert (r.name, r.runs) == ("m", 2112) and r.avg_ms == pytest.approx(0.46)


def test_calibrate_reads_each_real_log_or_refuses_it_in_one_line(tmp_path, mbnas):
    for p in sorted(REAL.glob("*.txt")):
        out = tmp_path / f"{p.stem}.json"
        code, stdout, stderr = mbnas("latency", "calibrate", "--device", "phone", str(p), "--out", str(out))
        assert code == 2 and not out.exists(), (p.name, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mbnas: error:"), (p.name, stderr)
        # what is missing: which architecture the model is (a third-party model), or the model's name
        assert ".json' candidate file" in lines[0] or "Graph: [...]" in lines[0], lines[0]


def test_calibrate_fits_real_logs_once_it_knows_their_architectures(tmp_path, mbnas):
    from search_spaces.references import REFERENCES

    for name, ref in (("tflite-2.18-am62x-cpu.txt", "mobilebert"), ("tflite-1.12-am57x-cpu.txt", "mobilebert-tiny"),
                      ("armnn-issue541-aarch64-cpu.txt", "bert-base")):
        (tmp_path / name).write_text((REAL / name).read_text())
        stem = PARSED[name][0]  # the model the log timed, stood in for by a reference architecture
        REFERENCES[ref].candidate.replace(name=stem).save(tmp_path / f"{stem}.json")
    logs = [str(tmp_path / n) for n in ("tflite-2.18-am62x-cpu.txt", "tflite-1.12-am57x-cpu.txt",
                                         "armnn-issue541-aarch64-cpu.txt")]
    code, out, err = mbnas("latency", "calibrate", "--device", "mixed", *logs, "--out", str(tmp_path / "m.json"))
    assert code == 0, err
    assert "971.53 ms measured over 50 runs" in out and "137.72 ms" in out and (tmp_path / "m.json").is_file()
