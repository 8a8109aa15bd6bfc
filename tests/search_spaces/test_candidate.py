"""Candidates, references and the analytic counts, checked against the real modules."""

from __future__ import annotations

import json

import pytest

from search_spaces import load_space
from search_spaces.arch import resolve_arch
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.ops import count
from search_spaces.references import REFERENCES


def _demo_candidates():
    space = load_space("demo")
    return [space.teacher] + space.sample(4, seed=3)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_params_match_paper(name):
    """Paper counts (Table 1) within 3%: the paper does not say what it counts (docs/FACTS.md)."""
    ref = REFERENCES[name]
    ours = count(ref.candidate).params_m
    assert abs(ours / ref.paper_params_m - 1) < 0.03, (name, ours, ref.paper_params_m)


def test_reference_counts_pinned():
    """Exact counts, so a change to the op list cannot slip through unnoticed."""
    got = {n: count(r.candidate).params for n, r in REFERENCES.items()}
    assert got == {"mobilebert": 24_581_888, "mobilebert-tiny": 15_485_696, "mobilebert-no-opt": 24_581_888,
                   "ib-bert-large": 294_205_184, "bert-base": 109_482_240}
    assert count(REFERENCES["mobilebert"].candidate).macs == 2_692_743_168  # ~2.7 GMACs (docs/FACTS.md)


@pytest.mark.parametrize("c", _demo_candidates() + [REFERENCES["mobilebert-tiny"].candidate],
                         ids=lambda c: c.label)
def test_params_equal_transformers_module(c):
    from nas.models import build_base_model

    model = build_base_model(c)
    assert count(c).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("c", _demo_candidates(), ids=lambda c: c.label)
def test_matmul_macs_match_fvcore(c):
    """Encoder matmuls (linear + attention matmuls) equal fvcore's count on eager attention within 1%."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    from nas.models import build_base_model

    model = build_base_model(c, attn_implementation="eager").eval()
    fa = FlopCountAnalysis(model, (torch.randint(0, 1000, (1, c.seq_len)),))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    fv = sum(v for k, v in fa.by_operator().items() if k in ("linear", "matmul", "bmm", "addmm"))
    assert abs(fv / count(c).macs - 1) < 0.01


@pytest.mark.slow
def test_ib_bert_teacher_builds_and_runs():
    """Stock transformers cannot build IB-BERT (Q/K read the block input); our patch can."""
    import torch

    from nas.models import build_masked_lm

    space = load_space("smoke")
    model = build_masked_lm(space.teacher).eval()
    out = model(torch.randint(0, 1000, (2, 16)), output_attentions=True, output_hidden_states=True)
    assert out.logits.shape == (2, 16, 30522)
    assert len(out.attentions) == space.teacher.num_layers and out.attentions[0].shape == (2, 2, 16, 16)


def test_student_config_loads_in_stock_transformers(tmp_path):
    from transformers import AutoConfig, MobileBertForMaskedLM

    c = load_space("smoke").sample(1, seed=0)[0]
    c.to_hf_config().save_pretrained(tmp_path)
    cfg = AutoConfig.from_pretrained(tmp_path)
    model = MobileBertForMaskedLM(cfg)
    assert count(c).params == sum(p.numel() for p in model.mobilebert.parameters())
    assert Candidate.from_hf_config(json.loads((tmp_path / "config.json").read_text()), seq_len=c.seq_len) == c.replace(
        mha_ffn_ratio=None)


def test_candidate_json_roundtrip(tmp_path):
    c = load_space("demo").sample(1, seed=5)[0]
    path = c.save(tmp_path / "c.json")
    assert resolve_arch(str(path)) == c


@pytest.mark.parametrize("bad,msg", [
    ({"norm": "batch_norm"}, "'norm' is 'batch_norm'; choose one of"),
    ({"intra_size": 30}, "not divisible by num_heads"),
    ({"num_ffn": 0}, "must be a positive integer"),
    ({"attention": "magic"}, "'attention' is 'magic'; choose one of"),
    ({"intra_size": 10**9}, "'intra_size' is 1,000,000,000, over the bound of 16,384"),
    ({"num_layers": 100_000}, "'num_layers' is 100,000, over the bound of 256"),
])
def test_candidate_rejects_bad_values(bad, msg):
    base = REFERENCES["mobilebert"].candidate.to_dict()
    base.pop("schema")
    with pytest.raises(UserError, match=msg):
        Candidate.from_dict({**base, **bad})


@pytest.mark.parametrize("text,msg", [
    ("{not json", "not valid JSON"),
    ('{"schema": "mbnas.candidate/1", "num_layers": 2}', "missing field"),
    # a hand-written file that leaves out a searched choice is not given one silently
    (json.dumps({k: v for k, v in REFERENCES["mobilebert"].candidate.to_dict().items() if k != "norm"}),
     "missing field 'norm'"),
    ('{"model_type": "bert"}', "only 'mobilebert'"),
    ('[1, 2]', "not a candidate JSON"),
])
def test_resolve_arch_bad_files(tmp_path, text, msg):
    p = tmp_path / "arch.json"
    p.write_text(text)
    with pytest.raises(UserError, match=msg):
        resolve_arch(str(p))


def test_resolve_arch_unknown_name():
    with pytest.raises(UserError, match="neither a reference architecture"):
        resolve_arch("mobilebert-huge")
