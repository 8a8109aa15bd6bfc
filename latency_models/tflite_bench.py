"""TFLite ``benchmark_model`` on a phone: write the suite a user runs, and parse what it prints.

nn-Meter splits measuring into a profiler (runs the model) and a parser (reads its output); here the
profiler is TFLite's own ``benchmark_model`` binary on the phone, driven by the script that
``write_bench_suite`` writes (adb push, run, adb pull), and ``parse_benchmark_output`` reads its text:

* the run summary: ``count=50 first=... curr=... min=... max=... avg=61800 std=550`` (microseconds)
  of the timed runs (the last such line before the profiling tables; the first is the warm-up), or
  ``Inference timings in us: ... Inference (avg): 61800``;
* the conditions: ``Graph: [...]``, ``Num threads: [4]``, ``Use xnnpack: [1]``;
* with ``--enable_op_profiling=true``, the "Summary by node type" table of the regular runs:
  ``[Node type] [count] [avg ms] [avg %] [cdf %] [mem KB] [times called]``.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from search_spaces.arch import resolve_arch
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.references import REFERENCES, UNVERIFIED_PIXEL4_MS

if TYPE_CHECKING:
    from latency_models.measure import Exporter

# TFLite node type -> op class of search_spaces.ops.OP_CLASSES (what a per-op table can be compared with).
# MUL/ADD/SUB also run inside decomposed LayerNorm and GELU; they are booked as elementwise.
NODE_CLASS = {
    "FULLY_CONNECTED": "matmul", "CONV_2D": "matmul",
    "BATCH_MATMUL": "attention", "SOFTMAX": "attention", "TRANSPOSE": "attention",
    "MEAN": "norm", "SQUARED_DIFFERENCE": "norm", "RSQRT": "norm", "SQRT": "norm",
    "GELU": "activation", "TANH": "activation", "POW": "activation", "RELU": "activation", "ERF": "activation",
    "ADD": "elementwise", "MUL": "elementwise", "SUB": "elementwise", "DIV": "elementwise",
    "EMBEDDING_LOOKUP": "embedding", "GATHER": "embedding", "CONCATENATION": "embedding", "PAD": "embedding",
    "SLICE": "embedding", "STRIDED_SLICE": "embedding",
    "TfLiteXNNPackDelegate": "delegate",  # XNNPACK partitions: many ops fused, not attributable
}
# XNNPACK's own node names in op profiles of newer runtimes ("Fully Connected (NC, PF32) GEMM",
# "Add (ND, QU8)"): the name before its parenthesis
XNNPACK_CLASS = {
    "Fully Connected": "matmul", "Convolution": "matmul", "Batch Matrix Multiply": "attention",
    "Softmax": "attention", "Transpose": "attention", "Mean": "norm", "Square Root": "norm",
    "Reciprocal Square Root": "norm", "Squared Difference": "norm", "GELU": "activation", "Tanh": "activation",
    "ReLU": "activation", "Clamp": "activation", "Add": "elementwise", "Multiply": "elementwise",
    "Subtract": "elementwise", "Divide": "elementwise", "Concatenate": "embedding", "Slice": "embedding",
    "Copy": "other",
}

_COUNT_LINE = re.compile(r"count=(\d+)\s+first=(\d+)\s+curr=(\d+)\s+min=(\d+)\s+max=(\d+)\s+avg=([\d.e+]+)\s+std=(\d+)")
_INFER_AVG = re.compile(r"Inference timings in us:.*Inference \(avg\):\s*([\d.e+]+)")
# LiteRT's CompiledModel benchmark prints milliseconds and its run count on one line
_LITERT_AVG = re.compile(r"^\s*Inference \(avg\):\s*([\d.]+)\s*ms\s*\((\d+) runs\)", re.M)
_GRAPH = re.compile(r"^\s*(?:Graph:\s*\[(.*)\]|Loading model from:\s*(\S+))\s*$", re.M)
_THREADS = re.compile(r"^\s*(?:Num threads|#threads used for CPU inference)\s*:\s*\[(\d+)\]", re.M)
_XNNPACK = re.compile(r"^\s*Use xnnpack\s*:\s*\[(\w+)\]", re.M)  # TF 2.2 printed "Use xnnpack : [0]"
_XNNPACK_CREATED = re.compile(r"Created TensorFlow Lite XNNPACK delegate", re.M)
_PROFILING = re.compile(r"^[^#\n]*Profiling Info", re.M)  # the op-profiling tables start here
# prefixes before the tool's own text: an Android logcat capture ("06-18 10:20:41.893  4669  4669 I
# tflite  : "), the log level of newer builds ("INFO: "), LiteRT's source location ("[./litert/...h:88] ")
_PREFIX = re.compile(r"^(?:\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*:\s?)?"
                     r"(?:(?:INFO|WARNING|ERROR|VERBOSE): )?(?:\[[^\]\s]+:\d+\]\s*)?", re.M)


def _unprefixed(text: str) -> str:
    return _PREFIX.sub("", text)


@dataclass(frozen=True)
class NodeTypeStat:
    node_type: str
    count: int  # nodes of this type in the graph
    avg_ms: float  # per inference, all nodes of the type together
    avg_pct: float
    times_called: int


@dataclass(frozen=True)
class BenchmarkResult:
    """What one ``benchmark_model`` run reported.

    graph: model path as given to the tool (its file stem names the architecture).
    avg_ms: mean latency of the timed runs; runs: how many; std_ms, min_ms: their spread.
    threads: ``--num_threads``; xnnpack: whether the XNNPACK delegate was on (None: not printed).
    node_types: per-node-type summary of the regular runs (empty without op profiling).
    """

    graph: str
    avg_ms: float
    runs: int
    std_ms: float | None
    min_ms: float | None
    threads: int | None
    xnnpack: bool | None
    node_types: tuple[NodeTypeStat, ...] = field(default=())

    @property
    def name(self) -> str:
        return Path(self.graph).stem

    def class_ms(self) -> dict[str, float]:
        """Per-op-class milliseconds of the op profile (node types in neither ``NODE_CLASS`` nor
        ``XNNPACK_CLASS`` -> 'other')."""
        out: dict[str, float] = {}
        for s in self.node_types:
            k = NODE_CLASS.get(s.node_type) or XNNPACK_CLASS.get(s.node_type.split(" (")[0].strip(), "other")
            out[k] = out.get(k, 0.0) + s.avg_ms
        return out


def _node_type_table(text: str, where: str) -> tuple[NodeTypeStat, ...]:
    """The last "Summary by node type" table (the regular runs; an earlier one covers initialisation).

    Columns are found from the header (``[Node type] [count] [avg ms] [avg %] [cdf %] [mem KB]
    [times called]``; older releases print no ``[mem KB]``).
    """
    starts = [m.end() for m in re.finditer(r"=+ Summary by node type =+", text)]
    if not starts:
        return ()
    lines = text[starts[-1]:].splitlines()[1:]
    header = next((ln for ln in lines if "[Node type]" in ln or "[node type]" in ln), None)
    if header is None:
        raise UserError(f"{where}: 'Summary by node type' table without its header line")
    cols = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", header)][1:]
    need = ("count", "avg ms", "avg %", "times called")
    if any(c not in cols for c in need):
        raise UserError(f"{where}: 'Summary by node type' header lacks one of {list(need)}: {header.strip()!r}")
    rows = []
    for line in lines[lines.index(header) + 1:]:
        line = line.strip()
        if not line or line.startswith(("Timings", "Memory", "=")):
            break
        parts = line.split()
        if len(parts) <= len(cols):
            raise UserError(f"{where}: unreadable row in 'Summary by node type': {line!r}")
        vals = dict(zip(cols, parts[-len(cols):]))
        try:
            rows.append(NodeTypeStat(node_type=" ".join(parts[:-len(cols)]), count=int(vals["count"]),
                                     avg_ms=float(vals["avg ms"]), avg_pct=float(vals["avg %"].rstrip("%")),
                                     times_called=int(vals["times called"])))
        except ValueError:
            raise UserError(f"{where}: unreadable row in 'Summary by node type': {line!r}") from None
    return tuple(rows)


def parse_benchmark_output(text: str, where: str = "benchmark output") -> BenchmarkResult:
    """Parse the text ``benchmark_model`` prints (with or without log-level prefixes); ``UserError``
    naming ``where`` if it has no timings."""
    text = _unprefixed(text)
    graph = _GRAPH.search(text)
    if not graph:
        raise UserError(f"{where}: not TFLite benchmark_model output (no 'Graph: [...]' or 'Loading model from:' "
                        f"line naming the model): keep the tool's whole output, from its first line")
    counts = list(_COUNT_LINE.finditer(text))
    # the timed runs: the last count= line before the op-profiling tables (those repeat it for each table)
    prof_at = _PROFILING.search(text)
    prof = prof_at.start() if prof_at else -1
    timed = [m for m in counts if prof < 0 or m.start() < prof]
    avg = _INFER_AVG.search(text)
    litert = _LITERT_AVG.search(text)
    if litert:  # LiteRT's summary line; its profiler's "Timings (microseconds): count=" lines are not the runs
        runs, avg_us, std_ms, min_ms = int(litert.group(2)), float(litert.group(1)) * 1000, None, None
    elif timed:
        m = timed[-1]
        runs, avg_us, std_us, min_us = int(m.group(1)), float(m.group(6)), float(m.group(7)), float(m.group(4))
        std_ms, min_ms = std_us / 1000, min_us / 1000
    elif avg:
        runs, avg_us, std_ms, min_ms = 0, float(avg.group(1)), None, None
    else:
        raise UserError(f"{where}: benchmark_model output without timings (no 'count=... avg=...' line); "
                        f"did the run fail? Look at the end of the file")
    th = _THREADS.search(text)
    xn = _XNNPACK.search(text)
    xnnpack = (xn.group(1).lower() in ("1", "true")) if xn else (True if _XNNPACK_CREATED.search(text) else None)
    return BenchmarkResult(graph=graph.group(1) or graph.group(2), avg_ms=avg_us / 1000, runs=runs, std_ms=std_ms,
                           min_ms=min_ms, threads=int(th.group(1)) if th else None, xnnpack=xnnpack,
                           node_types=_node_type_table(text, where))


def read_benchmark_file(path: str | Path) -> BenchmarkResult:
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_benchmark_output(text, where=str(path))


def looks_like_benchmark_output(path: str | Path) -> bool:
    try:
        head = _unprefixed(Path(path).read_text(errors="replace")[:20000])
    except OSError:
        return False
    return bool(_GRAPH.search(head)) and ("benchmark" in head.lower() or "count=" in head)


def candidate_for(result: BenchmarkResult, search_dirs: Sequence[Path]) -> Candidate:
    """The architecture a benchmark ran: ``<stem>.json`` written by the bench suite, else a reference name."""
    for d in search_dirs:
        for p in (d / f"{result.name}.json", d.parent / f"{result.name}.json"):
            if p.is_file():
                return resolve_arch(str(p)).replace(name=result.name)

    if result.name in REFERENCES:
        return REFERENCES[result.name].candidate
    if result.name in UNVERIFIED_PIXEL4_MS:
        return UNVERIFIED_PIXEL4_MS[result.name][0]
    raise UserError(f"benchmark of '{result.graph}': no '{result.name}.json' candidate file next to the log "
                    f"and not a reference name; keep the bench suite's .json files with the logs")


# ------------------------------------------------------------------------------------------------
SUITE_DEFAULT = ("mobilebert", "mobilebert-tiny", "mobilebert-no-opt", "bert-base", "mobilebert-layernorm-relu",
                 "mobilebert-nonorm-gelu")

_SCRIPT = """#!/bin/sh
# Time the models of this folder on an Android phone with TFLite's benchmark_model, then fit a profile:
#   1. connect the phone (adb devices lists it); get benchmark_model for android_aarch64 (TFLite's
#      prebuilt "benchmark_model" binary, or build //tensorflow/lite/tools/benchmark:benchmark_model)
#   2. BENCHMARK_MODEL=/path/to/benchmark_model sh {script}
#   3. mbnas latency calibrate --device my-phone logs/*.txt --out my-phone.json
# Conditions: fp32, batch 1, seq {seq_len}, THREADS={threads} unless set (the MobileBERT paper's Pixel 4 numbers:
# seq 128, 4 threads).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
THREADS=${{THREADS:-{threads}}}
RUNS=${{RUNS:-50}}
DEV=/data/local/tmp/mbnas
adb shell mkdir -p $DEV
if [ -n "$BENCHMARK_MODEL" ]; then
  adb push "$BENCHMARK_MODEL" $DEV/benchmark_model
  adb shell chmod +x $DEV/benchmark_model
fi
mkdir -p "$HERE/logs"
for m in {models}; do
  echo "== $m"
  adb push "$HERE/$m.tflite" $DEV/$m.tflite
  adb shell "$DEV/benchmark_model --graph=$DEV/$m.tflite --num_threads=$THREADS --warmup_runs=5 \\
    --num_runs=$RUNS --enable_op_profiling=true > $DEV/$m.txt 2>&1"
  adb pull $DEV/$m.txt "$HERE/logs/$m.txt"
  adb shell rm -f $DEV/$m.tflite
done
echo "logs in $HERE/logs; next: mbnas latency calibrate --device my-phone $HERE/logs/*.txt --out my-phone.json"
"""


def write_bench_suite(out: str | Path, export: Exporter, archs: Sequence[str] = SUITE_DEFAULT, threads: int = 4,
                      log=print) -> Path:
    """Export each architecture with ``export`` (``nas.tflite.export_candidate``) to
    ``<out>/<name>.tflite`` (+ ``<name>.json``) and write ``run_benchmarks.sh``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for a in archs:
        c = UNVERIFIED_PIXEL4_MS[a][0] if a in UNVERIFIED_PIXEL4_MS else resolve_arch(a)
        name = c.name or Path(a).stem
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise UserError(f"architecture name {name!r} is not a safe file name (letters, digits, . _ -)")
        log(f"exporting {name} ({c.num_layers} blocks, seq {c.seq_len}) ...")
        export(c, out / f"{name}.tflite", None)
        (out / f"{name}.json").write_text(json.dumps(c.replace(name=name).to_dict(), indent=2) + "\n")
        names.append(name)
    script = out / "run_benchmarks.sh"
    seq = sorted({resolve_arch(str(out / f"{n}.json")).seq_len for n in names})
    script.write_text(_SCRIPT.format(script=script.name, threads=threads, models=" ".join(names),
                                     seq_len="/".join(map(str, seq))))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script
