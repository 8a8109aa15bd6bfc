"""The transfer data and the fixed teacher's outputs on it, shared by every candidate of a search.

Transfer data (recipe 2, mbnas 0.3.0): a stream of masked batches, batch ``i`` drawn afresh (new
windows, new masks) from a generator seeded by ``(seed, i)``, so step ``i`` of every candidate sees
batch ``i``: fresh data every step, as the released MobileBERT and BERT-of-Theseus code draw it
(dynamic masking), and the same stream for every candidate of a search (paired comparisons, and the
teacher's outputs can be shared). ``transfer_batches > 0`` instead cycles that many fixed batches
(recipe 1, kept to measure what the stream changes: benchmarks/results/recipe.md).

The teacher never changes during a search, so its feature maps and attention maps of a batch are
computed once, when a step first reads them, and kept while they fit in ``transfer_cache_bytes()``
(fp16: ~7 MB a batch at the demo shape); a batch past that is a teacher pass when read (at paper
scale, ~0.8 GB a batch, nearly every one: a teacher pass per step, as the references do).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas.data.corpus import corpus_for, heldout_batches, make_mlm_batches
from nas.data.tokenizer import Batch, Vocab
from search_spaces.errors import UserError
from search_spaces.masking import BERT_MASKING, Masking, masked_with


class TransferStream:
    """``stream[i]``: masked batch ``i`` (B, T); batches ``i`` and ``i + len(stream)`` are the same
    (``len`` = steps of the longest stage plan, or the fixed pool's size)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int, size: int, vocab: Vocab,
                 masking: Masking = BERT_MASKING) -> None:
        self.tokens, self.seq_len, self.batch_size, self.seed, self.size = tokens, seq_len, batch_size, seed, size
        self.vocab = vocab  # the tokens' vocabulary: masking draws random replacements from its pieces
        self.masking = masking  # the teacher's pre-training masking
        self._last: tuple[int, Batch] | None = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> Batch:
        i %= self.size
        if self._last is None or self._last[0] != i:  # a step reads its batch more than once
            rng = np.random.default_rng([10_000 + self.seed, i])  # random access: no state carried between batches
            self._last = (i, next(make_mlm_batches(self.tokens, self.seq_len, self.batch_size, rng, self.masking,
                                                   vocab=self.vocab)))
        return self._last[1]


class TeacherOutputs:
    """``outputs[i]`` -> (hidden (L+1, B, T, H), attn (L, B, heads, T, T)), fp16, of transfer batch i:
    the embeddings' and each block's output, and each block's attention distributions. Computed when
    first read; kept while the kept ones fit in ``budget_bytes``, else a teacher pass when read (the
    last one is remembered, since a step reads the same batch for every layer)."""

    def __init__(self, model, batches: TransferStream, device: str, budget_bytes: int,
                 spill_dir: Path | None = None) -> None:
        self.model, self.batches, self.device, self.budget_bytes = model, batches, device, budget_bytes
        self.spill_dir = spill_dir
        self._stored: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._bytes = 0
        self._last: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.passes = 0  # teacher passes run, stored or not (benchmarks/recipe.py reports them)

    @torch.no_grad()
    def _run(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        self.passes += 1
        # fp32 whatever the candidate trains in: a step reads this inside its autocast region, and the
        # targets must not depend on which candidate first asked for them
        with torch.autocast(device_type=torch.device(self.device).type, enabled=False):
            out = self.model.mobilebert(input_ids=b.input_ids.to(self.device), output_hidden_states=True,
                                        output_attentions=True)
        return torch.stack(out.hidden_states).half(), torch.stack(out.attentions).half()

    @property
    def kept(self) -> int:
        return len(self._stored)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i %= len(self.batches)
        if i in self._stored:
            return self._stored[i]
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        out = self._read_spilled(i) if self.spill_dir is not None else None
        if out is None:
            out = self._run(self.batches[i])
            if self.spill_dir is not None:
                self._spill(i, out)
        size = sum(t.nbytes for t in out)
        if self._bytes + size <= self.budget_bytes:
            self._stored[i] = out
            self._bytes += size
        else:
            self._last = (i, out)
        return out

    # Outputs can also go to files (``MBNAS_TEACHER_SPILL_DIR``), read back past the memory budget
    # and by later processes: reading 7 MB costs milliseconds where a demo teacher pass costs ~200 ms
    # on one CPU thread. Plain .npy
    # (never pickle); a file appears whole (written aside, then renamed), so processes can share it.
    def _paths(self, i: int) -> tuple[Path, Path]:
        return self.spill_dir / f"{i}-hidden.npy", self.spill_dir / f"{i}-attn.npy"

    def _read_spilled(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        paths = self._paths(i)
        if not all(p.exists() for p in paths):
            return None
        return tuple(torch.from_numpy(np.load(p, allow_pickle=False)).to(self.device) for p in paths)

    def _spill(self, i: int, out: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        for t, p in zip(out, self._paths(i)):
            tmp = p.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, t.cpu().numpy())
            os.replace(tmp, p)


@dataclass
class TeacherCache:
    """transfer: the masked transfer batches (``TransferStream``); outputs[i]: the teacher's (hidden,
    attn) of transfer batch i (``TeacherOutputs``); heldout: fixed held-out batches; heldout_hidden[i]:
    (L+1, B, T, H) fp16, or None when keeping every block's held-out states would exceed
    ``HELDOUT_CACHE_BYTES`` (evaluation then runs the teacher itself).
    data: description of the corpus; data_hash: its hash."""

    transfer: TransferStream
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
    4 GB, on the training device: the 390 fresh batches of a demo candidate take 2.7 GB; paper scale
    keeps ~5 batches and recomputes the rest)."""
    raw = os.environ.get("MBNAS_TEACHER_CACHE_GB", "4")
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb >= 0:
        raise UserError(f"MBNAS_TEACHER_CACHE_GB={raw!r}: give a number of gigabytes >= 0 (0 keeps none)")
    return int(gb * 1e9)


def stream_length(settings, num_layers: int) -> int:
    """Distinct transfer batches a candidate of ``num_layers`` blocks reads: the fixed pool's size, or
    one per optimiser step (every strategy takes ``L * layer_steps + pd_steps`` steps)."""
    return settings.transfer_batches or num_layers * settings.layer_steps + settings.pd_steps


def _spill_dir(shape: tuple) -> Path | None:
    """``MBNAS_TEACHER_SPILL_DIR``/<hash of what shapes the outputs>, or None (the default: nothing
    written). Opt in where disk is cheaper than teacher passes: at the demo shape a candidate of 5x
    the search budget reads 1,950 batches, 13.7 GB; paper-scale batches are ~0.8 GB each."""
    root = os.environ.get("MBNAS_TEACHER_SPILL_DIR")
    if not root:
        return None
    return Path(root) / hashlib.sha256(repr(shape).encode()).hexdigest()[:16]


@torch.no_grad()
def teacher_cache(teacher, settings, corpus=None) -> TeacherCache:
    """Build (or reuse, within this process) the shared teacher outputs for ``settings``, on
    ``corpus`` (default: ``settings.corpus``, see ``nas.data.corpus.corpus_for``)."""
    corpus = corpus or corpus_for(settings.corpus, vocab=teacher.vocab)  # cached token streams: ~20 ms once tokenised
    if corpus.vocab.sha256 != teacher.vocab.sha256:
        raise ValueError(f"corpus tokenised with {corpus.vocab.label}, teacher {teacher.hash} reads {teacher.vocab.label}")
    budget = transfer_cache_bytes()
    tc = teacher.candidate
    size = stream_length(settings, tc.num_layers)  # the space fixes the block count: the teacher's is every candidate's
    key = (teacher.hash, corpus.data_hash, tc.seq_len, settings.batch_size, size, settings.eval_batches,
           settings.seed, settings.device, budget)
    if key in _CACHE:
        return _CACHE[key]
    seq = tc.seq_len
    # the teacher's own masking: its students are taught and scored on the task it learnt
    transfer = TransferStream(corpus.train, seq, settings.batch_size, settings.seed, size, corpus.vocab,
                              teacher.masking)
    heldout = heldout_batches(corpus.heldout, seq, 32, max_batches=settings.eval_batches, masking=teacher.masking,
                              vocab=corpus.vocab)
    model = teacher.model.to(settings.device).eval()
    outputs = TeacherOutputs(model, transfer, settings.device, budget,
                             # batch i is the same for every stream length and pool size (TransferStream)
                             spill_dir=_spill_dir((teacher.hash, corpus.data_hash, seq, settings.batch_size,
                                                   settings.seed)))
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
            f"{masked:,} masked positions{masked_with(teacher.masking)}")
    cache = TeacherCache(transfer, outputs, heldout, heldout_hidden, data=data, data_hash=corpus.data_hash)
    _CACHE.clear()  # one teacher per process at a time: free the previous one
    _CACHE[key] = cache
    return cache
