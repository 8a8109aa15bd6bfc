"""Which tokens of a window become masked-LM targets: part of a teacher's pre-training recipe (a
space file's ``budget.teacher.masking``), used for its students' transfer batches and for every
held-out score of a search on that teacher. ``nas.data.corpus.mask_tokens`` applies it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from search_spaces.errors import UserError


@dataclass(frozen=True)
class Masking:
    """Which tokens of a window become masked-LM targets.

    rate: share of a row's maskable tokens chosen (at least one per row, so a loss always exists).
    mean_span: 1 is BERT's rule, each token chosen on its own; above 1, SpanBERT's (Joshi et al.
        2020): contiguous spans whose lengths are geometric with p = 1 / mean_span, at most
        ``max_span``, until the row's budget is reached. A masked token's neighbours are then
        mostly masked too, so the embedding layer, which reads each token's two neighbours
        (MobileBERT's 3-gram input), cannot predict it alone; the blocks must (docs/demo.md).
    A chosen token (BERT) or span (SpanBERT) becomes [MASK] 80%, random word pieces 10%, itself 10%.
    """

    rate: float = 0.15
    mean_span: float = 1.0
    max_span: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1 or self.mean_span < 1 or self.max_span < 1:
            raise UserError(f"masking: rate must be in (0, 1), mean_span >= 1 and max_span >= 1; got rate {self.rate}, "
                            f"mean_span {self.mean_span}, max_span {self.max_span}")

    @property
    def label(self) -> str:
        """Short and stable: part of what a teacher and a score were made with."""
        if self.mean_span == 1:
            return f"token-{self.rate:g}"
        return f"span-{self.rate:g}-mean{self.mean_span:g}-max{self.max_span}"

    @property
    def shown(self) -> str:
        """For what a person reads next to a score."""
        if self.mean_span == 1:
            return f"{self.rate:.0%} of tokens masked one by one (BERT)"
        return f"{self.rate:.0%} of tokens masked in spans of mean length {self.mean_span:g} (SpanBERT)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BERT_MASKING = Masking()


def masking_from(raw: Any) -> Masking:
    """A ``Masking`` from its record (a space file's ``budget.teacher.masking``, a teacher's
    ``teacher.json``): absent is BERT's. The caller says where a bad one came from."""
    if raw is None:
        return BERT_MASKING
    names = [f.name for f in fields(Masking)]
    if not isinstance(raw, dict) or set(raw) - set(names) or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw.values()):
        raise UserError(f"masking must be a mapping of numbers ({', '.join(names)}), got {raw!r}")
    return Masking(**raw)


def masked_with(masking: Masking) -> str:
    """``; <how it was masked>`` after a held-out data description, when not BERT's (so the
    descriptions studies and teachers recorded before masking was choosable stay as they were)."""
    return "" if masking == BERT_MASKING else f"; {masking.shown}"
