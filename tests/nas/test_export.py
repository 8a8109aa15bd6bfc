"""Export: a searched student into a folder stock transformers loads, with the same outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.distill.settings import DEFAULT_SCORE
from nas.records import StudyMeta, TrialRecord
from search_spaces.errors import UserError


@pytest.fixture(scope="module")
def searched(smoke_teacher_dir, tmp_path_factory):
    """A real 1-trial smoke search; the trained student are kept in memory as well (observed, not
    replaced: the real trainer runs)."""
    import optuna

    import nas.distill
    from nas.search import SearchConfig, run_search

    students = {}
    real = nas.distill.distill_candidate

    def observed(c, *args, **kwargs):
        result = real(c, *args, **kwargs)
        students[c.name] = result.student
        return result

    tmp = tmp_path_factory.mktemp("export-search")
    storage = f"sqlite:///{tmp / 'runs' / 'mbnas.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nas.distill, "distill_candidate", observed)
        run_search(SearchConfig(space="smoke", trials=1, storage=storage, teacher=str(smoke_teacher_dir), threads=1,
                                progress=False), log=lambda s: None)
    study = optuna.load_study(study_name="smoke-progressive-mlm", storage=storage)
    return storage, study, students


def _logits(model, seq_len: int) -> torch.Tensor:
    ids = torch.randint(999, model.config.vocab_size, (2, seq_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_stock_transformers_reproduces_the_student(searched, tmp_path):
    from transformers import MobileBertConfig, MobileBertForMaskedLM

    from nas.export import export_trial

    storage, study, students = searched
    res = export_trial(study, tmp_path / "model", pick="most-accurate", storage_url=storage)
    assert sorted(p.name for p in res.out.iterdir()) == ["architecture.json", "config.json", "model.safetensors",
                                                         "vocab.txt"]
    cfg = json.loads((res.out / "config.json").read_text())
    assert cfg["model_type"] == "mobilebert" and cfg["architectures"] == ["MobileBertForMaskedLM"]
    assert "ib_bert_block_qk" not in cfg
    assert isinstance(MobileBertConfig.from_pretrained(res.out), MobileBertConfig)
    assert len((res.out / "vocab.txt").read_text().splitlines()) == 30522

    trial = study.trials[res.trial]
    rec = TrialRecord.from_trial(trial)
    student = students[rec.candidate.name]  # the very module the search trained
    loaded = MobileBertForMaskedLM.from_pretrained(res.out)
    assert torch.allclose(_logits(loaded, rec.candidate.seq_len), _logits(student, rec.candidate.seq_len), atol=1e-5)
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-5

    arch = json.loads((res.out / "architecture.json").read_text())
    meta = StudyMeta.from_study(study)
    assert arch["candidate"] == rec.candidate.to_dict()
    # the folder as ARCH reads architecture.json: the export's sequence length, not config.json's 128
    from search_spaces.arch import resolve_arch
    from search_spaces.ops import count

    assert resolve_arch(str(res.out)) == rec.candidate and count(resolve_arch(str(res.out))).flops == arch["flops"]
    assert arch["score"] == {"name": DEFAULT_SCORE, "value": trial.values[0], "data": meta.score_data}
    assert "held-out" in arch["score"]["data"] and set(arch["scores"]) >= {"mlm_accuracy", "heldout_ce"}
    assert {x["data"] for x in arch["scores"].values()} == {meta.heldout_data}  # each score names its data
    assert arch["latency"]["ms"] == trial.values[1] and arch["latency"]["predicted"] is True
    assert arch["latency"]["profile"] == "pixel4-cpu-tflite" and arch["latency"]["error"] == meta.latency_error
    assert arch["teacher_hash"] == meta.teacher_hash and arch["strategy"] == "progressive"
    assert arch["source"] == {"study": "smoke-progressive-mlm", "trial": res.trial, "storage": storage}


def test_export_cli(searched, tmp_path):
    storage = searched[0]
    exe = Path(sys.executable).with_name("mbnas")
    run = lambda *a: subprocess.run([str(exe), "export", *a], capture_output=True, text=True, timeout=300,  # noqa: E731
                                    cwd=tmp_path, env=os.environ.copy())
    p = run("--study", "smoke-progressive-mlm", "--storage", storage, "--out", "knee")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "reproduces the student" in p.stdout and (tmp_path / "knee" / "model.safetensors").exists()
    # a second export into the same folder is refused, one line, nothing touched; --force replaces it
    (tmp_path / "knee" / "model.tflite").write_bytes(b"an earlier export's model")
    (tmp_path / "knee" / "notes.txt").write_text("mine")
    before = {f.name: f.read_bytes() for f in (tmp_path / "knee").iterdir()}
    p = run("--study", "smoke-progressive-mlm", "--storage", storage, "--out", "knee", "--pick", "fastest")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "is not empty" in p.stderr and "--force" in p.stderr
    assert {f.name: f.read_bytes() for f in (tmp_path / "knee").iterdir()} == before
    p = run("--study", "smoke-progressive-mlm", "--storage", storage, "--out", "knee", "--force")
    assert p.returncode == 0, p.stderr[-2000:]
    left = sorted(f.name for f in (tmp_path / "knee").iterdir())
    assert left == ["architecture.json", "config.json", "model.safetensors", "notes.txt", "vocab.txt"]
    assert (tmp_path / "knee" / "notes.txt").read_text() == "mine"  # not ours: left alone
    from nas.search.storage import load_study, open_storage

    with pytest.raises(UserError, match="no study 'nope' in the storage .studies there: smoke-progressive-mlm"):
        load_study(open_storage(storage), "nope")
    p = run("--study", "smoke-progressive-mlm", "--storage", "sqlite:///typo/mbnas.db", "--out", "x")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr  # one line, and nothing created:
    assert "no study storage at sqlite:///typo/mbnas.db" in p.stderr and not (tmp_path / "typo").exists()


@pytest.mark.parametrize("name", ["mobilebert", "mobilebert-tiny", "bert-base"])
def test_export_reference_config(name, tmp_path):
    from transformers import MobileBertConfig

    from nas.export import export_reference
    from search_spaces.candidate import Candidate
    from search_spaces.references import REFERENCES

    res = export_reference(name, tmp_path)
    cfg = MobileBertConfig.from_pretrained(tmp_path)
    back = Candidate.from_hf_config(cfg, seq_len=128, name=name)
    assert back == REFERENCES[name].candidate.replace(mha_ffn_ratio=None)
    assert res.files == ["config.json", "architecture.json"] and not (tmp_path / "model.safetensors").exists()


def test_export_into_a_symlinked_folder(tmp_path):
    """--out may be a link to a folder elsewhere: the files land in its target, staged beside it."""
    from nas.export import export_reference

    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "disk" / "target")
    export_reference("mobilebert-tiny", tmp_path / "link")
    with pytest.raises(UserError, match="is not empty"):
        export_reference("mobilebert-tiny", tmp_path / "link")
    export_reference("mobilebert-tiny", tmp_path / "link", force=True)
    assert sorted(p.name for p in (tmp_path / "disk" / "target").iterdir()) == ["architecture.json", "config.json"]
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["target"]  # no staging folder left
    assert (tmp_path / "link").is_symlink()


def _fake_study(points):
    """A study holding completed trials at (score, latency) points: for the selection rules only."""
    import optuna

    from nas.records import DIRECTIONS
    from search_spaces import load_space

    space = load_space("smoke")
    c = space.sample(1, seed=0)[0]
    study = optuna.create_study(directions=list(DIRECTIONS))
    meta = StudyMeta(space=space.to_dict(), strategy="progressive", objective="mlm", score_name="mlm_accuracy",
                     score_data="d", latency_profile="p", latency_error="e", teacher_hash="t",
                     reference_point=(0.0, 10.0))
    meta.save(study)
    for i, (s, t) in enumerate(points):
        rec = TrialRecord(candidate=c, params=1, flops=1, latency_ms=t, score=s, weights=f"trial-{i:04d}/m")
        study.add_trial(optuna.trial.create_trial(values=[s, t], user_attrs=rec.to_user_attrs()))
    return study


@pytest.mark.parametrize("how, kwargs, expected", [
    ("knee", dict(pick="knee"), 1),
    ("default", dict(), 1),
    ("fastest", dict(pick="fastest"), 0),
    ("most-accurate", dict(pick="most-accurate"), 2),
    ("under 5 ms", dict(under_ms=5.0), 1),
    ("trial", dict(trial=3), 3),
])
def test_pick(how, kwargs, expected):
    from nas.export import pick_trial

    # fast and poor, the bend, slow and barely better, dominated
    study = _fake_study([(0.10, 1.0), (0.70, 2.0), (0.75, 9.0), (0.60, 8.0)])
    assert pick_trial(study, **kwargs).number == expected


def test_pick_errors():
    from nas.export import pick_trial

    study = _fake_study([(0.10, 1.0)])
    with pytest.raises(UserError, match="fastest: trial 0"):
        pick_trial(study, under_ms=0.5)
    with pytest.raises(UserError, match="no trial 7"):
        pick_trial(study, trial=7)


@pytest.mark.slow
def test_tflite_matches_pytorch(searched, tmp_path):
    pytest.importorskip("litert_torch", reason="the litert extra is not installed")
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from transformers import MobileBertForMaskedLM

    from nas.export import export_trial

    res = export_trial(searched[1], tmp_path, pick="fastest", tflite=True)
    it = Interpreter(model_path=str(tmp_path / "model.tflite"))
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    seq = int(inp["shape"][1])
    ids = np.random.default_rng(0).integers(999, 30000, (1, seq)).astype(inp["dtype"])
    it.set_tensor(inp["index"], ids)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    with torch.no_grad():
        ref = MobileBertForMaskedLM.from_pretrained(tmp_path).eval()(input_ids=torch.tensor(ids).long()).logits.numpy()
    assert "model.tflite" in res.files and np.abs(got - ref).max() < 1e-4
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".part")]


@pytest.mark.slow
def test_export_tflite_cli_prints_no_converter_log(searched, tmp_path):
    """litert-torch logs every conversion stage to fds 1 and 2 (from Python and C++): a user sees the
    export's summary only."""
    pytest.importorskip("litert_torch", reason="the litert extra is not installed")
    exe = Path(sys.executable).with_name("mbnas")
    p = subprocess.run([str(exe), "export", "--study", "smoke-progressive-mlm", "--storage", searched[0], "--out",
                        str(tmp_path / "m"), "--tflite", "--pick", "fastest"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "model.tflite" in p.stdout and (tmp_path / "m" / "model.tflite").stat().st_size > 0
    assert "LiteRT-Torch Convert" not in p.stdout and not p.stderr.strip(), p.stderr  # TensorFlow's start-up lines too
    assert len(p.stdout.strip().splitlines()) == 3, p.stdout  # exported, to, reproduces


def test_a_failed_export_leaves_the_folder_as_it_was(searched, tmp_path, monkeypatch):
    """Files are written beside --out and moved in at the end: a conversion that fails (or Ctrl-C)
    leaves an earlier export whole, and the trial's own run folder is never an --out."""
    import nas.export
    from nas.export import export_trial
    from nas.search.outcomes import trial_views

    storage, study, _ = searched
    export_trial(study, tmp_path / "m", pick="fastest")
    before = {f.name: f.read_bytes() for f in (tmp_path / "m").iterdir()}

    def broken(out, seq_len):
        raise UserError("litert-torch could not convert model.tflite: (injected)")

    monkeypatch.setattr(nas.export, "export_tflite", broken)
    with pytest.raises(UserError, match="injected"):
        export_trial(study, tmp_path / "m", pick="fastest", tflite=True, force=True)
    assert {f.name: f.read_bytes() for f in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left behind

    meta = StudyMeta.from_study(study)
    run = Path(meta.run_dir) / Path(next(v for v in trial_views(study) if v.record and v.record.weights)
                                    .record.weights).parent
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    for out in (run, run.parent, run.parent / "trial-0099", run / "sub"):  # another trial's folder, too
        with pytest.raises(UserError, match="that is in the study's run folder"):
            export_trial(study, out, trial=int(run.name.split("-")[1]), force=True)
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before


def test_a_failed_conversion_is_one_line_after_the_converters_last_lines(tmp_path, capfd):
    pytest.importorskip("litert_torch", reason="the litert extra is not installed")
    from nas.tflite import convert

    class DataDependent(torch.nn.Module):
        def forward(self, x):  # control flow on a value: torch.export cannot trace it
            return x if x.sum() > 0 else -x

    with pytest.raises(UserError, match="litert-torch could not convert bad.tflite: "):
        convert(DataDependent(), (torch.randn(2),), tmp_path / "bad.tflite")
    assert "the converter's last output:" in capfd.readouterr().err and not list(tmp_path.iterdir())


def test_a_failed_conversion_shows_the_converters_last_lines(capfd):
    from latency_models.quiet import quiet_fds

    with pytest.raises(RuntimeError, match="lowering failed"):
        with quiet_fds():
            os.write(2, b"stage 1 ok\nunsupported op aten::frobnicate\n")
            raise RuntimeError("lowering failed")
    err = capfd.readouterr().err
    assert "the converter's last output:" in err and "unsupported op aten::frobnicate" in err
    with quiet_fds():
        os.write(1, b"progress line\n")
    assert "progress line" not in capfd.readouterr().out


@pytest.mark.parametrize("weights", ["../../etc/passwd", "/etc/passwd"])
def test_export_copies_only_weights_inside_the_run_dir(searched, tmp_path, weights):
    """A study in a shared database is data anyone with write access could change: a record naming
    a file outside the study's run dir is refused, not copied into --out."""
    import dataclasses

    import optuna

    from nas.export import export_trial

    _, study, _ = searched
    done = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    rec = dataclasses.replace(TrialRecord.from_trial(done), weights=weights)
    forged = optuna.create_study(storage=f"sqlite:///{tmp_path / 'f.db'}", study_name="f",
                                 directions=study.directions)
    for k, v in study.user_attrs.items():
        forged.set_user_attr(k, v)
    forged.add_trial(optuna.trial.create_trial(params=done.params, distributions=done.distributions,
                                               values=done.values, user_attrs={**done.user_attrs,
                                                                               **rec.to_user_attrs()}))
    with pytest.raises(UserError, match="names weights outside the study's run dir"):
        export_trial(forged, tmp_path / "out", trial=0)
    assert not (tmp_path / "out").exists()


def test_export_of_a_small_vocabulary_space_fills_masks_in_stock_transformers(tmp_path):
    """A space in news-wiki-4k (4,096 pieces): teacher, one-trial search, export. The export's own
    check fed ids past the vocabulary (a fixed 30,000 upper bound) and failed; its vocab.txt must be
    the space's, and transformers' fill-mask pipeline must read the folder as it is."""
    import optuna
    import yaml
    from transformers import pipeline

    from nas.export import export_trial
    from nas.search import SearchConfig, run_search
    from nas.teacher import recipe_for, train_teacher
    from search_spaces import load_space

    raw = yaml.safe_load(Path(load_space("smoke").source).read_text())
    raw["fixed"]["vocab_size"], raw["vocab"] = 4096, "news-wiki-4k"
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(raw))
    space = load_space(tmp_path / "small.yaml")
    t = train_teacher(space, recipe_for(space), out=tmp_path / "teachers", log=lambda s: None, command="test")
    assert t.vocab.name == "news-wiki-4k" and t.candidate.vocab_size == 4096
    storage = f"sqlite:///{tmp_path / 'runs' / 'mbnas.db'}"
    run_search(SearchConfig(space=str(tmp_path / "small.yaml"), trials=1, storage=storage, teacher=str(t.path),
                            threads=1, progress=False), log=lambda s: None)
    study = optuna.load_study(study_name="smoke-progressive-mlm", storage=storage)
    res = export_trial(study, tmp_path / "model", storage_url=storage)
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-5
    assert (res.out / "vocab.txt").read_text() == t.vocab.path.read_text()
    fill = pipeline("fill-mask", model=str(res.out))
    out = fill("the market [MASK] sharply")
    assert len(out) == 5 and all(0.0 <= r["score"] <= 1.0 for r in out) and fill.tokenizer.vocab_size == 4096
