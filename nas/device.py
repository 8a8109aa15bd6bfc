"""Where training runs: checking a ``--device`` value, and the precision used there.

One place for both, so ``distill``, ``teacher`` and ``search`` accept the same values and refuse
the rest in one line instead of a torch traceback deep in the first forward pass.
"""

from __future__ import annotations

import re
from contextlib import nullcontext

from search_spaces.errors import UserError

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")
TRAIN_DEVICE_HELP = "cpu, cuda or cuda:N (bf16 autocast on GPUs of compute capability 8.0+, fp32 elsewhere)"
CANDIDATE_DEVICE_HELP = "cpu, cuda or cuda:N (in bf16 or fp32: see --precision)"
PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = ("arithmetic of the training steps (scores are always computed in fp32): auto (default): bf16 "
                  "autocast on GPUs of compute capability 8.0+, fp32 elsewhere; bf16: bf16 autocast on a CPU too "
                  "(with AVX512-BF16 or AMX 1.3-1.9x faster steps; README 'Precision'); fp32: fp32 everywhere")


def check_device(device: str, flag: str = "--device", here: bool = True) -> str:
    """``device`` if it is ``cpu``, ``cuda`` or ``cuda:N`` and torch can use it here (``here``; else
    only its form: a Ray driver sends trials to other machines' GPUs); anything else is one line."""
    if not _DEVICE.fullmatch(device):
        raise UserError(f"{flag} {device!r}: give cpu, cuda or cuda:N")
    if device == "cpu" or not here:
        return device
    import torch

    if not torch.cuda.is_available():
        raise UserError(f"{flag} {device}: no CUDA device is visible to torch here "
                        f"(torch {torch.__version__}); use {flag} cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"{flag} {device}: torch sees {torch.cuda.device_count()} CUDA device(s), "
                        f"numbered from 0")
    return device


def worker_device(device: str, worker: int, gpus: int) -> str:
    """The device of ``--jobs`` worker ``worker`` (0: the process the user started): a plain ``cuda``
    is spread round-robin over the ``gpus`` GPUs, so N workers do not all load the teacher and its
    cache onto GPU 0; ``cpu`` and an explicit ``cuda:N`` stay as given."""
    return f"cuda:{worker % gpus}" if device == "cuda" and gpus > 1 else device


def cpu_bf16_native() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX: AMD Zen 4+, Intel
    Cooper Lake, Sapphire Rapids+); elsewhere torch converts to fp32 and a bf16 step is slower than
    an fp32 one. Reads /proc/cpuinfo's flags; False where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_native(device: str) -> bool:
    """Whether ``device`` computes in bf16 in hardware: a CUDA GPU of compute capability 8.0+ (A100,
    H100, ...), or a CPU with bf16 matrix instructions (``cpu_bf16_native``)."""
    if not device.startswith("cuda"):
        return cpu_bf16_native()
    import torch

    return torch.cuda.get_device_capability(torch.device(device))[0] >= 8


def training_precision(device: str, precision: str = "auto") -> str:
    """``fp32`` or ``bf16``: what a training step on ``device`` computes in for ``precision``.

    ``auto``: bf16 autocast on a CUDA GPU that computes in bf16 natively (compute capability 8.0+:
    A100, H100, ...). On older GPUs torch emulates bf16 (``is_bf16_supported`` still says yes) and
    fp16 would need loss scaling, so they train in fp32. On a CPU ``auto`` is fp32 even where bf16
    is native: bf16 moves the scores a little (README 'Precision'), so there it is the user's choice."""
    if precision != "auto":
        return precision
    return "bf16" if device.startswith("cuda") and bf16_native(device) else "fp32"


def precision_note(device: str, precision: str) -> str | None:
    """A line for ``--precision bf16`` on hardware without bf16 arithmetic (it runs, only slower)."""
    if precision != "bf16" or bf16_native(device):
        return None
    what = ("this GPU (compute capability below 8.0)" if device.startswith("cuda")
            else "this CPU (no avx512_bf16 or amx_bf16 among its flags)")
    return f"note: --precision bf16 on {what}: torch emulates bf16 there, so training is slower than in fp32"


def autocast_for(device: str, precision: str = "auto"):
    """The autocast context of training on ``device`` (``training_precision``); a no-op for fp32.

    Without autocast's weight cache: the cache keeps each weight's bf16 copy until the outermost
    autocast region exits, and a candidate's whole training is one region (optimiser steps
    included). With it, every forward pass after the first used the weights as they were at the
    first, and students came out destroyed (teacher_kl 4.9 against 0.25 in fp32;
    benchmarks/results/cpu_bf16.md). A cast per forward pass costs little: the weights are a few MB."""
    if training_precision(device, precision) == "fp32":
        return nullcontext()
    import torch

    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16, cache_enabled=False)
