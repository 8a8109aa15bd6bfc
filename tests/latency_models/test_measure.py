"""A real LiteRT measurement of a tiny model (litert-torch export, ai-edge-litert timing)."""

from __future__ import annotations

import pytest

from search_spaces import load_space
from search_spaces.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from latency_models.measure import measure_candidate
    from nas.tflite import export_candidate

    c = load_space("smoke").sample(1, seed=0)[0].replace(num_layers=1)
    path = tmp_path_factory.mktemp("m") / "tiny.tflite"
    return c, path, measure_candidate(c, export_candidate, threads=1, runs=20, warmup=3, keep=path)


def test_measure_candidate(tiny):
    c, path, m = tiny
    assert path.stat().st_size > 0 and m.tflite_mb > 0 and m.convert_s > 0
    assert m.clock == "cpu" and m.threads == 1 and m.runs >= 20 and m.warmup == 3
    assert 0 < m.p10_ms <= m.latency_ms <= m.p90_ms
    assert m.latency_ms < 50  # a 1-block width-32 model
    assert m.runtime.startswith("ai-edge-litert") and "XNNPACK" in m.runtime


def test_measure_tflite_threads_and_wall_clock(tiny):
    from latency_models.measure import measure_tflite

    _, path, _ = tiny
    m = measure_tflite(path, threads=2, runs=10, warmup=1, min_time_s=0.1)
    assert m.clock == "wall" and m.threads == 2 and m.latency_ms > 0


def test_exported_graph_takes_int32_ids(tiny):
    from ai_edge_litert.interpreter import Interpreter
    import numpy as np

    c, path, _ = tiny
    it = Interpreter(model_path=str(path))
    (inp,) = it.get_input_details()
    assert inp["dtype"] == np.int32 and list(inp["shape"]) == [1, c.seq_len]
    (out,) = it.get_output_details()
    assert list(out["shape"]) == [1, c.seq_len, c.hidden_size]


@pytest.mark.parametrize("kw,match", [({"threads": 0}, "threads"), ({"clock": "sundial"}, "clock")])
def test_bad_measure_arguments(tiny, kw, match):
    from latency_models.measure import measure_tflite

    with pytest.raises(UserError, match=match):
        measure_tflite(tiny[1], **kw)


def test_unloadable_file(tmp_path):
    from latency_models.measure import measure_tflite

    (tmp_path / "x.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(UserError, match="LiteRT cannot load it"):
        measure_tflite(tmp_path / "x.tflite")


def test_measure_cli_prints_its_result_and_nothing_else(mbnas, tmp_path):
    """litert-torch's progress lines and LiteRT's "Created TensorFlow Lite XNNPACK delegate" (C++,
    straight to fd 2) are kept off the terminal: the measurement is the output."""
    arch = load_space("smoke").sample(1, seed=0)[0].replace(num_layers=1).save(tmp_path / "tiny.json")
    code, out, err = mbnas("latency", "measure", str(arch), "--runs", "3")
    assert code == 0, err
    assert "ms measured (ai-edge-litert" in out and len(out.strip().splitlines()) == 2 and not err.strip(), err


def test_round_robin_stops_at_its_deadline_after_two_rounds(tiny):
    import time

    from latency_models.measure import measure_round_robin

    _, path, _ = tiny
    m, = measure_round_robin([path], rounds=10, runs=2, warmup=0, until=time.monotonic())
    assert m.rounds == 2 and m.halves_pct is not None  # the noise floor needs both halves
    m, = measure_round_robin([path], rounds=3, runs=2, warmup=0, until=time.monotonic() + 60)
    assert m.rounds == 3
