"""Which CPU a host profile belongs to: a fingerprint of what changes a CPU's kernel timings.

The host machines of this project have changed from session to session (an Intel Xeon @ 2.80GHz
with 1.25 MiB L2, an AMD EPYC, a Xeon with AMX-BF16 and 2 MiB L2), and XNNPACK picks its kernels by
ISA: an AMX or AVX-512 machine runs other code than an AVX2 one, and the cache sizes decide where the
memory-bound ops fall. A model name alone was not enough to tell two machines apart ("Intel(R) Xeon(R)
Processor" is a prefix of "Intel(R) Xeon(R) Processor @ 2.80GHz"), so a host profile records the
whole fingerprint and is taken for this machine's only when every field is equal.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search_spaces.files import cache_dir

# /proc/cpuinfo flags that change which kernels XNNPACK (and torch) run
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16",
                "amx_int8", "asimd", "asimddp", "sve", "i8mm", "bf16")
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class CpuFingerprint:
    """model: /proc/cpuinfo's model name; cores: CPUs this process may use; l1d/l2/l3_kib: cache
    sizes of cpu0 (None where the system does not say); isa: the ``KERNEL_FLAGS`` it has; arch:
    ``platform.machine()``."""

    model: str
    cores: int
    l1d_kib: int | None
    l2_kib: int | None
    l3_kib: int | None
    isa: tuple[str, ...]
    arch: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "isa": list(self.isa)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CpuFingerprint:
        return cls(model=str(d.get("model", "?")), cores=int(d.get("cores", 0)), l1d_kib=d.get("l1d_kib"),
                   l2_kib=d.get("l2_kib"), l3_kib=d.get("l3_kib"), isa=tuple(d.get("isa", ())),
                   arch=str(d.get("arch", "?")))

    def describe(self) -> str:
        """``AMD EPYC (x86_64, 2 cores, L2 512 KiB, avx2 avx512f avx512_bf16)``."""
        caches = ", ".join(f"{k} {_kib(v)}" for k, v in (("L1d", self.l1d_kib), ("L2", self.l2_kib),
                                                           ("L3", self.l3_kib)) if v)
        return (f"{self.model} ({self.arch}, {self.cores} cores" + (f", {caches}" if caches else "")
                + (f", {' '.join(self.isa)}" if self.isa else "") + ")")

    def differences(self, other: CpuFingerprint) -> list[str]:
        """The fields that differ, in words (empty: the same machine as far as timings go)."""
        out = []
        for k in ("model", "arch", "cores", "l1d_kib", "l2_kib", "l3_kib"):
            a, b = getattr(self, k), getattr(other, k)
            if a != b:
                out.append(f"{k} {a} vs {b}")
        if set(self.isa) != set(other.isa):
            only_a, only_b = sorted(set(self.isa) - set(other.isa)), sorted(set(other.isa) - set(self.isa))
            out.append("isa " + "; ".join(x for x in (f"+{' +'.join(only_a)}" if only_a else "",
                                                        f"-{' -'.join(only_b)}" if only_b else "") if x))
        return out


def _kib(v: int) -> str:
    return f"{v // 1024} MiB" if v >= 1024 and v % 1024 == 0 else f"{v / 1024:.2f} MiB" if v >= 1024 else f"{v} KiB"


def _cache_kib(level: str, kind: tuple[str, ...]) -> int | None:
    """Size of cpu0's cache at ``level`` whose type is one of ``kind`` (sysfs), in KiB."""
    try:
        for index in sorted(CACHE_DIR.glob("index*")):
            if (index / "level").read_text().strip() == level and (index / "type").read_text().strip() in kind:
                text = (index / "size").read_text().strip()  # "48K", "2048K", "32M"
                unit = {"K": 1, "M": 1024, "G": 1024 * 1024}.get(text[-1:].upper())
                return int(text[:-1]) * unit if unit else int(text) // 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_model(cpuinfo: str | None = None) -> str:
    """/proc/cpuinfo's ``model name`` (``platform.processor()`` where there is none)."""
    for line in (cpuinfo if cpuinfo is not None else _read_cpuinfo()).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def this_cpu() -> CpuFingerprint:
    """This machine's fingerprint."""
    info = _read_cpuinfo()
    flags: set[str] = set()
    for line in info.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return CpuFingerprint(model=cpu_model(info), cores=cores, l1d_kib=_cache_kib("1", ("Data", "Unified")),
                          l2_kib=_cache_kib("2", ("Unified", "Data")), l3_kib=_cache_kib("3", ("Unified", "Data")),
                          isa=tuple(f for f in KERNEL_FLAGS if f in flags), arch=platform.machine() or "?")


def fingerprint_key(fp: CpuFingerprint) -> str:
    """12 hex digits naming the fingerprint (the file name of this machine's cached host profile)."""
    blob = json.dumps(fp.to_dict(), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def host_profile_path(fp: CpuFingerprint | None = None) -> Path:
    """Where ``mbnas latency calibrate`` keeps the profile it fitted on this machine's own timings:
    ``$MBNAS_CACHE/host-profiles/<fingerprint key>.json``; the device name ``host`` loads it."""
    return cache_dir() / "host-profiles" / f"{fingerprint_key(fp or this_cpu())}.json"
