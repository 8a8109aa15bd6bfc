"""One way to turn a torch module into a ``.tflite`` file: litert-torch, quietly and atomically.

litert-torch prints a progress line per conversion stage and the MLIR exporter logs from C++, both
straight to file descriptors 1 and 2, so ``mbnas export --tflite`` and ``mbnas latency measure``
would print 30 lines of converter internals per model. ``convert`` captures them, and replays the
last of them on stderr only when the conversion fails (where they are the diagnosis). The file is
written beside its destination and renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

import torch

from latency_models.quiet import quiet_fds
from nas.models import build_base_model
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError, require


def converter():
    """``litert_torch``, imported with TensorFlow's start-up log lines (absl, oneDNN) kept off the
    terminal; the install hint when the ``litert`` extra is missing."""
    with quiet_fds():
        return require("litert_torch", "litert")


def convert(module, sample: tuple, path: str | Path) -> Path:
    """Write ``module`` traced on ``sample`` (a tuple of input tensors) to ``path`` with litert-torch.
    A conversion that fails is one line (what the converter said last is shown above it)."""
    litert_torch = converter()
    for name in ("absl", "litert_torch", "jax", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with torch.no_grad(), quiet_fds():
            litert_torch.convert(module.eval(), sample).export(str(tmp))
        os.replace(tmp, path)
    except Exception as exc:  # the converter raises many kinds, from torch.export to MLIR lowering
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"litert-torch could not convert {path.name}: {type(exc).__name__}: {first}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def ids_to(model, output: str):
    """``model`` as a module of the ids alone returning one named output (``last_hidden_state``:
    (1, S) -> (1, S, H); ``logits``: (1, S) -> (1, S, V)): the graph a phone runtime is given."""
    class IdsTo(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return getattr(self.m(input_ids=input_ids), output)

    return IdsTo(model).eval()


def export_candidate(c: Candidate, path: str | Path, seq_len: int | None = None, seed: int = 0) -> Path:
    """Export ``MobileBertModel`` for ``c`` (random weights, eager attention) to a .tflite file.

    Eager attention exports explicit matmul / softmax / matmul, the graph a phone runtime runs
    (and the one ``search_spaces.ops.list_ops`` describes). Inputs become int32 ``[1, seq_len]``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # fail before the slow imports

    torch.manual_seed(seed)
    s = seq_len or c.seq_len
    model = ids_to(build_base_model(c, attn_implementation="eager").eval(), "last_hidden_state")
    ids = torch.randint(0, c.vocab_size, (1, s), generator=torch.Generator().manual_seed(seed))
    convert(model, (ids,), path)
    del model
    gc.collect()
    return path
