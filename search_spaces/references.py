"""Named reference architectures (MobileBERT paper, Table 1; docs/FACTS.md section 1).

``paper_params_m`` is the paper's parameter count. Ours (``search_spaces.ops.count``) counts
``MobileBertModel`` without pooler or task head; the paper does not say what it counts, and the two
differ by up to 3% (tests pin the difference).
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.candidate import Candidate
from search_spaces.errors import UserError

_MOBILEBERT = dict(num_layers=24, hidden_size=512, embedding_size=128, num_heads=4, vocab_size=30522,
                   seq_len=128)


@dataclass(frozen=True)
class Reference:
    name: str
    candidate: Candidate
    paper_params_m: float
    pixel4_latency_ms: float | None  # paper Tables 4-5, TFLite, 4 threads, seq 128
    pixel4_verified: bool
    description: str


REFERENCES: dict[str, Reference] = {
    r.name: r
    for r in [
        Reference("mobilebert", Candidate(**_MOBILEBERT, intra_size=128, num_ffn=4, intermediate_size=512,
                                          norm="no_norm", act="relu", attention="shared_qk", name="mobilebert"),
                  25.3, 62.0, True, "MobileBERT (OPT: NoNorm + ReLU), shared Q/K bottleneck, 4 stacked FFNs"),
        Reference("mobilebert-tiny", Candidate(**_MOBILEBERT, intra_size=128, num_ffn=2, intermediate_size=512,
                                               norm="no_norm", act="relu", attention="bottleneck",
                                               name="mobilebert-tiny"),
                  15.1, 40.0, True, "MobileBERT-TINY: Q, K, V from the bottleneck, 2 stacked FFNs"),
        Reference("mobilebert-no-opt", Candidate(**_MOBILEBERT, intra_size=128, num_ffn=4, intermediate_size=512,
                                                 norm="layer_norm", act="gelu", attention="shared_qk",
                                                 name="mobilebert-no-opt"),
                  25.3, 192.0, True, "MobileBERT without the operational optimisations (LayerNorm + GELU)"),
        Reference("ib-bert-large", Candidate(**_MOBILEBERT, intra_size=1024, num_ffn=1, intermediate_size=4096,
                                             norm="layer_norm", act="gelu", attention="block",
                                             name="ib-bert-large"),
                  293.0, None, False, "IB-BERT_LARGE teacher: inverted bottleneck 512 -> 1024, Q/K/V read the "
                                      "block input (not buildable in stock transformers)"),
        Reference("bert-base", Candidate(num_layers=12, hidden_size=768, embedding_size=768, num_heads=12,
                                         vocab_size=30522, seq_len=128, intra_size=768, num_ffn=1,
                                         intermediate_size=3072, norm="layer_norm", act="gelu", attention="none",
                                         trigram_input=False, name="bert-base"),
                  109.0, 342.0, True, "BERT_BASE expressed in MobileBERT modules (no bottleneck, no 3-gram)"),
    ]
}

# Pixel 4 ablation points of docs/FACTS.md that were recalled, not checked against the paper's table:
# shown, never fitted by default.
UNVERIFIED_PIXEL4_MS: dict[str, tuple[Candidate, float]] = {
    "mobilebert-layernorm-relu": (REFERENCES["mobilebert"].candidate.replace(norm="layer_norm",
                                                                             name="mobilebert-layernorm-relu"), 167.0),
    "mobilebert-nonorm-gelu": (REFERENCES["mobilebert"].candidate.replace(act="gelu",
                                                                          name="mobilebert-nonorm-gelu"), 92.0),
}


def get_reference(name: str) -> Reference:
    try:
        return REFERENCES[name]
    except KeyError:
        raise UserError(f"unknown reference architecture '{name}'; known: {', '.join(REFERENCES)}") from None
