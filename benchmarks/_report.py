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


def code_fingerprint(*packages: str) -> str:
    """sha256 (12 hex) over the Python sources of ``packages`` (folders under the repository root):
    a stored run is reused only while the code that produced it is unchanged."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


class RunsFile:
    """Finished runs of a long benchmark, one JSON line each, so that a killed benchmark resumes
    where it stopped instead of starting over. A line is reused only when its ``key`` and ``code``
    fingerprint both match the current job; anything else is ignored (and kept in the file)."""

    def __init__(self, path: str | Path, code: str):
        self.path, self.code = Path(path), code
        self.reload()

    @classmethod
    def appender(cls, path: str | Path, code: str) -> "RunsFile":
        """One that only appends (a worker process: the parent read the file)."""
        store = cls.__new__(cls)
        store.path, store.code, store.done = Path(path), code, {}
        return store

    def reload(self) -> None:
        """Read the finished runs again (after other processes appended to the file)."""
        import json

        code = self.code
        self.done: dict[str, dict] = {}
        if self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    rec = json.loads(line)
                except ValueError:  # a line cut short by a kill: that run is simply done again
                    print(f"{self.path}:{n}: unreadable line skipped (run again)", file=sys.stderr)
                    continue
                if rec.get("code") == code:
                    self.done[rec["key"]] = rec

    @staticmethod
    def key(*parts) -> str:
        return "/".join(str(p) for p in parts)

    def add(self, key: str, rec: dict, lock: bool = False) -> dict:
        """Append ``rec`` as one line; ``lock``: other processes append to the same file."""
        import fcntl
        import json

        rec = {"made_at": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", **rec, "key": key, "code": self.code}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            if lock:
                fcntl.flock(f, fcntl.LOCK_EX)
            f.write(json.dumps(rec) + "\n")
        self.done[key] = rec
        return rec
