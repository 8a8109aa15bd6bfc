"""Process-wide memory-allocator setting for training on CPU.

Why: PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block above
its mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh ``mmap`` and unmaps it on free,
so each large temporary (an (N, V) logit matrix: ~37 MB at the demo shape) is page-faulted in
again, zero-filled by the kernel, at every step. On this project's 2-core host that cost as much
as the arithmetic: ``exp`` into a fresh (300, 30,522) tensor took 26 ms, into a reused one 8 ms.
Serving big blocks from the heap and not trimming it keeps freed memory for the next step, as
jemalloc or tcmalloc would, without preloading either: a pre-training-distillation step went from
~490 to ~420 ms (benchmarks/results/train_throughput.md). The price is that the process holds on
to its peak heap until it exits, which suits a training process.

``MBNAS_MALLOC=system`` leaves the C library's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 1 << 30  # return heap tops to the OS only above 1 GiB of free space

_DONE: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of unmapping it (see the module docstring). Returns
    whether the setting is in effect; a no-op off glibc, when ``MBNAS_MALLOC=system``, or on a
    second call."""
    global _DONE
    if _DONE is not None:
        return _DONE
    _DONE = False
    if os.environ.get("MBNAS_MALLOC", "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _DONE = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _DONE
