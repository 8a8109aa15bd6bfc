"""Shared by the benchmark scripts: the header every result file carries (date, machine, command)
and writing ``benchmarks/results/<name>.md``."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    try:
        import torch
        tv = f"torch {torch.__version__}"
    except ImportError:
        tv = "no torch"
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, {tv}"


def header(title: str) -> str:
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    return (f"# {title}\n\n- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n- machine: {machine()}\n"
            f"- command: `{cmd}`\n")


def write_result(name: str, title: str, body: str) -> Path:
    """Print and write ``benchmarks/results/<name>.md`` (header + body)."""
    text = header(title) + "\n" + body.rstrip() + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    return path


def median_spread(xs: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(xs), min(xs), max(xs)


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)
