"""Where training runs: checking a ``--device`` value, and the precision used there.

One place for both, so ``distill``, ``teacher`` and ``search`` accept the same values and refuse
the rest in one line instead of a torch traceback deep in the first forward pass.
"""

from __future__ import annotations

import re
from contextlib import nullcontext

from nas.errors import UserError

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")
TRAIN_DEVICE_HELP = "cpu, cuda or cuda:N (bf16 autocast on GPUs of compute capability 8.0+, fp32 elsewhere)"


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


def autocast_for(device: str):
    """Mixed precision for a training step on ``device``: bf16 autocast on a CUDA GPU that computes
    in bf16 natively (compute capability 8.0+: A100, H100, ...). On older GPUs torch emulates bf16
    (``is_bf16_supported`` still says yes) and fp16 would need loss scaling, so they train in fp32;
    on CPU (no bf16 units on this project's machines) fp32 too."""
    if not device.startswith("cuda"):
        return nullcontext()
    import torch

    if torch.cuda.get_device_capability(torch.device(device))[0] < 8:
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)
