"""The fixed teacher's outputs, computed once per search and shared by every candidate.

The teacher never changes during a search, and neither do the transfer batches, so its feature
maps and attention maps are computed once (the teacher's forward pass was a third of every
candidate's distillation time when recomputed per step). Stored in fp16 to halve memory:
at the demo shape, 64 batches of 32 x 64 tokens take ~0.45 GB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nas.data.tokenizer import Batch


@dataclass
class TeacherCache:
    """transfer: fixed masked batches; hidden[i]: (L+1, B, T, H) fp16 (embeddings, then each block);
    attn[i]: (L, B, heads, T, T) fp16; heldout: fixed held-out batches; heldout_hidden[i]: (L+1, B, T, H) fp16, or None when
    keeping every block's held-out states would exceed ``HELDOUT_CACHE_BYTES`` (evaluation then runs
    the teacher itself).
    data: description of the corpus; data_hash: its hash."""

    transfer: list[Batch]
    hidden: list[torch.Tensor]
    attn: list[torch.Tensor]
    heldout: list[Batch]
    heldout_hidden: list[torch.Tensor] | None
    data: str
    data_hash: str


_CACHE: dict[tuple, TeacherCache] = {}
# Held-out states of every block are kept when they fit: ~100 MB at the demo shape, but ~10 GB at
# paper scale (100 batches x 25 states x 32 x 128 x 512 fp16), where a teacher pass per evaluation is cheaper.
HELDOUT_CACHE_BYTES = 1 << 30


@torch.no_grad()
def teacher_cache(teacher, settings, corpus=None) -> TeacherCache:
    """Build (or reuse, within this process) the shared teacher outputs for ``settings``, on
    ``corpus`` (default: ``settings.corpus``, see ``nas.data.corpus.corpus_for``)."""
    from nas.data.corpus import corpus_for, heldout_batches, make_mlm_batches

    corpus = corpus or corpus_for(settings.corpus)  # cached token streams: ~20 ms once tokenised
    key = (teacher.hash, corpus.data_hash, teacher.candidate.seq_len, settings.batch_size,
           settings.transfer_batches, settings.eval_batches, settings.seed, settings.device)
    if key in _CACHE:
        return _CACHE[key]
    seq = teacher.candidate.seq_len
    gen = make_mlm_batches(corpus.train, seq, settings.batch_size, np.random.default_rng(10_000 + settings.seed))
    transfer = [next(gen) for _ in range(settings.transfer_batches)]
    heldout = heldout_batches(corpus.heldout, seq, 32, max_batches=settings.eval_batches)
    model = teacher.model.to(settings.device).eval()
    hidden, attn = [], []
    for b in transfer:
        out = model.mobilebert(input_ids=b.input_ids.to(settings.device), output_hidden_states=True,
                               output_attentions=True)
        hidden.append(torch.stack(out.hidden_states).half())  # (L+1, B, T, H)
        attn.append(torch.stack(out.attentions).half())  # (L, B, heads, T, T)
    tc = teacher.candidate
    states = (tc.num_layers + 1) * sum(b.input_ids.numel() for b in heldout) * tc.hidden_size * 2
    heldout_hidden = None
    if states <= HELDOUT_CACHE_BYTES:
        heldout_hidden = [torch.stack(model.mobilebert(input_ids=b.input_ids.to(settings.device),
                                                       attention_mask=b.attention_mask.to(settings.device),
                                                       output_hidden_states=True).hidden_states).half()
                          for b in heldout]
    cache = TeacherCache(transfer, hidden, attn, heldout, heldout_hidden,
                         data=f"held-out split: {corpus.description}", data_hash=corpus.data_hash)
    _CACHE.clear()  # one teacher per process at a time: free the previous one
    _CACHE[key] = cache
    return cache
