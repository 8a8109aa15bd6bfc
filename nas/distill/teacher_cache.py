"""The fixed teacher's outputs, computed once per search and shared by every candidate.

The teacher never changes during a search, and neither do the transfer batches, so its feature
maps and attention maps are computed once (the teacher's forward pass was a third of every
candidate's distillation time when recomputed per step). Stored in fp16 to halve memory:
at the demo shape, 64 batches of 32 x 64 tokens take ~0.45 GB. At paper scale they would not fit
(512 batches of 128 x 128 tokens through 24 blocks of width 512: ~0.8 GB a batch, ~420 GB), so
only the batches that fit in ``transfer_cache_bytes()`` are kept and the rest are recomputed by a
teacher pass when a step needs them, as the paper's recipe does for every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from nas.data.tokenizer import Batch


class TeacherOutputs:
    """``outputs[i]`` -> (hidden (L+1, B, T, H), attn (L, B, heads, T, T)), fp16, of transfer batch i:
    the embeddings' and each block's output, and each block's attention distributions. The first
    ``kept`` batches are stored; any later one is a teacher pass when asked for (the last one is
    remembered, since a step reads the same batch for every layer)."""

    def __init__(self, model, batches: list[Batch], device: str, budget_bytes: int) -> None:
        self.model, self.batches, self.device = model, batches, device
        self._stored: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._last: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None
        for i, b in enumerate(batches):  # batches share one shape: keep them while one more still fits the budget
            out = self._run(b)
            if (i + 1) * sum(t.nbytes for t in out) > budget_bytes:
                self._last = (i, out)  # computed anyway: the first read of it is free
                break
            self._stored.append(out)
        self.kept = len(self._stored)

    @torch.no_grad()
    def _run(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.mobilebert(input_ids=b.input_ids.to(self.device), output_hidden_states=True,
                                    output_attentions=True)
        return torch.stack(out.hidden_states).half(), torch.stack(out.attentions).half()

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i < self.kept:
            return self._stored[i]
        if self._last is None or self._last[0] != i:
            self._last = (i, self._run(self.batches[i]))
        return self._last[1]


@dataclass
class TeacherCache:
    """transfer: fixed masked batches; outputs[i]: the teacher's (hidden, attn) of transfer batch i
    (``TeacherOutputs``); heldout: fixed held-out batches; heldout_hidden[i]: (L+1, B, T, H) fp16, or None when
    keeping every block's held-out states would exceed ``HELDOUT_CACHE_BYTES`` (evaluation then runs
    the teacher itself).
    data: description of the corpus; data_hash: its hash."""

    transfer: list[Batch]
    outputs: TeacherOutputs
    heldout: list[Batch]
    heldout_hidden: list[torch.Tensor] | None
    data: str
    data_hash: str


_CACHE: dict[tuple, TeacherCache] = {}
# Held-out states of every block are kept when they fit: ~100 MB at the demo shape, but ~10 GB at
# paper scale (100 batches x 25 states x 32 x 128 x 512 fp16), where a teacher pass per evaluation is cheaper.
HELDOUT_CACHE_BYTES = 1 << 30


def transfer_cache_bytes() -> int:
    """How much of the teacher's transfer-batch outputs to keep: ``MBNAS_TEACHER_CACHE_GB`` (default
    2 GB, on the training device: the demo's 0.45 GB fits whole, paper scale keeps ~2 of 512 batches)."""
    raw = os.environ.get("MBNAS_TEACHER_CACHE_GB", "2")
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb >= 0:
        from nas.errors import UserError

        raise UserError(f"MBNAS_TEACHER_CACHE_GB={raw!r}: give a number of gigabytes >= 0 (0 keeps none)")
    return int(gb * 1e9)


@torch.no_grad()
def teacher_cache(teacher, settings, corpus=None) -> TeacherCache:
    """Build (or reuse, within this process) the shared teacher outputs for ``settings``, on
    ``corpus`` (default: ``settings.corpus``, see ``nas.data.corpus.corpus_for``)."""
    from nas.data.corpus import corpus_for, heldout_batches, make_mlm_batches

    corpus = corpus or corpus_for(settings.corpus)  # cached token streams: ~20 ms once tokenised
    budget = transfer_cache_bytes()
    key = (teacher.hash, corpus.data_hash, teacher.candidate.seq_len, settings.batch_size,
           settings.transfer_batches, settings.eval_batches, settings.seed, settings.device, budget)
    if key in _CACHE:
        return _CACHE[key]
    seq = teacher.candidate.seq_len
    gen = make_mlm_batches(corpus.train, seq, settings.batch_size, np.random.default_rng(10_000 + settings.seed))
    transfer = [next(gen) for _ in range(settings.transfer_batches)]
    heldout = heldout_batches(corpus.heldout, seq, 32, max_batches=settings.eval_batches)
    model = teacher.model.to(settings.device).eval()
    outputs = TeacherOutputs(model, transfer, settings.device, budget)
    tc = teacher.candidate
    states = (tc.num_layers + 1) * sum(b.input_ids.numel() for b in heldout) * tc.hidden_size * 2
    heldout_hidden = None
    if states <= HELDOUT_CACHE_BYTES:
        heldout_hidden = [torch.stack(model.mobilebert(input_ids=b.input_ids.to(settings.device),
                                                       attention_mask=b.attention_mask.to(settings.device),
                                                       output_hidden_states=True).hidden_states).half()
                          for b in heldout]
    windows = sum(int(b.input_ids.shape[0]) for b in heldout)
    masked = sum(int((b.labels != -100).sum()) for b in heldout)
    # the scores read these windows only (eval_batches caps them), so the data says how many
    data = (f"held-out split: {corpus.shown}; scored on {windows:,} windows of {seq} tokens spread over it, "
            f"{masked:,} masked positions")
    cache = TeacherCache(transfer, outputs, heldout, heldout_hidden, data=data, data_hash=corpus.data_hash)
    _CACHE.clear()  # one teacher per process at a time: free the previous one
    _CACHE[key] = cache
    return cache
