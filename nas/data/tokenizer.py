"""The BERT uncased WordPiece tokenizer, built from the pinned vocab file, and fixed-length batches.

Built with ``tokenizers.BertWordPieceTokenizer``: in transformers 5.x
``BertTokenizerFast(vocab_file=...)`` silently builds a 5-token vocabulary, so the ids below are
checked against the file every time the tokenizer is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import BertWordPieceTokenizer

from nas.data.sources import fetch, sha256_file
from nas.errors import UserError

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
VOCAB_SIZE = 30522
FIRST_WORDPIECE = 999  # ids below are [PAD], [unusedN] and the four special tokens
SPECIAL_IDS = (PAD, UNK, CLS, SEP, MASK)
_EXPECTED = {PAD: "[PAD]", UNK: "[UNK]", CLS: "[CLS]", SEP: "[SEP]", MASK: "[MASK]"}


@dataclass(frozen=True, eq=False)
class Batch:
    """Model inputs and targets; ``as_dict()`` feeds a Hugging Face model as ``model(**batch)``.

    ``labels`` is (B, T) for masked-LM (-100 where no loss is taken) or (B,) for classification.
    """

    input_ids: torch.Tensor  # (B, T) int64
    attention_mask: torch.Tensor  # (B, T) int64, 1 = real token, 0 = padding
    labels: torch.Tensor  # (B, T) or (B,) int64

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels)))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def vocab_path() -> Path:
    """The pinned vocab file (fetched into the cache on first use)."""
    return fetch("vocab")


def vocab_hash() -> str:
    """sha256 of the vocab file: part of every tokenised-data cache key."""
    return sha256_file(vocab_path())


def load_tokenizer() -> BertWordPieceTokenizer:
    """Lower-casing WordPiece tokenizer whose special ids are verified to match the constants."""
    path = vocab_path()
    lines = path.read_text(encoding="utf-8").splitlines()
    tok = BertWordPieceTokenizer(str(path), lowercase=True)
    bad = [f"{i}={lines[i] if i < len(lines) else None!r}" for i, t in _EXPECTED.items()
           if i >= len(lines) or lines[i] != t or tok.token_to_id(t) != i]  # fmt: skip
    if len(lines) != VOCAB_SIZE or tok.get_vocab_size() != VOCAB_SIZE or bad:
        raise UserError(
            f"vocab {path} does not match BERT uncased ({len(lines)} lines, "
            f"{tok.get_vocab_size()} tokens, mismatched ids: {bad or 'none'}); delete it to re-fetch"
        )
    return tok


def encode_texts(tok: BertWordPieceTokenizer, texts: Sequence[str], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[CLS] text [SEP]`` truncated or padded to ``seq_len``: (input_ids, attention_mask), (N, T).

    Truncation and padding are done here rather than by enabling them on the tokenizer, so a
    shared tokenizer object is never left in a modified state.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3, got {seq_len}")
    ids = np.full((len(texts), seq_len), PAD, dtype=np.int64)  # (N, T)
    for row, enc in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
        body = enc.ids[: seq_len - 2]
        ids[row, : len(body) + 2] = [CLS, *body, SEP]
    input_ids = torch.from_numpy(ids)
    return input_ids, (input_ids != PAD).long()
