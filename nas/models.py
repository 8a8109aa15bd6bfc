"""Build models for a candidate: stock ``MobileBertForMaskedLM`` for students, and the IB-BERT
teacher through one small, documented patch.

Why the patch: in IB-BERT_LARGE the attention reads the 512-d block input and runs at the 1,024-d
intra-block width. transformers sizes ``query``/``key`` by ``true_hidden_size`` (the intra width)
but, with both bottleneck-attention flags off, feeds them the block input (``hidden_size``): a
shape error (docs/FACTS.md section 5). ``widen_block_qk`` replaces those two linears with
``Linear(hidden_size, all_head_size)``; nothing else changes, so every hook (attentions, hidden
states) and the safetensors layout stay those of stock transformers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import MobileBertForMaskedLM, MobileBertModel

from search_spaces.candidate import Candidate


def widen_block_qk(model: Any, hidden_size: int) -> None:
    """Make Q/K of every layer read the ``hidden_size``-wide block input (IB-BERT attention)."""
    for layer in model.base_model.encoder.layer:
        att = layer.attention.self
        att.query = nn.Linear(hidden_size, att.all_head_size)
        att.key = nn.Linear(hidden_size, att.all_head_size)
    # re-run transformers' initialiser on the new modules so they match the rest of the model
    model.apply(model._init_weights) if hasattr(model, "_init_weights") else None


def build_masked_lm(c: Candidate, attn_implementation: str = "eager", seed: int | None = None):
    """A freshly initialised ``MobileBertForMaskedLM`` for ``c``.

    ``eager`` attention by default: SDPA silently returns no attention maps, and attention
    transfer needs them (docs/FACTS.md section 5).
    """
    if seed is not None:
        torch.manual_seed(seed)
    model = MobileBertForMaskedLM(c.to_hf_config(attn_implementation=attn_implementation))
    if c.attention == "block":
        widen_block_qk(model, c.hidden_size)
    return model


def build_base_model(c: Candidate, attn_implementation: str = "eager"):
    """``MobileBertModel`` without pooler: the module whose size ``search_spaces.ops.count`` reports."""
    model = MobileBertModel(c.to_hf_config(attn_implementation=attn_implementation), add_pooling_layer=False)
    if c.attention == "block":
        widen_block_qk(model, c.hidden_size)
    return model
