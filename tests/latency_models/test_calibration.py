"""The built-in profiles are what their data says: Pixel 4 leave-one-out, ablation order, provenance."""

from __future__ import annotations

import numpy as np
import pytest

from latency_models import load_profile
from latency_models.calibrate import (HOST_HELDOUT, HOST_TRAIN, build_pixel_profile, ok_rows, structural_shape,
                                      transfer_shape)
from latency_models.features import CACHE_FEATURES
from latency_models.fit import error_stats, fit_relative, nnls, sha256_file
from search_spaces import load_space
from search_spaces.references import REFERENCES, UNVERIFIED_PIXEL4_MS

VERIFIED = [n for n, r in REFERENCES.items() if r.pixel4_verified]


@pytest.fixture(scope="module")
def pixel():
    return load_profile("pixel4-cpu-tflite")


@pytest.mark.parametrize("name", VERIFIED)
def test_pixel_leave_one_out_within_10pct(pixel, name):
    pt = next(p for p in pixel.error["points"] if p["label"].startswith(name + " ") and p["kind"] == "leave-one-out")
    assert pt["measured_ms"] == REFERENCES[name].pixel4_latency_ms
    assert abs(pt["error_pct"]) <= 10.0, pt


def test_pixel_unverified_points_are_shown_not_fitted(pixel):
    fitted = pixel.fit["data"][0]["points"]
    assert set(fitted) == set(VERIFIED)
    assert not set(fitted) & set(UNVERIFIED_PIXEL4_MS)
    shown = {p["label"].split(" ")[0]: p for p in pixel.error["points"] if p["kind"] == "shown, not fitted"}
    assert set(shown) == set(UNVERIFIED_PIXEL4_MS)
    mb = pixel.estimate(REFERENCES["mobilebert"].candidate).latency_ms
    no_opt = pixel.estimate(REFERENCES["mobilebert-no-opt"].candidate).latency_ms
    for c, _ in UNVERIFIED_PIXEL4_MS.values():  # each ablation sits between the two verified ends
        assert mb < pixel.estimate(c).latency_ms < no_opt


@pytest.mark.xfail(strict=True, reason="known miss, reported in benchmarks/results/latency_accuracy.md: the 4 "
                   "verified points always have LayerNorm and GELU together, and the structural split "
                   "(element passes: LN 10, GELU 8) prices GELU above LayerNorm; the unverified paper "
                   "points say LayerNorm costs ~3.5x GELU on the 2020 runtime. A split measured on this "
                   "host is worse still (benchmarks/results/unfused_norm_act.md)")
def test_pixel_unverified_points_in_paper_order(pixel):
    ln_relu = pixel.estimate(UNVERIFIED_PIXEL4_MS["mobilebert-layernorm-relu"][0]).latency_ms
    nn_gelu = pixel.estimate(UNVERIFIED_PIXEL4_MS["mobilebert-nonorm-gelu"][0]).latency_ms
    mb = pixel.estimate(REFERENCES["mobilebert"].candidate).latency_ms
    no_opt = pixel.estimate(REFERENCES["mobilebert-no-opt"].candidate).latency_ms
    # paper (unverified): 62 < NoNorm+GELU 92 < LayerNorm+ReLU 167 < LayerNorm+GELU 192
    assert mb < nn_gelu < ln_relu < no_opt


def test_pixel_profile_rebuilds_from_the_host_profile(pixel):
    again = build_pixel_profile(load_profile("host-cpu-litert"))
    assert np.allclose(again.weights, pixel.weights, rtol=1e-6)
    assert again.error_summary == pixel.error_summary


def test_pixel_profile_is_scaled_from_the_host_shape_without_cache_terms(pixel):
    host = load_profile("host-cpu-litert")
    shape = transfer_shape(host)
    assert host.coefficients["fc_w_spill"] > 0  # the host's own L2 spill is priced...
    assert all(shape.coefficients[f] == 0 for f in CACHE_FEATURES)  # ...and left out of what is transferred
    assert all(pixel.coefficients[f] == 0 for f in CACHE_FEATURES)


def test_host_profile_provenance_matches_committed_data():
    host = load_profile("host-cpu-litert")
    data = {d["path"]: d for d in host.fit["data"] + host.fit["heldout_data"]}
    for path in (HOST_TRAIN, HOST_HELDOUT):
        entry = next(d for p, d in data.items() if path.as_posix().endswith(p))
        assert entry["sha256"] == sha256_file(path)


def test_host_heldout_error_recomputes():
    host = load_profile("host-cpu-litert")
    cands, y, _ = ok_rows([HOST_HELDOUT])
    st = error_stats(host.estimate_many(cands), y, [c.label for c in cands])
    assert st.n == host.error["heldout"]["n"] >= 40
    assert st.within_10 == pytest.approx(host.error["heldout"]["within_10"], abs=1e-4)
    assert st.mape == pytest.approx(host.error["heldout"]["mape"], abs=1e-3)


def test_heldout_shapes_are_not_in_training():
    from latency_models.dataset import candidate_key, read_rows

    train = {candidate_key(r.candidate, r.threads) for r in read_rows(HOST_TRAIN)}
    assert not train & {candidate_key(r.candidate, r.threads) for r in read_rows(HOST_HELDOUT)}


def test_nnls_matches_a_known_solution():
    rng = np.random.default_rng(0)
    A = rng.random((30, 5))
    x_true = np.array([0.0, 2.0, 0.0, 1.5, 3.0])
    x = nnls(A, A @ x_true)
    assert np.allclose(x, x_true, atol=1e-9)
    # with a negative least-squares coordinate, it is clamped to the bound
    x = nnls(A, A @ np.array([1.0, -1.0, 0.5, 0.0, 0.0]))
    assert (x >= 0).all() and x[1] == 0


def test_relative_fit_recovers_costs():
    rng = np.random.default_rng(1)
    X = rng.random((40, 4)) * [1e9, 10, 1e5, 1]
    w = np.array([1e-8, 0.05, 0.0, 0.3])
    assert np.allclose(fit_relative(X, X @ w), w, rtol=1e-6, atol=1e-12)


def test_phone_logs_with_the_ablation_models_price_layernorm_and_gelu_apart():
    """A user who times the whole bench suite (its two ablation models included) on their phone gets
    one factor for LayerNorm and one for GELU, so the ablations land where they measured them.
    Stand-in measurements: the paper's six Pixel 4 numbers, as such a user's logs would give them."""
    from latency_models.calibrate import calibrate_scaled, scale_groups

    cands = [REFERENCES[n].candidate for n in VERIFIED] + [c for c, _ in UNVERIFIED_PIXEL4_MS.values()]
    y = [REFERENCES[n].pixel4_latency_ms for n in VERIFIED] + [ms for _, ms in UNVERIFIED_PIXEL4_MS.values()]
    groups = scale_groups(cands)
    assert set(groups) == {"compute", "layer_norm", "gelu"}
    assert set(scale_groups(cands[:len(VERIFIED)])) == {"compute", "norm_act"}  # inseparable: one factor
    prof = calibrate_scaled(structural_shape(load_profile("host-cpu-litert")), cands, y, name="phone",
                            device="phone", conditions={}, groups=groups, data=[])
    ln_relu = prof.estimate(UNVERIFIED_PIXEL4_MS["mobilebert-layernorm-relu"][0]).latency_ms
    nn_gelu = prof.estimate(UNVERIFIED_PIXEL4_MS["mobilebert-nonorm-gelu"][0]).latency_ms
    assert nn_gelu < ln_relu and prof.fit["factors"]["layer_norm"] > 0
    assert max(abs(p["error_pct"]) for p in prof.error["points"]) < 25.0
    # the points are all MobileBERT-sized; a LayerNorm is priced by its elements, so a small search
    # space's models cost what the built-in Pixel 4 profile (the same paper numbers) says, within 2x.
    # On the host's per-call LayerNorm shape one small LN model cost 13x as much (0.66 ms per LayerNorm).
    demo = load_space("demo").sample(200, seed=0)
    ratio = prof.estimate_many(demo) / load_profile("pixel4-cpu-tflite").estimate_many(demo)
    assert 0.5 < ratio.min() and ratio.max() < 2.0, (ratio.min(), ratio.max())
