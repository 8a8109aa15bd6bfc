"""The vectorised features equal the op-list ones, and predictions are fast enough for search."""

from __future__ import annotations

import time

import numpy as np
import pytest

from latency_models import load_profile
from latency_models.features import (CLASS_MATRIX, FEATURE_CLASS, FEATURES, INDEX, L2_FLOATS, features_from_ops,
                                     features_many)
from search_spaces import load_space
from search_spaces.ops import OP_CLASSES, count
from search_spaces.references import REFERENCES, UNVERIFIED_PIXEL4_MS

REFS = [r.candidate for r in REFERENCES.values()] + [c for c, _ in UNVERIFIED_PIXEL4_MS.values()]


@pytest.mark.parametrize("space", ["mobilebert", "demo", "smoke"])
def test_vectorised_features_equal_op_list(space):
    cands = load_space(space).sample(40, seed=7)
    assert np.array_equal(features_many(cands), np.array([features_from_ops(c) for c in cands]))


@pytest.mark.parametrize("c", REFS, ids=lambda c: c.name)
def test_reference_features_equal_op_list_and_macs(c):
    x = features_many([c])[0]
    assert np.array_equal(x, features_from_ops(c))
    # every MAC of search_spaces.ops is a matmul or attention MAC here, so FLOP counts and latency agree on shapes
    k = count(c)
    assert x[FEATURES.index("fc_macs")] + x[FEATURES.index("att_macs")] == k.macs


def test_weight_spill_grows_with_the_matrix_and_saturates_beyond_l2():
    # MobileBERT's matrices (512 x 128) fit L2: each is charged w * w / L2 weights; BERT-base's all spill: w each
    mb, bert = (features_many([REFERENCES[n].candidate])[0] for n in ("mobilebert", "bert-base"))
    assert mb[INDEX["fc_w_spill"]] / L2_FLOATS < 0.25 * mb[INDEX["fc_w"]]
    assert bert[INDEX["fc_w_spill"]] == bert[INDEX["fc_w"]] * L2_FLOATS


@pytest.mark.parametrize("seq_len", [32, 128, 384])
def test_seq_len_override(seq_len):
    c = REFERENCES["mobilebert"].candidate
    assert np.array_equal(features_many([c], seq_len=seq_len)[0], features_from_ops(c, seq_len))


def test_every_feature_has_one_class():
    assert set(FEATURE_CLASS.values()) == set(OP_CLASSES)
    assert np.array_equal(CLASS_MATRIX.sum(axis=1), np.ones(len(FEATURES)))


def test_empty_input():
    assert features_many([]).shape == (0, len(FEATURES))
    assert load_profile("host-cpu-litert").estimate_many([]).shape == (0,)


@pytest.mark.parametrize("device", ["host-cpu-litert", "pixel4-cpu-tflite"])
def test_estimate_many_is_fast_enough_for_search(device):
    """>= 100,000 candidates/s on one core (best of 5; CPU time of this thread, so neighbours don't count)."""
    prof = load_profile(device)
    cands = load_space("mobilebert").sample(500, seed=1) * 40  # 20,000
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time()
        out = prof.estimate_many(cands)
        best = min(best, time.thread_time() - t0)
    assert out.shape == (len(cands),)
    assert len(cands) / best >= 100_000, f"{len(cands) / best:,.0f} candidates/s"
