"""Downstream sentence classification: Rotten Tomatoes snippets, or the user's own ``text,label`` CSV.

Rotten Tomatoes (the Pang & Lee source of MR and SST-2) has no official split. Reviews of one
movie share names and phrasing, so the split is by ``movie_name``: a hash puts each movie wholly
in train, dev or test, so no model is scored on a movie it was trained on.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer

from nas.data.sources import SOURCES, fetch
from nas.data.tokenizer import Batch, encode_texts
from search_spaces.errors import UserError
from search_spaces.files import first_few

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, dev, test
RT_LABELS = {"rotten": 0, "fresh": 1}


@dataclass(frozen=True)
class TextSplit:
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    groups: tuple[str, ...]  # the key each row was split by (movie_name, or the text itself)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class ClassificationData:
    train: TextSplit
    dev: TextSplit
    test: TextSplit
    num_labels: int
    description: str


def split_of(key: str, fractions: Sequence[float] = SPLIT_FRACTIONS) -> int:
    """0 (train), 1 (dev) or 2 (test) from sha256(key): the same on every host and run."""
    u = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    edges = [sum(fractions[: i + 1]) for i in range(len(fractions))]
    return next((i for i, e in enumerate(edges) if u < e), len(fractions) - 1)


def load_rotten_tomatoes() -> ClassificationData:
    """12,808 review snippets (fresh 7,403 = 1, rotten 5,405 = 0); ``plot`` rows are dropped."""
    with bz2.open(fetch("rotten_tomatoes"), "rt", encoding="utf-8", newline="") as f:
        rows = [(r["text"], RT_LABELS[r["category"]], r["movie_name"])
                for r in csv.DictReader(f) if r["category"] != "plot"]  # fmt: skip
    return _split(rows, num_labels=2, label=SOURCES["rotten_tomatoes"].label, by="movie_name")


def load_user_csv(path: Path) -> ClassificationData:
    """A CSV with a header and columns ``text,label`` (integer labels from 0), split by text hash."""
    path = Path(path)
    rows: list[tuple[str, int, str]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            if "text" not in header or "label" not in header:
                shown = ", ".join(repr(h[:30] + ("..." if len(h) > 30 else "")) for h in header[:5])
                raise UserError(f"{path}:1: header must name the columns 'text' and 'label', got {len(header)} "
                                f"column(s): {shown}{', ...' if len(header) > 5 else ''}")
            ti, li = header.index("text"), header.index("label")
            for rec in reader:
                where = f"{path}:{reader.line_num}"
                if not any(c.strip() for c in rec):
                    continue
                if len(rec) != len(header):
                    raise UserError(f"{where}: expected {len(header)} fields, got {len(rec)}")
                text, raw = rec[ti].strip(), rec[li].strip()
                if not text:
                    raise UserError(f"{where}: empty text")
                if not (raw.isascii() and raw.isdigit()):
                    raise UserError(f"{where}: label {raw!r} is not a non-negative integer")
                rows.append((text, int(raw), text))
    except FileNotFoundError:
        raise UserError(f"data set {path} does not exist") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable UTF-8 CSV ({exc})") from None
    if not rows:
        raise UserError(f"data set {path} has no rows")
    num_labels = max(r[1] for r in rows) + 1
    if num_labels < 2:
        raise UserError(f"data set {path} has a single label; classification needs at least two")
    present = {r[1] for r in rows}
    if len(present) < num_labels:  # labels {1, 2} or {0, 999999} would train a head with classes no sentence has
        n_unused = num_labels - len(present)
        first = []
        for i in range(num_labels):  # the first few gaps only: a label may be an id in the billions
            if i not in present:
                first.append(i)
                if len(first) == 5:
                    break
        shown = first_few(first, 5, total=n_unused)
        raise UserError(f"data set {path}: labels must be 0..K-1 with every class present; {shown} of 0..{num_labels - 1} "
                        f"never occur(s): number the classes from 0 without gaps")
    return _split(rows, num_labels=num_labels, label=f"user data set {path.name}", by="text")


def load_downstream(csv_path: Path | None = None) -> ClassificationData:
    """The user's CSV when given, else Rotten Tomatoes."""
    return load_user_csv(csv_path) if csv_path is not None else load_rotten_tomatoes()


def _split(rows: list[tuple[str, int, str]], num_labels: int, label: str, by: str) -> ClassificationData:
    """Rows are (text, label, group); every row of a group lands in the same split."""
    parts: list[list[tuple[str, int, str]]] = [[] for _ in SPLIT_FRACTIONS]
    for row in rows:
        parts[split_of(row[2])].append(row)
    splits = [TextSplit(*(tuple(col) for col in zip(*p, strict=True))) if p else TextSplit((), (), ())
              for p in parts]  # fmt: skip
    if not all(splits):
        raise UserError(
            f"{label}: too few rows to split by {by} ({', '.join(str(len(s)) for s in splits)} "
            "in train, dev, test); give at least a few dozen"
        )
    counts = Counter(r[1] for r in rows)
    description = (
        f"{label}: {len(rows):,} sentences, labels {dict(sorted(counts.items()))}, split "
        f"{'/'.join(f'{f:.0%}' for f in SPLIT_FRACTIONS)} by {by} hash: "
        f"train {len(splits[0]):,} / dev {len(splits[1]):,} / test {len(splits[2]):,}"
    )
    return ClassificationData(*splits, num_labels=num_labels, description=description)


def encode_split(split: TextSplit, tok: BertWordPieceTokenizer, seq_len: int = 128) -> Batch:
    """The whole split as fixed-length tensors: input_ids and attention_mask (N, T), labels (N,)."""
    input_ids, attention_mask = encode_texts(tok, split.texts, seq_len)
    return Batch(input_ids, attention_mask, torch.tensor(split.labels, dtype=torch.long))
