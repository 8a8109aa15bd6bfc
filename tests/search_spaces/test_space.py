"""The space format: built-ins load, sampling honours the ratio, every bad input is one clear error."""

from __future__ import annotations

import copy

import pytest
import yaml

from search_spaces import RandomSuggester, builtin_spaces, load_space, parse_space
from search_spaces.errors import UserError
from search_spaces.ops import count


def test_builtins_present():
    assert {"mobilebert", "demo", "smoke"} <= set(builtin_spaces())


@pytest.mark.parametrize("name", ["mobilebert", "demo", "smoke"])
def test_builtin_loads_and_samples(name):
    space = load_space(name)
    cands = space.sample(8, seed=1)
    assert len(set(cands)) == 8
    for c in cands:
        assert space.contains_teacher_shape(c)
        assert c.intermediate_size % space.ffn_multiple == 0
        assert not space.constraints.violations(c)


def test_mobilebert_space_matches_paper_shape():
    space = load_space("mobilebert")
    assert count(space.teacher).params_m == pytest.approx(293, rel=0.03)  # IB-BERT_LARGE
    # MobileBERT itself is a point of the space: intra 128, 4 FFNs, its realised ratio is reachable
    mb = space.build(intra_size=128, num_ffn=4, mha_ffn_ratio=0.2, norm="no_norm", act="relu", attention="shared_qk")
    assert mb.intermediate_size == 576 or mb.intermediate_size == 544  # nearest multiple of 32 to the ratio's width


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6, 1.0])
def test_ratio_is_a_real_dimension(ratio):
    """The realised MHA/FFN ratio tracks the target (within rounding of the FFN width)."""
    space = load_space("mobilebert")
    c = space.build(intra_size=128, num_ffn=2, mha_ffn_ratio=ratio, norm="no_norm", act="relu", attention="shared_qk")
    assert count(c).mha_ffn_ratio == pytest.approx(ratio, rel=0.12)


def test_seeded_sampling_is_deterministic():
    space = load_space("demo")
    assert space.sample(5, seed=7) == space.sample(5, seed=7)
    assert space.suggest(RandomSuggester(3)) == space.suggest(RandomSuggester(3))


def _demo_raw():
    return yaml.safe_load((load_space("demo").source and open(load_space("demo").source).read()))


def _mutate(path, value):
    raw = _demo_raw()
    node = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return raw


_DELETE = object()

BAD = [
    ("unknown top field", _mutate("colour", "red"), "field 'colour': unknown field"),
    ("unknown search field", _mutate("search.depth", {"choices": [1]}), "field 'search.depth': unknown field"),
    ("wrong type", _mutate("fixed.hidden_size", "wide"), "field 'fixed.hidden_size': must be an integer"),
    ("empty choices", _mutate("search.num_ffn", {"choices": []}), "search.num_ffn.choices': must be a non-empty list"),
    ("out of range", _mutate("search.num_ffn", {"choices": [0, 2]}), "search.num_ffn.choices': must be >= 1"),
    ("not divisible by heads", _mutate("search.intra_size", {"choices": [30, 64]}), "not divisible by fixed.num_heads"),
    ("bad categorical", _mutate("search.norm", {"choices": ["batch_norm"]}), "'batch_norm' is not allowed"),
    ("missing required", _mutate("teacher", _DELETE), "field 'teacher': is required"),
    ("inverted range", _mutate("search.mha_ffn_ratio", {"low": 0.9, "high": 0.2}), "low 0.9 is above high 0.2"),
    ("contradictory window", _mutate("constraints", {"mha_ffn_ratio": {"min": 0.8, "max": 0.2}}),
     "min 0.8 is above max 0.2"),
    ("unsatisfiable", _mutate("constraints", {"max_params_m": 0.01}), "no candidate of the search ranges"),
    ("teacher heads", _mutate("teacher.intra_size", 250), "teacher.intra_size': 250 is not divisible"),
    # no silent defaults: a range without a grid, a rounding multiple the file does not give
    ("range without step", _mutate("search.mha_ffn_ratio", {"low": 0.1, "high": 1.0}),
     "field 'search.mha_ffn_ratio.step': is required for a low/high range"),
    ("missing ffn_multiple", _mutate("ffn_multiple", _DELETE), "field 'ffn_multiple': is required"),
    ("sequence too short", _mutate("fixed.seq_len", 2), "field 'fixed.seq_len': must be >= 3"),
    ("unknown budget", _mutate("budget", {"distill": {"layer_step": 5}}), "field 'budget.distill.layer_step': unknown"),
    ("zero budget", _mutate("budget", {"teacher": {"steps": 0}}), "field 'budget.teacher.steps': must be >= 1"),
    ("budget rate", _mutate("budget", {"distill": {"lr": 0}}), "field 'budget.distill.lr': must be > 0"),
    ("teacher precision", _mutate("budget", {"teacher": {"precision": "fp8"}}), "'fp8' is not allowed"),
    ("vocab size", {**_mutate("fixed.vocab_size", 30522), "vocab": "news-wiki-4k"},
     "fixed.vocab_size': 30522 does not match vocab news-wiki-4k "
                                                        r"\(4,096 pieces\); set it to 4096"),
    ("unknown vocab", _mutate("vocab", "bert-cased"), "'bert-cased' is neither a built-in vocabulary"),
    ("trigram flag", _mutate("fixed.trigram_input", "yes"), "field 'fixed.trigram_input': must be true or false"),
    ("masking span", _mutate("budget", {"teacher": {"masking": {"mean_span": 0.5}}}),
     "field 'budget.teacher.masking': masking: rate must be in \\(0, 1\\), mean_span >= 1"),
    ("masking field", _mutate("budget", {"teacher": {"masking": {"span": 3}}}),
     "field 'budget.teacher.masking': masking must be a mapping of numbers \\(rate, mean_span, max_span\\)"),
    ("masking value", _mutate("budget", {"teacher": {"masking": {"rate": "high"}}}),
     "field 'budget.teacher.masking': masking must be a mapping of numbers"),
]


def test_space_vocab_file_relative_to_space(tmp_path):
    """A space may name its own vocab.txt, relative to the space file; its size must be the space's."""
    import yaml

    from search_spaces.vocab import ASSET_VOCABS

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my-vocab.txt").write_text((ASSET_VOCABS / "news-wiki-4k.txt").read_text())
    raw = {**_mutate("fixed.vocab_size", 4096), "vocab": "sub/my-vocab.txt"}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(raw))
    space = load_space(tmp_path / "space.yaml")
    assert space.vocab == str((tmp_path / "sub" / "my-vocab.txt").resolve())
    assert space.to_dict()["vocab"] == space.vocab and "vocab" not in load_space("mobilebert").to_dict()


@pytest.mark.parametrize("raw,msg", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_space_is_one_clear_error(raw, msg):
    with pytest.raises(UserError, match=msg) as exc:
        parse_space(copy.deepcopy(raw), source="space.yaml")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("space.yaml")


def test_malformed_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nfixed: [1, 2\n")
    with pytest.raises(UserError, match=r"bad.yaml: line \d+ malformed YAML"):
        load_space(p)
    # a key that lost its ':' is named at its own line (YAML only notices on the next one)
    p.write_text("name: x\nfixed:\n  num_layers: 2\n  hidden_size 32\n  embedding_size: 16\n")
    with pytest.raises(UserError, match=r"bad.yaml: line 4 malformed YAML"):
        load_space(p)
    p.write_text("name: x\nfixed:\n  num_layers: 2\n   hidden_size: 32\n")  # one space too many
    with pytest.raises(UserError, match=r"bad.yaml: line 4 malformed YAML"):
        load_space(p)
