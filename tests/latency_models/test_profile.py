"""Profiles: the public contract, round trip, pinned predictions, breakdowns, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latency_models import DeviceProfile, LatencyEstimate, list_profiles, load_profile
from search_spaces import load_space
from search_spaces.errors import UserError
from search_spaces.ops import OP_CLASSES
from search_spaces.references import REFERENCES, UNVERIFIED_PIXEL4_MS

DEVICES = ["host-cpu-litert", "pixel4-cpu-tflite"]
CANDS = ([r.candidate for r in REFERENCES.values()] + [c for c, _ in UNVERIFIED_PIXEL4_MS.values()]
         + load_space("mobilebert").sample(20, seed=3) + load_space("demo").sample(20, seed=3))


def test_builtin_profiles_are_listed():
    assert set(DEVICES) <= set(list_profiles())


@pytest.mark.parametrize("device", DEVICES)
def test_contract(device):
    prof = load_profile(device)
    assert prof.name == device
    assert isinstance(prof.error_summary, str) and prof.error_summary and "\n" not in prof.error_summary
    est = prof.estimate(REFERENCES["mobilebert"].candidate)
    assert isinstance(est, LatencyEstimate)
    assert est.predicted is True and est.profile == device and est.error_summary == prof.error_summary
    assert list(est.breakdown) == list(OP_CLASSES)
    assert est.latency_ms > 0 and all(v >= 0 for v in est.breakdown.values())
    for k in ("latency_ms", "breakdown", "profile", "predicted", "error_summary"):
        assert k in est.to_dict()
    for k in ("runtime", "threads", "precision", "seq_len"):
        assert k in prof.conditions
    assert prof.fit["data"] and all("sha256" in d for d in prof.fit["data"])


@pytest.mark.parametrize("device", DEVICES)
def test_vectorised_equals_scalar_and_breakdown_sums(device):
    prof = load_profile(device)
    many = prof.estimate_many(CANDS)
    one = [prof.estimate(c) for c in CANDS]
    assert np.allclose(many, [e.latency_ms for e in one], rtol=1e-12)
    for e in one:
        assert sum(e.breakdown.values()) == pytest.approx(e.latency_ms, rel=1e-12)
    assert np.allclose(prof.breakdown_many(CANDS).sum(axis=1), many, rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_round_trip(device, tmp_path):
    prof = load_profile(device)
    path = prof.save(tmp_path / "p.json")
    again = load_profile(str(path))
    assert again.to_dict() == prof.to_dict()
    assert np.array_equal(again.estimate_many(CANDS), prof.estimate_many(CANDS))


# pinned predictions (ms): a change of features, fit or data shows up here; refit -> update on purpose
PINNED = {
    "host-cpu-litert": {"mobilebert": 54.9715, "mobilebert-tiny": 33.3135, "mobilebert-no-opt": 57.6075,
        "bert-base": 248.2586, "ib-bert-large": 830.3423, "mobilebert-layernorm-relu": 55.5393,
        "mobilebert-nonorm-gelu": 57.0397},
    "pixel4-cpu-tflite": {"mobilebert": 65.1629, "mobilebert-tiny": 37.9840, "mobilebert-no-opt": 192.6639,
        "bert-base": 338.8147, "ib-bert-large": 1142.1308, "mobilebert-layernorm-relu": 124.6404,
        "mobilebert-nonorm-gelu": 133.1863},
}


@pytest.mark.parametrize("device,name", [(d, n) for d in PINNED for n in PINNED[d]])
def test_pinned_reference_predictions(device, name):
    c = REFERENCES[name].candidate if name in REFERENCES else UNVERIFIED_PIXEL4_MS[name][0]
    assert load_profile(device).estimate(c).latency_ms == pytest.approx(PINNED[device][name], rel=1e-3)


def test_unknown_profile_lists_known():
    with pytest.raises(UserError, match="'pixel9' is neither a built-in device profile.*host-cpu-litert.*pixel4"):
        load_profile("pixel9")


@pytest.mark.parametrize("content,match", [
    ("{not json", r"not valid JSON \(line 1, column 2: "),
    ('{"schema": "other"}', "not a latency profile"),
    ('{"schema": "mbnas.latency-profile/1", "name": "x", "conditions": {}, "error": {}}',
     "missing field 'coefficients'"),
    ('{"schema": "mbnas.latency-profile/1", "name": "x", "conditions": {}, "error": {}, "coefficients": {"flops": 1}}',
     "unknown feature 'flops'"),
    ('{"schema": "mbnas.latency-profile/1", "name": "x", "conditions": {}, "error": {}, "coefficients": {"fc_n": 1}}',
     "coefficients lack 'fc_macs' and 19 more"),
    ("NEGATIVE", "coefficient 'fc_macs' is negative"),
    ("\x00\xff\x10binary", "not UTF-8 text"),
])
def test_malformed_profile_file(tmp_path, content, match):
    p = tmp_path / "bad.json"
    if content == "NEGATIVE":  # a hand-edited profile: every coefficient there, one below zero
        d = load_profile("host-cpu-litert").to_dict()
        d["coefficients"]["fc_macs"] = -1.0
        content = json.dumps(d)
    p.write_text(content, encoding="latin-1")
    with pytest.raises(UserError, match=match):
        load_profile(str(p))


def test_a_missing_profile_path_says_no_such_file(tmp_path):
    with pytest.raises(UserError, match=r"nope.json: no such file \(built-in device profiles: host-cpu-litert"):
        load_profile(str(tmp_path / "nope.json"))


def test_content_hash_follows_the_costs():
    a = load_profile("host-cpu-litert")
    d = a.to_dict()
    d["coefficients"]["fc_macs"] *= 1.01
    assert DeviceProfile.from_dict(d).content_hash != a.content_hash
    assert DeviceProfile.from_dict(a.to_dict()).content_hash == a.content_hash


def test_profile_from_dict_needs_schema():
    with pytest.raises(UserError):
        DeviceProfile.from_dict(json.loads('{"name": "x"}'))


def test_a_profile_knows_its_calibration_domain_and_says_when_it_extrapolates():
    from pathlib import Path

    from latency_models.calibrate import HOST_TRAIN, ok_rows
    from latency_models.profile import domain_of

    host, pixel = load_profile("host-cpu-litert"), load_profile("pixel4-cpu-tflite")
    # the shipped domains are those of the points each was fitted on
    assert host.fit["domain"] == domain_of(ok_rows([HOST_TRAIN])[0])
    verified = [r.candidate for r in REFERENCES.values() if r.pixel4_verified and r.pixel4_latency_ms]
    assert pixel.fit["domain"] == domain_of(verified)
    mb = REFERENCES["mobilebert"].candidate
    inside = pixel.estimate(mb)
    assert not inside.outside and "EXTRAPOLATED" not in inside.describe()
    demo = load_space("demo").sample(1, seed=0)[0]  # 2-4 blocks at seq 64: outside the Pixel's 24-block points
    est = pixel.estimate(demo)
    assert "seq 64 (calibrated 128)" in est.outside and "EXTRAPOLATED" in est.describe()
    # the band printed is the one benchmarks/latency_extrapolation.py measured
    measured = json.loads((Path(__file__).parents[2] / "benchmarks/results/latency_extrapolation.json").read_text())
    assert f"error up to {measured['outside']['p90_abs_pct']:.0f}%" in est.describe()
    assert est.to_dict()["outside_calibration"] == list(est.outside)
    # a search's error line counts the candidates it extrapolates to
    line = pixel.error_over([mb, demo, demo])
    assert line.startswith(pixel.error_summary) and "2 of 3 EXTRAPOLATED" in line
    assert pixel.error_over([mb]) == pixel.error_summary
    # a profile without a recorded domain (older files) claims nothing either way
    bare = type(pixel).from_dict({**pixel.to_dict(), "fit": {}})
    assert not bare.estimate(demo).outside
