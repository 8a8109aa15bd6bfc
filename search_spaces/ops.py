"""The ops a candidate runs, with shapes: one list that parameter and FLOP counts and the latency
predictor all read, so the three can never disagree about what the model is.

Shapes follow transformers' ``MobileBertModel`` (no pooler, no task head) module by module; a test
checks the parameter count against the real module exactly and the matmul MACs against fvcore.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.candidate import Candidate

# Op classes, also the keys of every latency breakdown.
OP_CLASSES = ("matmul", "attention", "norm", "activation", "elementwise", "embedding")


@dataclass(frozen=True)
class Op:
    """One op of a forward pass at batch 1.

    kind: an entry of ``OP_CLASSES``.
    name: module path, e.g. ``layer.ffn.0.intermediate``.
    batch, m, k, n: a (batch x) [m, k] @ [k, n] matmul (``matmul`` and ``attention`` kinds).
    elements: output elements of a non-matmul op.
    params: trainable parameters the op owns.
    repeat: how many times it runs (once per layer for ops inside a block).
    detail: sub-kind (``layer_norm``/``no_norm``, ``gelu``/``relu``, ``softmax``, ``add`` ...).
    """

    kind: str
    name: str
    batch: int = 1
    m: int = 0
    k: int = 0
    n: int = 0
    elements: int = 0
    params: int = 0
    repeat: int = 1
    detail: str = ""

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


def _linear(name: str, m: int, k: int, n: int, repeat: int) -> Op:
    # y[m, n] = x[m, k] @ W[k, n] + b[n]
    return Op("matmul", name, m=m, k=k, n=n, params=k * n + n, elements=m * n, repeat=repeat)


def _norm(name: str, m: int, width: int, kind: str, repeat: int) -> Op:
    # LayerNorm and NoNorm both own gamma[width] and beta[width]
    return Op("norm", name, elements=m * width, params=2 * width, repeat=repeat, detail=kind)


def _add(name: str, elements: int, repeat: int) -> Op:
    return Op("elementwise", name, elements=elements, repeat=repeat, detail="add")


def list_ops(c: Candidate, seq_len: int | None = None) -> list[Op]:
    """All ops of ``MobileBertModel`` for ``c`` at batch 1 and ``seq_len`` tokens (default c.seq_len)."""
    s = seq_len or c.seq_len
    L, H, E, T = c.num_layers, c.hidden_size, c.embedding_size, c.true_hidden_size
    A, F, heads, hd = c.attention_width, c.intermediate_size, c.num_heads, c.head_size
    ops: list[Op] = []

    # --- embeddings: lookup [s, E], 3-gram concat -> [s, 3E], linear -> [s, H], + pos + type, norm
    word_params = c.vocab_size * E + max(512, c.seq_len) * H + 2 * H
    ops.append(Op("embedding", "embeddings.lookup", elements=s * E, params=word_params, detail="gather"))
    e_in = 3 * E if c.trigram_input else E
    if c.trigram_input:
        ops.append(Op("embedding", "embeddings.trigram_concat", elements=s * 3 * E, detail="concat"))
    # transformers always owns embedding_transformation, but only runs it when it reshapes the input
    if c.trigram_input or E != H:
        ops.append(_linear("embeddings.transformation", s, e_in, H, 1))
    else:
        ops.append(Op("embedding", "embeddings.transformation(unused)", params=e_in * H + H))
    ops.append(_add("embeddings.add_position_type", 2 * s * H, 1))
    ops.append(_norm("embeddings.norm", s, H, c.norm, 1))

    # --- one block, repeated L times
    if c.use_bottleneck:
        ops.append(_linear("layer.bottleneck.input", s, H, T, L))  # [s, H] -> [s, T]
        ops.append(_norm("layer.bottleneck.input.norm", s, T, c.norm, L))
        if c.attention == "shared_qk":
            ops.append(_linear("layer.bottleneck.attention", s, H, T, L))
            ops.append(_norm("layer.bottleneck.attention.norm", s, T, c.norm, L))
    qk_in = T if c.attention in ("shared_qk", "bottleneck") else H
    v_in = T if c.attention == "bottleneck" else H
    ops.append(_linear("layer.attention.query", s, qk_in, A, L))
    ops.append(_linear("layer.attention.key", s, qk_in, A, L))
    ops.append(_linear("layer.attention.value", s, v_in, A, L))
    # scores [heads, s, hd] @ [heads, hd, s] -> [heads, s, s]; scale + mask + softmax; @ V [heads, s, hd]
    ops.append(Op("attention", "layer.attention.scores", batch=heads, m=s, k=hd, n=s,
                  elements=heads * s * s, repeat=L))
    ops.append(Op("attention", "layer.attention.softmax", elements=heads * s * s, repeat=L, detail="softmax"))
    ops.append(Op("attention", "layer.attention.context", batch=heads, m=s, k=s, n=hd,
                  elements=heads * s * hd, repeat=L))
    ops.append(_linear("layer.attention.output", s, A, T, L))
    ops.append(_add("layer.attention.residual", s * T, L))
    ops.append(_norm("layer.attention.norm", s, T, c.norm, L))
    for i in range(c.num_ffn):
        name = f"layer.ffn.{i}" if i < c.num_ffn - 1 else "layer.ffn.main"
        ops.append(_linear(f"{name}.intermediate", s, T, F, L))
        ops.append(Op("activation", f"{name}.act", elements=s * F, repeat=L, detail=c.act))
        ops.append(_linear(f"{name}.output", s, F, T, L))
        ops.append(_add(f"{name}.residual", s * T, L))
        ops.append(_norm(f"{name}.norm", s, T, c.norm, L))
    if c.use_bottleneck:
        ops.append(_linear("layer.bottleneck.output", s, T, H, L))  # [s, T] -> [s, H]
        ops.append(_add("layer.bottleneck.residual", s * H, L))
        ops.append(_norm("layer.bottleneck.output.norm", s, H, c.norm, L))
    return ops


@dataclass(frozen=True)
class Counts:
    """Size of a candidate (``MobileBertModel`` without pooler or task head; batch 1).

    params: trainable parameters (embeddings + encoder), as transformers counts them.
    macs: multiply-accumulates of one forward pass at ``seq_len``.
    flops: 2 * macs (a multiply-add counted as two operations, as the MobileBERT paper does).
    mha_params, ffn_params: per block; MHA = Q, K, V and output projections; FFN = all stacked FFNs.
    mha_ffn_ratio: mha_params / ffn_params, the realised MHA/FFN parameter ratio.
    """

    params: int
    macs: int
    flops: int
    mha_params: int
    ffn_params: int
    mha_ffn_ratio: float
    seq_len: int

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count(c: Candidate, seq_len: int | None = None) -> Counts:
    ops = list_ops(c, seq_len)
    params = sum(o.params * o.repeat for o in ops)
    macs = sum(o.macs * o.repeat for o in ops)
    mha = sum(o.params for o in ops if o.name.startswith("layer.attention.") and o.kind == "matmul")
    ffn = sum(o.params for o in ops if o.name.startswith("layer.ffn.") and o.kind == "matmul")
    return Counts(params=params, macs=macs, flops=2 * macs, mha_params=mha, ffn_params=ffn,
                  mha_ffn_ratio=mha / ffn, seq_len=seq_len or c.seq_len)


def mha_params_per_block(c: Candidate) -> int:
    """MHA parameters of one block; independent of the FFN, so the space can derive the FFN from it."""
    return count(c).mha_params
