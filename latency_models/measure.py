"""Real measurement: time a candidate's ``.tflite`` with ai-edge-litert.

Split as nn-Meter splits it: this module *runs* models; ``tflite_bench`` *parses* the output of
TFLite's ``benchmark_model`` run elsewhere (a phone). Making the ``.tflite`` needs the model code,
which sits a layer above (``nas.tflite.export_candidate``), so the functions that export take the
exporter as an argument (``Exporter``): this package imports only ``search_spaces``.

Conditions: fp32, XNNPACK (LiteRT's default CPU delegate), batch 1, ``seq_len`` tokens of int32 ids,
``threads`` interpreter threads, ``warmup`` discarded runs, then the median of ``runs`` runs.

Which clock. This project's machines are shared (2 cores, a teacher training next door), so a
wall-clock median is inflated by time slicing whenever a neighbour is scheduled on our core (we saw
medians 2x the minimum). At one thread XNNPACK runs the whole graph on the calling thread, so the
thread's CPU time per ``invoke`` leaves out the time slices neighbours take (it does not undo their
cache and memory-bandwidth contention, which still moved our numbers by up to ~10% between passes).
``clock="auto"`` therefore uses thread CPU time at 1 thread and wall time at more threads (where
worker threads do the work); both medians are always recorded. ``measure_round_robin`` times many
models interleaved, so that load drifts hit all of them alike.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from latency_models.quiet import quiet_fds
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError, check_choice, require

CLOCKS = ("auto", "cpu", "wall")

# (candidate, destination, seq_len or None for the candidate's own) -> the written .tflite
Exporter = Callable[[Candidate, Path, "int | None"], Path]


@dataclass(frozen=True)
class Measurement:
    """One timed model.

    latency_ms: median of ``runs`` invocations on ``clock`` (the number every fit and report uses).
    wall_median_ms / cpu_median_ms: both clocks' medians (cpu = the calling thread's CPU time).
    p10_ms / p90_ms: spread of the chosen clock over the runs.
    clock: ``cpu`` or ``wall`` (what ``latency_ms`` is).
    runtime: runtime, version and delegate, e.g. ``ai-edge-litert 2.3.0 XNNPACK fp32``.
    tflite_mb: size of the exported flatbuffer.
    convert_s: seconds spent exporting (0 when the .tflite was given).
    rounds: interleaved rounds the runs were spread over (``measure_round_robin``; 1 otherwise).
    round_spread_pct: (max - min) / median of the per-round medians, percent (None for 1 round).
    best_round_ms: the lowest per-round median (the least loaded round; None for 1 round).
    halves_pct: median of the odd rounds' runs / median of the even rounds' runs - 1, percent: the
        noise of the measurement itself (None below 2 rounds).
    """

    latency_ms: float
    wall_median_ms: float
    cpu_median_ms: float
    p10_ms: float
    p90_ms: float
    clock: str
    threads: int
    runs: int
    warmup: int
    runtime: str
    tflite_mb: float
    convert_s: float = 0.0
    rounds: int = 1
    round_spread_pct: float | None = None
    best_round_ms: float | None = None
    halves_pct: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def runtime_versions() -> dict[str, str]:
    out = {}
    for pkg in ("ai-edge-litert", "litert-torch", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def measure_tflite(path: str | Path, threads: int = 1, runs: int = 30, warmup: int = 5,
                   clock: str = "auto", convert_s: float = 0.0, min_time_s: float = 1.0,
                   vocab_size: int = 1000) -> Measurement:
    """Time an existing .tflite file with ai-edge-litert (XNNPACK on, as LiteRT's default).

    At least ``runs`` timed runs, and more (up to 20,000) until ``min_time_s`` of timed runs have
    passed: a 0.1 ms model timed 30 times would sample 3 ms of a noisy machine.
    """
    check_choice("clock", clock, CLOCKS)
    if threads < 1 or runs < 1 or warmup < 0:
        raise UserError(f"threads and runs must be >= 1 and warmup >= 0 (got {threads}, {runs}, {warmup})")
    path = Path(path)
    it = _load(path, threads, vocab_size)  # token ids below vocab_size; int32 after export
    for _ in range(warmup):
        it.invoke()
    wall, cpu = [], []
    t_end = time.perf_counter() + min_time_s
    while len(wall) < runs or (time.perf_counter() < t_end and len(wall) < 20_000):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        it.invoke()
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        wall.append((w1 - w0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
    use = ("cpu" if threads == 1 else "wall") if clock == "auto" else clock
    series = sorted(cpu if use == "cpu" else wall)
    q = lambda p: series[min(len(series) - 1, int(p * len(series)))]  # noqa: E731
    v = runtime_versions()
    del it
    return Measurement(
        latency_ms=statistics.median(series), wall_median_ms=statistics.median(wall),
        cpu_median_ms=statistics.median(cpu), p10_ms=q(0.1), p90_ms=q(0.9), clock=use, threads=threads,
        runs=len(series), warmup=warmup, runtime=f"ai-edge-litert {v['ai-edge-litert']} XNNPACK fp32",
        tflite_mb=round(path.stat().st_size / 2**20, 3), convert_s=round(convert_s, 2),
    )


def measure_candidate(c: Candidate, export: Exporter, threads: int = 1, runs: int = 30, warmup: int = 5,
                      clock: str = "auto", seq_len: int | None = None, keep: str | Path | None = None,
                      reuse: bool = False) -> Measurement:
    """Export ``c`` with ``export`` (``nas.tflite.export_candidate``) and time it. ``keep``: where to
    leave the .tflite (default: a temporary file); ``reuse``: time an existing ``keep`` file instead
    of exporting again (``convert_s`` is then 0)."""
    with tempfile.TemporaryDirectory(prefix="mbnas-litert-") as tmp:
        path = Path(keep) if keep else Path(tmp) / "model.tflite"
        t0 = time.perf_counter()
        if not (reuse and keep and path.is_file()):
            export(c, path, seq_len)
        convert_s = time.perf_counter() - t0
        return measure_tflite(path, threads=threads, runs=runs, warmup=warmup, clock=clock, convert_s=convert_s,
                              vocab_size=c.vocab_size)


def _load(path: Path, threads: int, vocab_size: int):
    interp_mod = require("ai_edge_litert.interpreter", "litert")

    try:
        with quiet_fds():  # LiteRT logs "INFO: Created TensorFlow Lite XNNPACK delegate" from C++
            it = interp_mod.Interpreter(model_path=str(path), num_threads=threads)
            it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: LiteRT cannot load it ({str(exc).splitlines()[0]})") from None
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.integers(0, min(vocab_size, 30000), size=d["shape"]).astype(d["dtype"]))
    return it


ESTIMATORS = ("median", "best_round", "p10")


def measure_round_robin(paths: list[str | Path], threads: int = 1, rounds: int = 5, runs: int = 10,
                        warmup: int = 3, vocab_sizes: list[int] | None = None, seed: int = 0,
                        estimator: str = "median", log=None, until: float | None = None) -> list[Measurement]:
    """Time many .tflite files together: ``rounds`` rounds, each running every model ``runs`` times
    in a shuffled order. A slow drift of the machine's load (a neighbour starting a job) then hits
    every model alike instead of whichever was measured during it; the per-round medians show how
    much the load moved (``round_spread_pct``). Clock: thread CPU time at 1 thread, else wall.
    ``estimator`` picks ``latency_ms``: the median of all runs, the lowest per-round median
    (``best_round``: the least loaded round), or the 10th percentile of all runs; all three are kept.
    ``until``: a ``time.monotonic`` deadline; ``rounds`` is then the most, and no round is started
    that the slowest round so far says would end past it (2 rounds at least: the halves need them).
    """
    check_choice("estimator", estimator, ESTIMATORS)

    paths = [Path(p) for p in paths]
    vocab_sizes = vocab_sizes or [1000] * len(paths)
    its = [_load(p, threads, v) for p, v in zip(paths, vocab_sizes)]
    for it in its:
        for _ in range(warmup):
            it.invoke()
    use = "cpu" if threads == 1 else "wall"
    series: list[list[float]] = [[] for _ in paths]
    walls: list[list[float]] = [[] for _ in paths]
    cpus: list[list[float]] = [[] for _ in paths]
    per_round: list[list[float]] = [[] for _ in paths]
    halves: list[tuple[list[float], list[float]]] = [([], []) for _ in paths]  # runs of even / odd rounds
    rng = random.Random(seed)
    done, slowest = 0, 0.0
    for r in range(rounds):
        if until is not None and done >= 2 and time.monotonic() + slowest > until:
            break
        t_round = time.monotonic()
        order = list(range(len(paths)))
        rng.shuffle(order)
        for i in order:
            it, s = its[i], []
            for _ in range(runs):
                w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                it.invoke()
                c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
                walls[i].append((w1 - w0) / 1e6)
                cpus[i].append((c1 - c0) / 1e6)
                s.append(cpus[i][-1] if use == "cpu" else walls[i][-1])
            series[i] += s
            halves[i][r % 2].extend(s)
            per_round[i].append(statistics.median(s))
        done, slowest = done + 1, max(slowest, time.monotonic() - t_round)
        if log:
            log(f"round {r + 1}/{rounds} done")
    v = runtime_versions()
    out = []
    for i, p in enumerate(paths):
        ser = sorted(series[i])
        q = lambda f: ser[min(len(ser) - 1, int(f * len(ser)))]  # noqa: E731
        med = statistics.median(ser)
        spread = (max(per_round[i]) - min(per_round[i])) / med * 100 if done > 1 else None
        best = min(per_round[i])
        chosen = {"median": med, "best_round": best, "p10": q(0.1)}[estimator]
        out.append(Measurement(
            latency_ms=chosen, wall_median_ms=statistics.median(walls[i]), cpu_median_ms=statistics.median(cpus[i]),
            p10_ms=q(0.1), p90_ms=q(0.9), clock=use, threads=threads, runs=len(ser), warmup=warmup,
            runtime=f"ai-edge-litert {v['ai-edge-litert']} XNNPACK fp32", tflite_mb=round(p.stat().st_size / 2**20, 3),
            rounds=done, round_spread_pct=spread, best_round_ms=best if done > 1 else None,
            halves_pct=(100 * (statistics.median(halves[i][1]) / statistics.median(halves[i][0]) - 1)
                        if done > 1 else None)))
    del its
    return out
