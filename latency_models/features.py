"""Op-level latency features: what a candidate's forward pass costs a runtime, as a few sums.

A device profile prices each feature (milliseconds per unit); latency is the dot product, and each
feature belongs to one op class of ``search_spaces.ops.OP_CLASSES``, which gives the breakdown. Features are
sums over the ops of ``search_spaces.ops.list_ops`` (one op list for params, FLOPs and latency):

| feature | class | what it counts (summed over ops x repeat) |
|---|---|---|
| fc_n | matmul | fully-connected ops run (per-op overhead) |
| fc_macs | matmul | their multiply-accumulates |
| fc_w | matmul | their weight elements k*n (weights streamed once per call) |
| fc_out | matmul | their output elements m*n |
| fc_w_spill | matmul | their weight elements k*n x min(k*n, ``L2_FLOATS``): / ``L2_FLOATS``, the weights that miss L2 |
| att_n | attention | attention blocks (reshape/transpose/mask/scale overhead) |
| att_macs | attention | MACs of the two batched matmuls (scores, context) |
| att_sm | attention | softmax (= score) elements, heads*s*s |
| att_qkv | attention | per-head Q/K/V/context elements moved by transposes, s*A |
| ln_n, ln_el | norm | LayerNorm ops and elements |
| nn_n, nn_el | norm | NoNorm ops and elements |
| gelu_n, gelu_el | activation | GELU ops and elements |
| relu_n, relu_el | activation | ReLU ops and elements |
| add_n, add_el | elementwise | residual and embedding adds |
| emb_el | embedding | looked-up and 3-gram-concatenated embedding elements |
| const | embedding | one per inference: the runtime's fixed cost, booked with the graph's entry |

``fc_w_spill`` is the one term that is not a plain count. A weight matrix is streamed once per call
(``fc_w``) and re-read by every row tile of the GEMM; how much of that traffic misses the L2 cache grows
with the matrix's share of L2, k*n / ``L2_FLOATS``, and saturates once it no longer fits. Chosen by
cross-validation on the training rows only (benchmarks/results/latency_accuracy.md, "Predictor
structure"): it took the host's 5-fold within-10% from 86% to 96%, most of all on the large-matrix
BERT-/IB-BERT-like shapes (under-predicted by ~9% without it), and helped every group. ``L2_FLOATS``
is a hardware fact of the host (1.25 MiB of L2 per core), not a fitted number; the feature is kept
an integer so that both implementations below stay exact. A phone's caches differ: see
``CACHE_FEATURES``.

Two implementations that tests keep equal: ``features_from_ops`` (reads ``list_ops``; scalar, the
reference) and ``features_many`` (closed form over arrays of candidate fields; vectorised, what
makes 100,000+ predictions per second possible).
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Sequence

import numpy as np

from search_spaces.candidate import Candidate
from search_spaces.ops import OP_CLASSES, Op, list_ops

FEATURES: tuple[str, ...] = (
    "fc_n", "fc_macs", "fc_w", "fc_out", "fc_w_spill",
    "att_n", "att_macs", "att_sm", "att_qkv",
    "ln_n", "ln_el", "nn_n", "nn_el",
    "gelu_n", "gelu_el", "relu_n", "relu_el",
    "add_n", "add_el",
    "emb_el", "const",
)
FEATURE_CLASS: dict[str, str] = {
    **{f: "matmul" for f in ("fc_n", "fc_macs", "fc_w", "fc_out", "fc_w_spill")},
    **{f: "attention" for f in ("att_n", "att_macs", "att_sm", "att_qkv")},
    **{f: "norm" for f in ("ln_n", "ln_el", "nn_n", "nn_el")},
    **{f: "activation" for f in ("gelu_n", "gelu_el", "relu_n", "relu_el")},
    **{f: "elementwise" for f in ("add_n", "add_el")},
    **{f: "embedding" for f in ("emb_el", "const")},
}
assert set(FEATURE_CLASS) == set(FEATURES) and set(FEATURE_CLASS.values()) == set(OP_CLASSES)
INDEX = {f: i for i, f in enumerate(FEATURES)}
# L2 cache of one core of the host that measured host-cpu-litert (Intel Xeon, 1.25 MiB per core by lscpu),
# in fp32 elements
L2_FLOATS = 1_310_720 // 4
# features priced by the measuring machine's cache size: left out of the op-level shape that other
# devices are calibrated from (``DeviceProfile.fit["transfer_coefficients"]``)
CACHE_FEATURES: tuple[str, ...] = ("fc_w_spill",)
# (n_features, n_classes) 0/1 matrix: features @ (coef * CLASS_MATRIX) -> per-class milliseconds
CLASS_MATRIX = np.array([[1.0 if FEATURE_CLASS[f] == k else 0.0 for k in OP_CLASSES] for f in FEATURES])


def op_features(op: Op) -> dict[str, float]:
    """The features one op contributes (already multiplied by its repeat count)."""
    r = op.repeat
    if op.kind == "matmul":
        w = op.k * op.n
        return {"fc_n": r, "fc_macs": op.macs * r, "fc_w": w * r, "fc_out": op.m * op.n * r,
                "fc_w_spill": w * min(w, L2_FLOATS) * r}
    if op.kind == "attention":
        if op.detail == "softmax":
            return {"att_sm": op.elements * r}
        if op.name.endswith("scores"):  # one per block; [heads, s, hd] tensors are s*A elements
            return {"att_n": r, "att_macs": op.macs * r, "att_qkv": op.batch * op.m * op.k * r}
        return {"att_macs": op.macs * r}
    if op.kind == "norm":
        p = "ln" if op.detail == "layer_norm" else "nn"
        return {f"{p}_n": r, f"{p}_el": op.elements * r}
    if op.kind == "activation":
        return {f"{op.detail}_n": r, f"{op.detail}_el": op.elements * r}
    if op.kind == "elementwise":
        return {"add_n": r, "add_el": op.elements * r}
    if op.kind == "embedding":
        return {"emb_el": op.elements * r}
    raise ValueError(f"unknown op kind {op.kind!r}")


def features_from_ops(c: Candidate, seq_len: int | None = None) -> np.ndarray:
    """Feature vector of one candidate from its op list (the scalar reference)."""
    x = np.zeros(len(FEATURES))
    x[INDEX["const"]] = 1.0
    for op in list_ops(c, seq_len):
        for f, v in op_features(op).items():
            x[INDEX[f]] += v
    return x


_NUMERIC = ("num_layers", "hidden_size", "embedding_size", "num_heads", "seq_len", "intra_size", "num_ffn",
            "intermediate_size", "trigram_input")
_get_numeric = itemgetter(*_NUMERIC)
_get_kinds = itemgetter("norm", "act", "attention")
_ATTENTIONS = ("shared_qk", "bottleneck", "block", "none")
# (norm, act, attention) -> (is layer_norm, is gelu, attention code); the strings are validated by Candidate
_KIND_CODE = {(nm, a, at): (nm == "layer_norm") * 16 + (a == "gelu") * 8 + i
              for nm in ("layer_norm", "no_norm") for a in ("gelu", "relu") for i, at in enumerate(_ATTENTIONS)}


def _spill(w: np.ndarray) -> np.ndarray:
    """``fc_w_spill`` of one weight matrix of w = k*n elements (see ``op_features``)."""
    return w * np.minimum(w, L2_FLOATS)


def features_many(cands: Sequence[Candidate], seq_len: int | None = None) -> np.ndarray:
    """(n, len(FEATURES)) feature matrix, closed form over field arrays (mirrors ``search_spaces.ops.list_ops``).

    Reading the fields of n Python objects is most of the cost: it goes through ``vars`` and C-level
    getters straight into ``np.fromiter`` (no per-candidate Python code).
    """
    n = len(cands)
    X = np.zeros((n, len(FEATURES)), order="F")  # column-major: every feature below is one contiguous write
    if n == 0:
        return X
    fields = list(map(vars, cands))
    num = np.fromiter(chain.from_iterable(map(_get_numeric, fields)), np.float64, n * len(_NUMERIC))
    L, H, E, heads, s, intra, nffn, F, tri = num.reshape(n, len(_NUMERIC)).T
    if seq_len is not None:
        s = np.full(n, float(seq_len))
    code = np.fromiter(map(_KIND_CODE.__getitem__, map(_get_kinds, fields)), np.int64, n)
    ln, gelu, att = (code & 16) > 0, (code & 8) > 0, code & 7

    b = (att != 3).astype(np.float64)           # bottleneck in/out linears
    shared = (att == 0).astype(np.float64)      # extra shared Q=K bottleneck linear
    T = np.where(att != 3, intra, H)            # width inside a block = attention width A
    A = T
    qk_in = np.where((att == 0) | (att == 1), T, H)
    v_in = np.where(att == 1, T, H)
    e_in = np.where(tri > 0, 3 * E, E)
    emb_tr = ((tri > 0) | (E != H)).astype(np.float64)

    # fully connected: embedding transformation + per block: bottleneck(s), Q, K, V, out, FFNs, bottleneck out
    X[:, INDEX["fc_n"]] = emb_tr + L * (b * (1 + shared) + 4 + 2 * nffn + b)
    w_layer = b * (H * T) * (1 + shared) + 2 * qk_in * A + v_in * A + A * T + nffn * 2 * T * F + b * T * H
    X[:, INDEX["fc_w"]] = emb_tr * e_in * H + L * w_layer
    X[:, INDEX["fc_macs"]] = s * X[:, INDEX["fc_w"]]
    w_spill = (b * (1 + shared) * _spill(H * T) + 2 * _spill(qk_in * A) + _spill(v_in * A) + _spill(A * T)
               + nffn * 2 * _spill(T * F) + b * _spill(T * H))
    X[:, INDEX["fc_w_spill"]] = emb_tr * _spill(e_in * H) + L * w_spill
    X[:, INDEX["fc_out"]] = s * (emb_tr * H + L * (b * T * (1 + shared) + 3 * A + T + nffn * (F + T) + b * H))
    # attention: scores [heads, s, s] and context, both s*s*A MACs
    X[:, INDEX["att_n"]] = L
    X[:, INDEX["att_macs"]] = L * 2 * s * s * A
    X[:, INDEX["att_sm"]] = L * heads * s * s
    X[:, INDEX["att_qkv"]] = L * s * A
    # norms: embeddings + per block: bottleneck(s), attention, each FFN, bottleneck out
    norm_n = 1 + L * (b * (1 + shared) + 1 + nffn + b)
    norm_el = s * H + L * s * (b * T * (1 + shared) + T + nffn * T + b * H)
    X[:, INDEX["ln_n"]] = np.where(ln, norm_n, 0)
    X[:, INDEX["ln_el"]] = np.where(ln, norm_el, 0)
    X[:, INDEX["nn_n"]] = np.where(ln, 0, norm_n)
    X[:, INDEX["nn_el"]] = np.where(ln, 0, norm_el)
    act_n, act_el = L * nffn, L * nffn * s * F
    X[:, INDEX["gelu_n"]] = np.where(gelu, act_n, 0)
    X[:, INDEX["gelu_el"]] = np.where(gelu, act_el, 0)
    X[:, INDEX["relu_n"]] = np.where(gelu, 0, act_n)
    X[:, INDEX["relu_el"]] = np.where(gelu, 0, act_el)
    # residual adds: embeddings (position + type) + per block: attention, each FFN, bottleneck out
    X[:, INDEX["add_n"]] = 1 + L * (1 + nffn + b)
    X[:, INDEX["add_el"]] = 2 * s * H + L * s * (T + nffn * T + b * H)
    X[:, INDEX["emb_el"]] = s * E * (1 + 3 * tri)
    X[:, INDEX["const"]] = 1.0
    return X
