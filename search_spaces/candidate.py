"""A point of the MobileBERT design space: one frozen dataclass that knows its shape.

A ``Candidate`` is what a search space samples, what the trainer builds, what the latency
predictor scores and what export writes. It converts to a stock ``transformers.MobileBertConfig``
(students) and carries the one field stock transformers cannot express: ``attention="block"``,
the IB-BERT teacher whose Q/K/V read the inter-block input (see ``nas.models``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.errors import UserError, check_choice

NORMS = ("layer_norm", "no_norm")
ACTIVATIONS = ("gelu", "relu")
# Which tensors feed multi-head attention (MobileBERT paper, section 3 and Table 1):
#   shared_qk  - Q = K from a shared intra-size bottleneck, V from the inter-block input (MobileBERT)
#   bottleneck - Q, K and V from the intra-size bottleneck (MobileBERT-TINY)
#   block      - Q, K and V from the inter-block input (IB-BERT teacher; needs nas.models' patch)
#   none       - no bottleneck at all (BERT-base expressed in MobileBERT modules)
ATTENTIONS = ("shared_qk", "bottleneck", "block", "none")
SCHEMA = "mbnas.candidate/1"
SEARCHED_CHOICES = {"norm", "act", "attention"}  # fields with a default that a candidate file must still name


# Upper bounds of the shape fields: generous for any BERT a phone could run (BERT-large: 24 layers,
# 1024 wide, FFN 4096, 16 heads, 512 tokens), so that a typo (10^9 for 1024) is refused in one line
# instead of a count of 10^14 ms or an allocation that takes the machine down.
FIELD_BOUNDS = {"num_layers": 256, "hidden_size": 16_384, "embedding_size": 16_384, "num_heads": 256,
                "vocab_size": 1_000_000, "seq_len": 65_536, "intra_size": 16_384, "num_ffn": 64,
                "intermediate_size": 65_536}


@dataclass(frozen=True)
class Candidate:
    """One architecture.

    Fixed by the teacher (equal for every candidate of a space):
        num_layers: transformer blocks (24 in the paper).
        hidden_size: inter-block width, the feature map that is transferred (512).
        embedding_size: word-embedding width before the 3-gram convolution (128).
        num_heads: attention heads (4).
        vocab_size: WordPiece vocabulary (30,522).
        seq_len: sequence length the candidate is trained and timed at (128).
    Searched:
        intra_size: intra-block (bottleneck) width; attention runs at this width.
        num_ffn: stacked feed-forward networks per block.
        intermediate_size: FFN inner width (derived from the MHA/FFN ratio by the space).
        norm: ``layer_norm`` or ``no_norm`` (NoNorm(h) = gamma * h + beta).
        act: ``gelu`` or ``relu``.
        attention: see ``ATTENTIONS``.
    Bookkeeping:
        mha_ffn_ratio: the *target* ratio the space sampled (None for hand-written architectures);
            the realised ratio is ``search_spaces.ops.count(c).mha_ffn_ratio``.
        trigram_input: 3-gram 1-D convolution embedding (MobileBERT) or plain embedding (BERT).
        name: a reference name or a trial label, for display only.
    """

    num_layers: int
    hidden_size: int
    embedding_size: int
    num_heads: int
    vocab_size: int
    seq_len: int
    intra_size: int
    num_ffn: int
    intermediate_size: int
    norm: str = "no_norm"
    act: str = "relu"
    attention: str = "shared_qk"
    mha_ffn_ratio: float | None = None
    trigram_input: bool = True
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for f, high in FIELD_BOUNDS.items():
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(f"candidate field '{f}' must be a positive integer, got {v!r}")
            if v > high:
                raise UserError(f"candidate field '{f}' is {v:,}, over the bound of {high:,} this tool accepts "
                                f"(BERT-large is 24 x 1024 with a 4096 FFN); check the architecture file")
        for f, allowed in (("norm", NORMS), ("act", ACTIVATIONS), ("attention", ATTENTIONS)):
            check_choice(f"candidate field '{f}'", getattr(self, f), allowed)
        if self.attention_width % self.num_heads:
            raise UserError(
                f"attention width {self.attention_width} is not divisible by num_heads={self.num_heads}"
            )

    # ----------------------------------------------------------------------------------------
    # derived shape facts (computed here once, never by callers)
    @property
    def use_bottleneck(self) -> bool:
        return self.attention != "none"

    @property
    def true_hidden_size(self) -> int:
        """Width inside a block: intra size with a bottleneck, else the inter-block width."""
        return self.intra_size if self.use_bottleneck else self.hidden_size

    @property
    def attention_width(self) -> int:
        """all_head_size: attention always runs at the intra-block width."""
        return self.true_hidden_size

    @property
    def head_size(self) -> int:
        return self.attention_width // self.num_heads

    @property
    def label(self) -> str:
        """A short human label, e.g. ``b128-f4-i512-nn-relu-sqk``."""
        norm = "nn" if self.norm == "no_norm" else "ln"
        att = {"shared_qk": "sqk", "bottleneck": "bqkv", "block": "blk", "none": "full"}[self.attention]
        return f"b{self.intra_size}-f{self.num_ffn}-i{self.intermediate_size}-{norm}-{self.act}-{att}"

    def replace(self, **changes: Any) -> "Candidate":
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------------------
    # transformers interop
    def to_hf_config(self, attn_implementation: str | None = None):
        """A stock ``MobileBertConfig``. For ``attention='block'`` it records ``ib_bert_block_qk``
        so that ``nas.models.build_masked_lm`` widens Q/K (stock transformers cannot)."""
        from transformers import MobileBertConfig

        kwargs: dict[str, Any] = {}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        cfg = MobileBertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            embedding_size=self.embedding_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.act,
            max_position_embeddings=max(512, self.seq_len),
            intra_bottleneck_size=self.intra_size,
            use_bottleneck=self.use_bottleneck,
            use_bottleneck_attention=self.attention == "bottleneck",
            key_query_shared_bottleneck=self.attention == "shared_qk",
            num_feedforward_networks=self.num_ffn,
            normalization_type=self.norm,
            trigram_input=self.trigram_input,
            true_hidden_size=self.true_hidden_size,
            **kwargs,
        )
        if self.attention == "block":
            cfg.ib_bert_block_qk = True
        return cfg

    @classmethod
    def from_hf_config(cls, cfg: Any, seq_len: int = 128, name: str | None = None) -> "Candidate":
        """Read a ``MobileBertConfig`` (or its ``config.json`` dict) back into a candidate."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        model_type = get("model_type", "mobilebert")
        if model_type != "mobilebert":
            raise UserError(f"config.json has model_type={model_type!r}; only 'mobilebert' configs are supported")
        if get("ib_bert_block_qk", False):
            attention = "block"
        elif not get("use_bottleneck", True):
            attention = "none"
        elif get("use_bottleneck_attention", False):
            attention = "bottleneck"
        elif get("key_query_shared_bottleneck", True):
            attention = "shared_qk"
        else:
            raise UserError(
                "config.json: use_bottleneck without bottleneck attention or a shared Q/K bottleneck makes "
                "Q/K read the inter-block input, which stock transformers cannot build; set "
                "'ib_bert_block_qk': true for an IB-BERT teacher"
            )
        defaults = {"vocab_size": 30522, "hidden_size": 512, "embedding_size": 128, "num_hidden_layers": 24,
                    "num_attention_heads": 4, "intermediate_size": 512, "intra_bottleneck_size": 128,
                    "num_feedforward_networks": 4, "normalization_type": "no_norm", "hidden_act": "relu",
                    "trigram_input": True}
        v = {k: get(k, d) for k, d in defaults.items()}
        return cls(
            num_layers=v["num_hidden_layers"], hidden_size=v["hidden_size"], embedding_size=v["embedding_size"],
            num_heads=v["num_attention_heads"], vocab_size=v["vocab_size"], seq_len=seq_len,
            intra_size=v["intra_bottleneck_size"] if attention != "none" else v["hidden_size"],
            num_ffn=v["num_feedforward_networks"], intermediate_size=v["intermediate_size"],
            norm=v["normalization_type"], act=v["hidden_act"], attention=attention,
            trigram_input=bool(v["trigram_input"]), name=name,
        )

    # ----------------------------------------------------------------------------------------
    # JSON io (the candidate file every command accepts as ARCH)
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schema"] = SCHEMA
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "candidate") -> "Candidate":
        if not isinstance(d, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k != "schema"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{where}: unknown field '{unknown[0]}'; allowed: {sorted(names)}")
        # the searched choices are required too: a file without ``norm`` silently became a NoNorm model
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING} | SEARCHED_CHOICES
        missing = sorted(required - set(d))
        if missing:
            raise UserError(f"{where}: missing field '{missing[0]}'")
        try:
            return cls(**d)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def round_to_multiple(x: float, multiple: int) -> int:
    """Round to the nearest positive multiple (hardware-friendly widths: 8, 16, 32 ...)."""
    return max(multiple, int(math.floor(x / multiple + 0.5)) * multiple)
