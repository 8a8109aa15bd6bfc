"""Teacher pre-training, pinning and reuse; every transfer strategy on the real smoke teacher."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from nas.distill.settings import DEFAULT_SCORE
from search_spaces import load_space
from search_spaces.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher(smoke_teacher_dir):
    from nas.teacher import load_teacher

    return load_teacher(load_space("smoke"), path=smoke_teacher_dir)


def test_teacher_files_and_hash(smoke_teacher_dir, teacher):
    meta = json.loads((smoke_teacher_dir / "teacher.json").read_text())
    assert {"sha256", "data_hash", "recipe", "heldout", "command"} <= set(meta)
    assert smoke_teacher_dir.name == f"smoke-{meta['sha256'][:12]}" and teacher.hash == meta["sha256"][:12]
    # pre-training learned something: better than predicting a frequent token (~5.5%, docs/FACTS.md section 6)
    assert meta["heldout"]["heldout_ce"] < 10.3  # ln(30522) = 10.33: uniform guessing


def test_corrupt_teacher_refused(smoke_teacher_dir, tmp_path):
    from nas.teacher import load_teacher_dir

    bad = tmp_path / "t"
    shutil.copytree(smoke_teacher_dir, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the recorded"):
        load_teacher_dir(bad)


@pytest.mark.parametrize("content,match", [("{bad", "teacher.json: not valid JSON"),
                                           ("{}", "teacher.json: not a teacher record")])
def test_a_damaged_teacher_record_is_one_line(smoke_teacher_dir, tmp_path, content, match):
    from nas.teacher import load_teacher_dir

    bad = tmp_path / "t"
    shutil.copytree(smoke_teacher_dir, bad)
    (bad / "teacher.json").write_text(content)
    with pytest.raises(UserError, match=match):
        load_teacher_dir(bad)


def test_teacher_of_wrong_space_refused(smoke_teacher_dir):
    from nas.teacher import load_teacher

    with pytest.raises(UserError, match="does not fit the space's teacher"):
        load_teacher(load_space("demo"), path=smoke_teacher_dir)


def test_teacher_keeps_its_vocab_and_another_vocab_refuses_it(smoke_teacher_dir, tmp_path):
    """A teacher folder carries the vocabulary its ids are in; a space of the same shape in another
    vocabulary (same size, two pieces swapped) neither finds nor accepts it, and a changed copy is refused."""
    import shutil
    from pathlib import Path

    import yaml

    from nas.data.tokenizer import get_vocab
    from nas.teacher import find_teacher, load_teacher, load_teacher_dir

    from nas.teacher import describe

    t = load_teacher_dir(smoke_teacher_dir)
    assert t.vocab.sha256 == get_vocab("bert-uncased").sha256 and t.meta["vocab"] == "bert-uncased"
    floor = t.meta["heldout"]["blocks_skipped"]  # what the embeddings and head give alone
    assert 0 <= floor["mlm_accuracy"] <= 1 and floor["heldout_ce"] > 0 and "with its blocks skipped" in describe(t)
    lines = get_vocab("bert-uncased").path.read_text().splitlines()
    lines[2000], lines[2001] = lines[2001], lines[2000]
    (tmp_path / "swapped.txt").write_text("\n".join(lines) + "\n")
    raw = yaml.safe_load((Path(load_space("smoke").source)).read_text())
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**raw, "vocab": "swapped.txt"}))
    other = load_space(tmp_path / "space.yaml")
    assert find_teacher(other) is None or find_teacher(other).parent != smoke_teacher_dir.parent
    with pytest.raises(UserError, match="reads BERT uncased WordPiece .* its ids would mean other word pieces"):
        load_teacher(other, path=smoke_teacher_dir)
    copy = tmp_path / "copy"
    shutil.copytree(smoke_teacher_dir, copy)
    (copy / "vocab.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="vocab.txt: sha256 .* does not match the recorded"):
        load_teacher_dir(copy).vocab


def test_missing_teacher_message(tmp_path, monkeypatch):
    from nas import teacher as tmod

    monkeypatch.setenv("MBNAS_CACHE", str(tmp_path))
    monkeypatch.setattr(tmod, "ASSET_DIR", tmp_path / "none")
    with pytest.raises(UserError, match="run 'mbnas teacher train --space smoke'"):
        tmod.load_teacher(load_space("smoke"))


@pytest.mark.parametrize("strategy", ["progressive", "joint", "auxiliary", "theseus", "theseus-constant", "none"])
def test_strategy_trains_and_scores(teacher, strategy):
    from nas.distill import DistillSettings, distill_candidate

    c = load_space("smoke").sample(1, seed=1)[0]
    seen = []
    r = distill_candidate(c, teacher, DistillSettings.for_space("smoke", strategy=strategy),
                          on_layer=lambda l, v: seen.append(l))
    assert 0.0 <= r.scores["mlm_accuracy"] <= 1.0 and r.scores["heldout_ce"] > 0
    assert r.score == r.scores[DEFAULT_SCORE] and "held-out" in r.score_data  # the default score
    if strategy in ("progressive", "joint", "auxiliary"):
        assert seen == [0, 1] and len(r.layer_losses) == 2
    else:
        assert r.layer_losses == []


def test_early_stop_from_callback(teacher):
    from nas.distill import DistillSettings, EarlyStop, distill_candidate

    c = load_space("smoke").sample(1, seed=2)[0]

    def stop(layer, loss):
        raise EarlyStop(f"layer {layer} loss {loss:.2f} too high")

    with pytest.raises(EarlyStop, match="layer 0"):
        distill_candidate(c, teacher, DistillSettings.for_space("smoke"), on_layer=stop)


def test_divergence_is_reported(teacher):
    from nas.distill import DistillSettings, Diverged, distill_candidate

    c = load_space("smoke").sample(1, seed=3)[0]
    with pytest.raises(Diverged):
        distill_candidate(c, teacher, DistillSettings.for_space("smoke", lr=1e12))


def test_saved_student_loads_in_stock_transformers(teacher, tmp_path):
    import torch
    from transformers import MobileBertForMaskedLM

    from nas.distill import DistillSettings, distill_candidate

    c = load_space("smoke").sample(1, seed=4)[0]
    r = distill_candidate(c, teacher, DistillSettings.for_space("smoke"))
    r.save(tmp_path)
    stock = MobileBertForMaskedLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(1000, 2000, (2, 16))
    r.student.eval()
    with torch.no_grad():
        assert torch.allclose(stock(input_ids=ids).logits, r.student(input_ids=ids).logits, atol=1e-5)


def test_distill_cli_json(mbnas, smoke_teacher_dir, tmp_path):
    c = load_space("smoke").sample(1, seed=5)[0]
    path = c.save(tmp_path / "c.json")
    code, out, err = mbnas("distill", "--space", "smoke", "--arch", str(path), "--teacher", str(smoke_teacher_dir),
                           "--strategy", "progressive", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert {"mlm_accuracy", "seconds", "strategy"} <= set(d) and d["strategy"] == "progressive"
    assert "outside space" not in err  # a candidate the space samples draws no note
    assert d["precision"] == "fp32"  # auto on a CPU


def test_distill_in_bf16_scores_as_fp32_does(mbnas, teacher, smoke_teacher_dir, tmp_path):
    """--precision bf16: every training step runs under bf16 autocast (on a CPU too), the student is
    kept and scored in fp32, and its scores are those of fp32 training within far less than the
    spread between seeds (block_fidelity 0.65 / 0.70 for seeds 0 / 1). With autocast's weight cache
    on, the same run scored teacher_kl 1.15 against 0.04: the forward passes used stale weights."""
    import torch
    from transformers import MobileBertForMaskedLM

    from nas.device import cpu_bf16_native
    from nas.distill import DistillSettings, distill_candidate

    c = load_space("smoke").sample(1, seed=5)[0]
    fp32 = distill_candidate(c, teacher, DistillSettings.for_space("smoke"))
    assert fp32.precision == "fp32"  # auto, on a CPU
    for strategy in ("progressive", "theseus"):
        code, out, err = mbnas("distill", "--space", "smoke", "--arch", str(c.save(tmp_path / "c.json")),
                               "--teacher", str(smoke_teacher_dir), "--strategy", strategy, "--precision", "bf16",
                               "--out", str(tmp_path / strategy), "--json")
        assert code == 0, err
        assert ("emulates bf16" in err) != cpu_bf16_native()
        d = json.loads(out)
        assert d["precision"] == "bf16"
        if strategy == "progressive":
            assert abs(d["block_fidelity"] - fp32.scores["block_fidelity"]) < 0.02
            assert abs(d["teacher_kl"] - fp32.scores["teacher_kl"]) < 0.02
    saved = MobileBertForMaskedLM.from_pretrained(tmp_path / "progressive")
    assert {p.dtype for p in saved.parameters()} == {torch.float32}


def test_a_candidate_outside_the_space_is_trained_with_a_note(mbnas, smoke_teacher_dir, tmp_path):
    """distill trains any shape the teacher fits, but says when a search would never propose it."""
    space = load_space("smoke")
    c = space.sample(1, seed=5)[0]
    assert space.outside(c) == []
    odd = c.replace(intra_size=12)
    assert space.outside(odd) and "intra_size 12 is not among the space's values" in space.outside(odd)[0]
    code, out, err = mbnas("distill", "--space", "smoke", "--arch", str(odd.save(tmp_path / "odd.json")),
                           "--teacher", str(smoke_teacher_dir), "--layer-steps", "1", "--pd-steps", "1", "--json")
    assert code == 0, err
    assert f"note: {odd.label} is outside space 'smoke' (intra_size 12" in err
    assert json.loads(out)["candidate"] == odd.label


def test_distill_out_never_replaces_an_earlier_student_without_force(mbnas, smoke_teacher_dir, tmp_path):
    (tmp_path / "stud").mkdir()
    (tmp_path / "stud" / "model.safetensors").write_bytes(b"an earlier student")
    code, _, err = mbnas("distill", "--space", "smoke", "--arch", "x.json", "--teacher", str(smoke_teacher_dir),
                         "--out", str(tmp_path / "stud"))
    assert code == 2 and "holds files" in err and "--force" in err  # refused before anything is read
    assert (tmp_path / "stud" / "model.safetensors").read_bytes() == b"an earlier student"


@pytest.mark.parametrize("cmd", [("distill", "--space", "smoke", "--arch", "x.json"), ("teacher", "train"),
                                 ("search",), ("space", "sample", "smoke"), ("latency", "dataset", "--space", "smoke",
                                                                             "-n", "1", "--out", "x.csv")])
@pytest.mark.parametrize("value", ["-7", "99999999999999999999"])
def test_a_seed_out_of_range_is_one_line(mbnas, cmd, value):
    code, _, err = mbnas(*cmd, "--seed", value)
    assert code == 2 and "expected a seed from 0 to 4294967295" in err and len(err.strip().splitlines()) == 1


def test_distill_cli_rejects_foreign_arch(mbnas, smoke_teacher_dir):
    code, out, err = mbnas("distill", "--space", "smoke", "--arch", "mobilebert", "--teacher", str(smoke_teacher_dir))
    assert code == 2 and "does not fit space 'smoke'" in err and len(err.strip().splitlines()) == 1


def test_block_fidelity_reads_the_blocks(teacher):
    """block_fidelity: the teacher against itself scores 1; students inherit the same embeddings and
    MLM head, so only their blocks tell them apart: fresh blocks score far below transferred ones.
    The cached teacher states (fp16) and a teacher pass give the same score."""
    from nas.distill import DistillSettings, distill_candidate
    from nas.distill.teacher_cache import teacher_cache
    from nas.distill.train import init_student
    from nas.mlm import evaluate_mlm

    s = DistillSettings.for_space("smoke")
    cache = teacher_cache(teacher, s)
    own = evaluate_mlm(teacher.model, cache.heldout, teacher=teacher.model, teacher_hidden=cache.heldout_hidden)
    assert own.block_fidelity == pytest.approx(1.0, abs=0.01)
    c = load_space("smoke").sample(1, seed=1)[0]
    fresh = init_student(c, teacher, from_teacher=True, seed=0)
    cached = evaluate_mlm(fresh, cache.heldout, teacher=teacher.model, teacher_hidden=cache.heldout_hidden)
    direct = evaluate_mlm(fresh, cache.heldout, teacher=teacher.model)
    assert cached.block_fidelity == pytest.approx(direct.block_fidelity, abs=0.01)
    trained = distill_candidate(c, teacher, s.replace(layer_steps=40, pd_steps=0))
    assert trained.scores["block_fidelity"] > cached.block_fidelity + 0.2, (trained.scores, cached)
    # the no-teacher baseline is scored too (its blocks never saw the teacher)
    assert "block_fidelity" in distill_candidate(c, teacher, s.replace(strategy="none")).scores


def test_transfer_attention_maps_are_distributions(teacher):
    """Layer-wise transfer compares attention *distributions*: in training mode (dropout 0.1 in the
    config) the maps it reads sum to 1 over the keys with no dropped zeros, and the stages after
    it still train with the config's attention dropout."""
    import torch

    from nas.distill.train import _forward_upto, init_student

    c = load_space("smoke").sample(1, seed=1)[0]
    student = init_student(c, teacher, from_teacher=True, seed=0).train()
    assert student.config.attention_probs_dropout_prob > 0
    ids = torch.randint(1000, 2000, (4, c.seq_len))
    _forward_upto(student, ids, c.num_layers - 1)
    for maps in student._mbnas_attn:  # (B, heads, T, T)
        assert torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-5) and bool((maps > 0).all())
    student.mobilebert(input_ids=ids)  # an ordinary training forward: dropout is back
    assert any(bool((maps == 0).any()) for maps in student._mbnas_attn)


# ------------------------------------------------------------------------------------------------
# the user's own data: --corpus and --task-csv
def _notes(path, n: int = 200, topic: str = "river"):
    """A small user corpus: n paragraphs (documents), enough held-out text for smoke windows."""
    path.write_text("\n\n".join(f"Note {i}: the quick brown fox jumps over {i} lazy dogs by the {topic}, "
                                f"then rests under tree number {i % 7}." for i in range(n)), encoding="utf-8")
    return path


@pytest.mark.parametrize("cmd", [("teacher", "train", "--space", "smoke", "--steps", "40", "--out", "t"),
                                 ("search", "--space", "smoke", "--trials", "2", "--storage", "sqlite:///s.db")])
def test_a_corpus_too_small_for_one_held_out_window_is_refused_before_training(mbnas, cmd, tmp_path,
                                                                               smoke_teacher_dir):
    """Teacher training ran every step and then failed; a search ended in a traceback after three
    failed trials (or exited 0 with two). Both now refuse before the first step, in one line."""
    few = tmp_path / "few.txt"  # 60 notes of ~4 tokens: a few held out, far from a window of 32
    few.write_text("\n\n".join(f"note {i}." for i in range(60)), encoding="utf-8")
    teacher = ("--teacher", str(smoke_teacher_dir)) if cmd[0] == "search" else ()
    code, out, err = mbnas(*cmd, *teacher, "--corpus", str(few), "--threads", "1")
    assert code == 2 and "the held-out split of the corpus (1 user file(s) few.txt" in err, (out, err)
    assert "fewer than one window of 32" in err and len(err.strip().splitlines()) == 1
    assert "step" not in out and not (tmp_path / "t").exists()
    if (tmp_path / "s.db").exists():  # the storage may be opened first; no study is made in it
        import optuna

        assert optuna.study.get_all_study_names(f"sqlite:///{tmp_path / 's.db'}") == []


def test_a_teacher_batch_beyond_memory_is_refused_and_a_large_one_noted(mbnas, tmp_path):
    code, _, err = mbnas("teacher", "train", "--space", "smoke", "--steps", "4", "--warmup", "50", "--out", "t")
    assert code == 2 and "--warmup 50 must be below the 4 training steps" in err  # was replaced by 1, silently
    code, _, err = mbnas("teacher", "train", "--space", "smoke", "--steps", "2", "--batch-size", "1000000",
                         "--corpus", str(_notes(tmp_path / "n.txt")), "--out", "t")
    assert code == 2 and "a teacher batch of 1000000 sequences: the masked-LM logits alone need about" in err, err
    code, out, err = mbnas("teacher", "train", "--space", "smoke", "--steps", "2", "--batch-size", "2000",
                           "--corpus", str(_notes(tmp_path / "n.txt")), "--out", "t", "--threads", "1")
    assert code == 0, err
    assert "note: a batch of 2000 sequences is more than the" in out


def _task(path, rows: int = 120):
    lines = ["text,label"] + [f"\"review {i}: {'a fine, warm film' if i % 2 else 'a dull, cold film'}\",{i % 2}"
                              for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_distill_on_the_users_corpus(mbnas, smoke_teacher_dir, tmp_path):
    """Transfer batches and held-out scores come from the user's files alone; the teacher was
    pre-trained on the built-in corpus, which the command says."""
    c = load_space("smoke").sample(1, seed=5)[0]
    code, out, err = mbnas("distill", "--space", "smoke", "--arch", str(c.save(tmp_path / "c.json")),
                           "--teacher", str(smoke_teacher_dir), "--corpus", str(_notes(tmp_path / "notes.txt")),
                           "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["score_data"].startswith("held-out split: 1 user file(s) notes.txt, held-out 5%")
    # smoke's budget scores 4 batches of 32 windows at most; the data says how many it read
    assert re.search(r"; scored on \d+ windows of 32 tokens spread over it, [\d,]+ masked positions$", d["score_data"])
    assert "news" not in d["score_data"]
    assert err.startswith(f"note: teacher {d['teacher']} was pre-trained on ") and "--corpus" in err


def test_distill_downstream_on_the_users_csv(teacher, tmp_path):
    from nas.distill import DistillSettings, distill_candidate

    c = load_space("smoke").sample(1, seed=6)[0]
    s = DistillSettings.for_space("smoke", objective="downstream", task_csv=str(_task(tmp_path / "mine.csv")))
    r = distill_candidate(c, teacher, s)
    assert r.score_name == "downstream_accuracy" and 0.0 <= r.score <= 1.0
    assert r.score_data.startswith("user data set mine.csv: 120 sentences, labels {0: 60, 1: 60}")
    # next to the score, what always answering the commonest class would score on the same sentences
    m = re.search(r"; always predicting the commonest class scores (0\.\d{4}) there$", r.score_data)
    assert m and 0.5 <= float(m.group(1)) < 1.0
    # every other score was measured on held-out text, and says so
    assert r.data_of("downstream_accuracy") == r.score_data and "held-out" in r.heldout_data
    assert {r.data_of(k) for k in r.scores if k != "downstream_accuracy"} == {r.heldout_data}


def test_distill_text_names_the_data_of_each_score(mbnas, smoke_teacher_dir, tmp_path):
    arch = load_space("smoke").sample(1, seed=5)[0].save(tmp_path / "c.json")
    code, out, err = mbnas("distill", "--space", "smoke", "--arch", str(arch), "--teacher", str(smoke_teacher_dir),
                           "--objective", "downstream", "--task-csv", str(_task(tmp_path / "mine.csv")),
                           "--layer-steps", "2", "--pd-steps", "2")
    assert code == 0, err
    lines = out.splitlines()
    data_lines = [i for i, line in enumerate(lines) if line.startswith("  measured on ")]
    assert len(data_lines) == 2, out  # the masked-LM scores' held-out text, then the task's dev split
    assert "held-out" in lines[data_lines[0]] and "mine.csv" not in lines[data_lines[0]]
    assert lines[data_lines[1] - 1].split()[0] == "downstream_accuracy" and "mine.csv" in lines[data_lines[1]]
    assert lines[data_lines[0] - 1].split()[0] != "downstream_accuracy"


def test_fine_tune_leaves_the_student_and_fails_when_it_diverges(teacher, tmp_path):
    """The fine-tune's classifier (3 labels here) does not rewrite the student's config, which is
    what export writes. NaN logits argmax to class 0: without the check, a diverged fine-tune
    scored the share of label 0 and the trial counted as complete."""
    from nas.distill import DistillSettings
    from nas.distill.downstream import evaluate_downstream
    from nas.distill.train import Diverged, init_student

    c = load_space("smoke").sample(1, seed=6)[0]
    s = DistillSettings.for_space("smoke", objective="downstream", task_csv=str(_task(tmp_path / "mine.csv")))
    student = init_student(c, teacher, from_teacher=True, seed=0)
    three = tmp_path / "three.csv"
    three.write_text("text,label\n" + "".join(f"sentence number {i} is here,{i % 3}\n" for i in range(60)))
    before = student.config.to_dict()
    acc, _ = evaluate_downstream(student, c, s.replace(downstream_steps=2), teacher.vocab, str(three))
    assert 0.0 <= acc <= 1.0 and student.config.to_dict() == before
    with pytest.raises(Diverged, match="downstream fine-tuning"):
        evaluate_downstream(student, c, s.replace(downstream_lr=1e30), teacher.vocab, s.task_csv)


@pytest.mark.parametrize(("extra", "content", "msg"), [
    ((), "text,label\n\"ok\",1\n\"bad\",x\n", "mine.csv:3: label 'x' is not a non-negative integer"),
    (("--objective", "mlm"), None, "a task is scored only with --objective downstream"),
])
def test_distill_checks_the_users_csv_before_training(mbnas, smoke_teacher_dir, tmp_path, extra, content, msg):
    csv = tmp_path / "mine.csv"
    csv.write_text(content, encoding="utf-8") if content else _task(csv)
    arch = load_space("smoke").sample(1, seed=5)[0].save(tmp_path / "c.json")
    code, out, err = mbnas("distill", "--space", "smoke", "--arch", str(arch), "--teacher", str(smoke_teacher_dir),
                           "--objective", "downstream", *extra, "--task-csv", str(csv))
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_teacher_train_does_not_reuse_a_teacher_of_other_text(teacher, tmp_path):
    from nas.cli.teacher import _not_as_asked

    assert _not_as_asked(teacher, {}, None) is None  # a bare 'teacher train' reuses it
    assert _not_as_asked(teacher, {"steps": teacher.meta["recipe"]["steps"]}, None) is None
    assert "trained with steps" in _not_as_asked(teacher, {"steps": 1}, None)
    assert "not on the --corpus files" in _not_as_asked(teacher, {}, [_notes(tmp_path / "n.txt")])


def test_search_study_is_bound_to_the_users_data(smoke_teacher_dir, tmp_path):
    """The study records the user's data by content: same files elsewhere resume, changed ones do not."""
    from nas.search.runner import SearchConfig, prepare

    notes = _notes(tmp_path / "notes.txt")

    def open_study(path):
        cfg = SearchConfig(space="smoke", storage=f"sqlite:///{tmp_path / 's.db'}", teacher=str(smoke_teacher_dir),
                           data={"corpus": (str(path),)}, progress=False)
        return prepare(cfg, log=lambda line: None).meta

    meta = open_study(notes)
    assert meta.user_data.startswith("corpus: 1 user file(s)") and "token sha256" in meta.user_data
    moved = tmp_path / "elsewhere" / "notes.txt"
    moved.parent.mkdir()
    moved.write_bytes(notes.read_bytes())
    assert open_study(moved).user_data == meta.user_data
    _notes(notes, topic="harbour")
    with pytest.raises(UserError, match="was created with user_data"):
        open_study(notes)


# ------------------------------------------------------------------------------------------------
# a teacher trained elsewhere: mbnas teacher import
def test_import_a_transformers_checkpoint(mbnas, teacher, tmp_path):
    """A stock save_pretrained folder is pinned by hash, scored, and gives the same outputs."""
    import torch

    from nas.teacher import load_teacher_dir

    teacher.model.save_pretrained(tmp_path / "ckpt")  # what a training script elsewhere writes
    code, out, err = mbnas("teacher", "import", str(tmp_path / "ckpt"), "--space", "smoke",
                           "--out", str(tmp_path / "teachers"))
    assert code == 0, err
    assert f"imported from {tmp_path / 'ckpt'}" in out and "held-out masked-token accuracy" in out
    (folder,) = (tmp_path / "teachers").iterdir()
    pinned = load_teacher_dir(folder, expect=load_space("smoke").teacher)
    ids = torch.randint(1000, 2000, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(pinned.model(input_ids=ids).logits, teacher.model(input_ids=ids).logits)
    assert pinned.meta["heldout"]["mlm_accuracy"] == pytest.approx(teacher.meta["heldout"]["mlm_accuracy"], abs=1e-6)
    # the same checkpoint imported again (another process) is the same teacher: the name is the
    # weights' hash, and the file used to differ in its header's order from process to process
    code, out, err = mbnas("teacher", "import", str(tmp_path / "ckpt"), "--space", "smoke",
                           "--out", str(tmp_path / "again"))
    assert code == 0, err
    assert [p.name for p in (tmp_path / "again").iterdir()] == [folder.name]


def test_import_refuses_pickles_and_other_shapes(teacher, tmp_path):
    from nas.teacher import import_teacher

    space = load_space("smoke")
    pickled = tmp_path / "pickled"
    teacher.model.save_pretrained(pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(UserError, match="pytorch_model.bin is not loaded: it can run code"):
        import_teacher(space, pickled, out=tmp_path / "t")
    from nas.models import build_masked_lm

    build_masked_lm(space.sample(1, seed=1)[0]).save_pretrained(tmp_path / "student")
    with pytest.raises(UserError, match="does not fit space 'smoke''s teacher"):
        import_teacher(space, tmp_path / "student", out=tmp_path / "t")
    junk = tmp_path / "junk"
    teacher.model.save_pretrained(junk)
    (junk / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="model.safetensors: not a readable safetensors file"):
        import_teacher(space, junk, out=tmp_path / "t")
    # the config fits but a tensor does not: the error names it and both shapes
    from safetensors.torch import load_file, save_file

    bent = tmp_path / "bent"
    teacher.model.save_pretrained(bent)
    tensors = load_file(bent / "model.safetensors")
    name = "mobilebert.encoder.layer.1.intermediate.dense.weight"
    tensors[name] = tensors[name][:-1].contiguous()
    save_file(tensors, bent / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match=rf"'{name}' is \[127, 64\] in the file, \[128, 64\] in the model"):
        import_teacher(space, bent, out=tmp_path / "t")
    assert not (tmp_path / "t").exists()  # nothing stored


def test_teacher_outputs_past_the_budget_are_recomputed(teacher, monkeypatch):
    """Paper-scale transfer sets do not fit in memory (~420 GB): batches past
    MBNAS_TEACHER_CACHE_GB are a teacher pass when read, the same tensors as the stored ones, and a
    distillation with nothing kept scores exactly as one with everything kept."""
    import torch

    from nas.distill import DistillSettings, distill_candidate
    from nas.distill.teacher_cache import TeacherOutputs, teacher_cache
    from search_spaces.errors import UserError

    s = DistillSettings.for_space("smoke").replace(layer_steps=3, pd_steps=3, transfer_batches=3)
    kept = teacher_cache(teacher, s).outputs
    assert kept.kept == 0 and len(kept) == 3  # computed when a step first reads them
    for i in range(3):
        kept[i]
    assert kept.kept == 3 and kept.passes == 3
    kept[4]  # batch 4 of a 3-batch pool is batch 1: stored, no pass
    assert kept.passes == 3
    first_only = TeacherOutputs(teacher.model, teacher_cache(teacher, s).transfer, "cpu",
                                budget_bytes=kept[0][0].nbytes + kept[0][1].nbytes)
    for i in range(3):
        for a, b in zip(kept[i], first_only[i]):
            assert torch.equal(a, b)
    assert first_only.kept == 1
    first_only[2]
    assert first_only.passes == 3  # the last one read is remembered
    first_only[1]
    assert first_only.passes == 4
    c = load_space("smoke").sample(1, seed=2)[0]
    full = distill_candidate(c, teacher, s)
    monkeypatch.setenv("MBNAS_TEACHER_CACHE_GB", "0")
    assert teacher_cache(teacher, s).outputs.kept == 0
    assert distill_candidate(c, teacher, s).scores == full.scores
    monkeypatch.setenv("MBNAS_TEACHER_CACHE_GB", "lots")
    with pytest.raises(UserError, match="MBNAS_TEACHER_CACHE_GB='lots'"):
        teacher_cache(teacher, s)


def test_teacher_import_checks_out_before_scoring(mbnas, tmp_path):
    (tmp_path / "afile.txt").write_text("notes")
    code, _, err = mbnas("teacher", "import", str(tmp_path / "nowhere"), "--space", "smoke", "--out",
                         str(tmp_path / "afile.txt"))
    assert code == 2 and "afile.txt: it is a file, not a folder" in err


# ------------------------------------------------------------------------------------------------
# the training recipe (recipe 2): fresh batches, a schedule per stage, Theseus as published


def test_consecutive_steps_see_fresh_windows_and_masks(teacher):
    """Step t reads transfer batch t: new windows and new masks every step (dynamic masking), the
    same stream for every candidate of a search; a fixed pool (recipe 1) cycles."""
    import torch

    from nas.distill import DistillSettings
    from nas.distill.teacher_cache import teacher_cache

    s = DistillSettings.for_space("smoke")
    stream = teacher_cache(teacher, s).transfer
    assert len(stream) == 2 * s.layer_steps + s.pd_steps  # one batch per optimiser step
    a, b = stream[0], stream[1]
    assert not torch.equal(a.input_ids, b.input_ids) and not torch.equal(a.labels != -100, b.labels != -100)
    assert torch.equal(stream[0].input_ids, a.input_ids) and torch.equal(stream[0].labels, a.labels)
    pool = teacher_cache(teacher, s.replace(transfer_batches=3)).transfer
    assert len(pool) == 3 and torch.equal(pool[3].input_ids, pool[0].input_ids)


def test_every_stage_warms_up_and_decays():
    """The learning rate at step 0 and at the last step of a stage, and a new phase's own warm-up
    with the optimiser state kept (TF1's progressive transfer)."""
    import torch

    from nas.distill.stage import Stage, lr_factor

    assert lr_factor(0, 60, 0.1) == pytest.approx(1 / 7) and lr_factor(6, 60, 0.1) == 1.0
    assert lr_factor(59, 60, 0.1) == pytest.approx(1 / 54)
    assert lr_factor(0, 60, 0.0) == 1.0 and lr_factor(0, 1, 0.1) == 1.0
    w = torch.nn.Parameter(torch.ones(3))
    stage = Stage([{"params": [w]}], 1e-2, steps=10, warmup=0.1)
    seen = []
    for _ in range(10):
        stage.step((w ** 2).sum(), "test")
        seen.append(stage.opt.param_groups[0]["lr"])
    assert seen[0] == pytest.approx(5e-3) and seen[1] == pytest.approx(1e-2) and seen[-1] == pytest.approx(1e-2 / 9)
    state = stage.opt.state[w]["exp_avg"].clone()
    stage.phase([2e-2], steps=4)
    stage.step((w ** 2).sum(), "test")
    assert stage.opt.param_groups[0]["lr"] == pytest.approx(1e-2)  # 2e-2 x 1/2: a new warm-up
    assert not torch.equal(stage.opt.state[w]["exp_avg"], state) and stage.opt.state[w]["step"] == 11


@pytest.mark.parametrize("release", ["tf1", "tf2"])
def test_progressive_follows_the_release_asked_for(teacher, release):
    """tf1 freezes the embeddings during the layer-wise stage; tf2 trains them. The MLM head has no
    layer-wise loss in either."""
    import torch

    from nas.distill import DistillSettings
    from nas.distill.teacher_cache import teacher_cache
    from nas.distill.train import _progressive, init_student

    s = DistillSettings.for_space("smoke", layer_steps=3, layerwise_release=release)
    c = load_space("smoke").sample(1, seed=1)[0]
    student = init_student(c, teacher, from_teacher=True, seed=0)
    emb = student.mobilebert.embeddings.word_embeddings.weight.clone()
    _progressive(student, teacher, teacher_cache(teacher, s), s, None, "cpu")
    same = torch.equal(student.mobilebert.embeddings.word_embeddings.weight, emb)
    assert same == (release == "tf1")


def test_theseus_trains_the_successors_alone_from_their_predecessors(teacher):
    """BERT-of-Theseus as published: predecessors, embeddings and MLM head stay bit-identical; the
    successors start from the predecessors' weights where shapes allow (a student of the teacher's
    shape starts as the teacher, one narrower from its inter-block-width tensors)."""
    import torch

    from nas.distill import DistillSettings, distill_candidate
    from nas.distill.train import copy_predecessors, init_student

    space = load_space("smoke")
    t_state = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    twin = init_student(space.teacher, teacher, from_teacher=True, seed=0)
    assert copy_predecessors(twin, teacher)[0] == copy_predecessors(twin, teacher)[1]
    for a, b in zip(twin.mobilebert.encoder.layer.parameters(), teacher.model.mobilebert.encoder.layer.parameters()):
        assert torch.equal(a, b)
    c = space.sample(1, seed=1)[0]
    copied, total = copy_predecessors(init_student(c, teacher, from_teacher=True, seed=0), teacher)
    assert 0 < copied < total
    r = distill_candidate(c, teacher, DistillSettings.for_space("smoke", strategy="theseus"))
    for k, v in r.student.state_dict().items():
        if k.startswith("mobilebert.embeddings.") or k.startswith("cls."):
            assert torch.equal(v, t_state[k]), k
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, t_state[k]), k
    blocks = r.student.mobilebert.encoder.layer.state_dict()
    fresh = init_student(c, teacher, from_teacher=True, seed=0).mobilebert.encoder.layer.state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in blocks.items())


def test_the_no_teacher_baseline_inherits_the_embeddings_and_head(teacher):
    """'none' isolates what layer-wise transfer adds: it starts from the teacher's embeddings and MLM
    head (and trains them), with fresh blocks."""
    import torch

    from nas.distill import DistillSettings, distill_candidate
    from nas.distill.train import init_student

    c = load_space("smoke").sample(1, seed=1)[0]
    s = DistillSettings.for_space("smoke", strategy="none", layer_steps=1, pd_steps=0)
    start = init_student(c, teacher, from_teacher=True, seed=0)
    r = distill_candidate(c, teacher, s)
    emb = teacher.model.mobilebert.embeddings.word_embeddings.weight
    assert torch.equal(start.mobilebert.embeddings.word_embeddings.weight, emb)
    moved = (r.student.mobilebert.embeddings.word_embeddings.weight - emb).abs().max().item()
    assert 0 < moved < 0.05  # trained from the teacher's, two steps away


def test_teacher_outputs_spilled_to_files_are_read_back(teacher, monkeypatch, tmp_path):
    """MBNAS_TEACHER_SPILL_DIR: outputs written as .npy are what a teacher pass gives, read back by a
    new cache (another process) without a pass, and a distillation scores exactly the same."""
    import torch

    from nas.distill import DistillSettings, distill_candidate
    from nas.distill import teacher_cache as tc

    s = DistillSettings.for_space("smoke").replace(layer_steps=2, pd_steps=2)
    c = load_space("smoke").sample(1, seed=2)[0]
    plain = distill_candidate(c, teacher, s)
    expected = [tc.teacher_cache(teacher, s).outputs[i] for i in range(3)]
    monkeypatch.setenv("MBNAS_TEACHER_SPILL_DIR", str(tmp_path))
    monkeypatch.setenv("MBNAS_TEACHER_CACHE_GB", "0")
    tc._CACHE.clear()
    assert distill_candidate(c, teacher, s).scores == plain.scores
    assert len(list(tmp_path.glob("*/*-attn.npy"))) == 2 * 2 + 2 and not list(tmp_path.glob("*/*.tmp"))
    tc._CACHE.clear()
    again = tc.teacher_cache(teacher, s).outputs
    for i in range(3):
        for a, b in zip(again[i], expected[i]):
            assert torch.equal(a, b)
    assert again.passes == 0


def test_proxies_of_the_teacher_itself(teacher):
    """The teacher scored as its own student: every block reproduces itself (block_fidelity 1 with
    and without rescaling, no transfer loss), and each hybrid is the teacher (its own likelihood)."""
    import math

    from nas.distill import DistillSettings
    from nas.distill.teacher_cache import teacher_cache
    from nas.mlm import evaluate_mlm
    from nas.proxies import evaluate_proxies

    cache = teacher_cache(teacher, DistillSettings.for_space("smoke"))
    p = evaluate_proxies(teacher.model, teacher, cache)
    own = evaluate_mlm(teacher.model, cache.heldout)
    assert p["block_fidelity_raw"] == pytest.approx(1.0, abs=0.01)
    assert p["heldout_transfer"] == pytest.approx(0.0, abs=0.05)
    assert p["hybrid_likelihood"] == pytest.approx(math.exp(-own.heldout_ce), rel=0.01)


def test_rescaled_block_fidelity_ignores_each_tokens_scale():
    """match_token_scale gives a token the target's mean and std: a block whose outputs are the
    teacher's times a per-token scale plus a shift scores 1 rescaled, less raw."""
    import torch

    from nas.mlm import feature_correlation, match_token_scale

    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 5, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    s = t * torch.rand(2, 5, 1, generator=g).add(0.2) * 3 + torch.randn(2, 5, 1, generator=g)
    m = match_token_scale(s, t)
    assert torch.allclose(m, t, atol=1e-5)
    assert feature_correlation(m - x, t - x).item() == pytest.approx(1.0, abs=1e-5)
    assert feature_correlation(s - x, t - x).item() < 0.99


def test_a_span_masked_teacher_teaches_and_scores_on_spans(smoke_teacher_dir, tmp_path, monkeypatch):
    """A space whose teacher is pre-trained with span masking (budget.teacher.masking): the teacher
    records it, only a teacher pre-trained so is found or accepted for it (and it only for such a
    space), and its students' transfer batches and held-out scores are span-masked and say so."""
    from pathlib import Path

    import yaml

    from nas.distill import DistillSettings, distill_candidate
    from nas.distill.teacher_cache import teacher_cache
    from nas.teacher import describe, find_teacher, load_teacher, recipe_for, train_teacher

    raw = yaml.safe_load(Path(load_space("smoke").source).read_text())
    raw["budget"]["teacher"]["masking"] = {"mean_span": 3}
    (tmp_path / "span.yaml").write_text(yaml.safe_dump(raw))
    space = load_space(tmp_path / "span.yaml")
    monkeypatch.setattr("nas.teacher.teachers_dir", lambda: tmp_path / "teachers")
    assert find_teacher(space) is None  # the shipped and test teachers were token-masked
    t = train_teacher(space, recipe_for(space), log=lambda s: None, command="mbnas teacher train --space span.yaml")
    assert t.masking.mean_span == 3 and t.meta["recipe"]["masking"]["mean_span"] == 3
    assert "spans of mean length 3" in t.meta["heldout"]["data"] and "spans" in describe(t)
    assert find_teacher(space) == t.path
    with pytest.raises(UserError, match="pre-trained with 15% of tokens masked one by one .* asks for 15% of tokens "
                                        "masked in spans"):
        load_teacher(space, path=smoke_teacher_dir)
    with pytest.raises(UserError, match="pre-trained with 15% of tokens masked in spans"):
        load_teacher(load_space("smoke"), path=t.path)

    s = DistillSettings.for_space(space).replace(layer_steps=2, pd_steps=2)
    cache = teacher_cache(t, s)
    for batch in (cache.transfer[0], cache.heldout[0]):
        target = batch.labels.numpy() != -100
        beside = (target[:, 1:-1] & (target[:, :-2] | target[:, 2:]))[target[:, 1:-1]].mean()
        assert beside > 0.5  # spans: token by token it is about the rate, 0.15
    result = distill_candidate(space.sample(1, seed=0)[0], t, s)
    assert "spans of mean length 3" in result.heldout_data and "spans of mean length 3" in result.score_data
