"""The fixed IB-BERT teacher: pre-train it once, pin it by content hash, reuse it everywhere.

No IB-BERT checkpoint was ever released (docs/FACTS.md), so the tool trains its own with masked-LM on
the pinned corpus. A teacher is a folder::

    model.safetensors   weights (stock MobileBertForMaskedLM layout + the widened Q/K)
    config.json         MobileBertConfig with ``ib_bert_block_qk: true``
    vocab.txt           the WordPiece vocabulary its ids are in (teachers from before 0.4 have none:
                        theirs is BERT uncased)
    teacher.json        space, candidate, recipe, data hash, held-out scores, sha256 of the weights,
                        and the exact command that reproduces it

Loading verifies the weights against the recorded sha256 and the shape against the space. Only
safetensors and JSON are read: never pickle.

Why no next-sentence prediction: the paper's teacher used MLM + NSP, but every score here is
masked-LM on single segments and NSP adds nothing to them (RoBERTa, Liu et al. 2019, found
removing it does not hurt downstream tasks); its pooler and classifier would be trained weights no
candidate inherits.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TYPE_CHECKING

import numpy as np
import torch
from safetensors import safe_open, SafetensorError
from safetensors.torch import load_model, save_file

from nas.data.corpus import corpus_for, heldout_batches, make_mlm_batches
from nas.data.sources import cache_dir, sha256_file
from nas.data.tokenizer import get_vocab
from nas.device import autocast_for
from nas.mlm import mlm_loss, score_with_floor
from nas.models import build_masked_lm
from search_spaces.arch import load_json, resolve_arch
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.masking import BERT_MASKING, Masking, masked_with, masking_from
from search_spaces.vocab import BERT_VOCAB, VOCABS

if TYPE_CHECKING:
    from transformers import MobileBertForMaskedLM

    from nas.data.tokenizer import Vocab

ASSET_DIR = Path(__file__).parent / "assets" / "teachers"
WEIGHTS, CONFIG, META, VOCAB = "model.safetensors", "config.json", "teacher.json", "vocab.txt"


@dataclass(frozen=True)
class TeacherRecipe:
    """Masked-LM pre-training of a teacher.

    steps: optimiser steps; batch_size: sequences per step (seq length is the space's);
    lr: AdamW peak learning rate, reached after ``warmup`` steps, then linear decay to 0 over the run
    (planned over the whole run: measured best at CPU scale, docs/FACTS.md section 6).
    eval_batches: held-out batches of the final score.
    precision: arithmetic of the training steps (``nas.device.PRECISIONS``; the held-out score is fp32).
    """

    steps: int
    batch_size: int
    lr: float
    warmup: int
    weight_decay: float = 0.01
    eval_batches: int = 40
    seed: int = 0
    precision: str = "auto"
    masking: Masking = BERT_MASKING  # which tokens become targets (docs/demo.md: why the demo's are spans)


# A space file's ``budget.teacher`` overrides these fields (search_spaces/builtin/*.yaml): demo's is the
# 4-layer recipe measured on this machine (docs/FACTS.md section 6: seq 64, batch 64, AdamW 3e-3, linear
# decay planned over the whole run); mobilebert's the paper shape, for a GPU.
DEFAULT_RECIPE = TeacherRecipe(steps=5000, batch_size=64, lr=1e-3, warmup=500)


def recipe_for(space) -> TeacherRecipe:
    """The space file's ``budget.teacher`` over ``DEFAULT_RECIPE``."""
    return replace(DEFAULT_RECIPE, **{**space.teacher_budget, "masking": space.masking})


def teacher_masking(meta: dict[str, Any]) -> Masking:
    """What a stored teacher was pre-trained with: its recipe's masking; BERT's for a teacher from
    before masking was choosable."""
    return masking_from(meta.get("recipe", {}).get("masking"))


@dataclass
class Teacher:
    """A loaded teacher. ``hash``: first 12 hex digits of the weights' sha256."""

    model: MobileBertForMaskedLM  # eval mode, no grad
    candidate: Candidate
    hash: str
    meta: dict[str, Any]
    path: Path
    # checked when loaded (``teacher_vocab``): students inherit the teacher's embeddings and output
    # layer, so their text is tokenised with it, and an export ships it
    vocab: Vocab

    @property
    def masking(self) -> Masking:
        """Its pre-training's masking: its students' transfer batches and held-out scores use it too."""
        return teacher_masking(self.meta)


def teacher_vocab(path: Path, meta: dict[str, Any]):
    """A teacher folder's ``vocab.txt`` (by its built-in name when it is one), checked against the
    sha256 in teacher.json; BERT uncased for a folder from before vocabularies were choosable."""
    own = path / VOCAB
    if not own.exists():
        if "vocab_sha256" in meta:
            raise UserError(f"{path}: {VOCAB} is missing (teacher.json records one); restore it or retrain the teacher")
        return get_vocab(BERT_VOCAB)
    v = get_vocab(str(own))
    if v.sha256 != meta.get("vocab_sha256", v.sha256):
        raise UserError(f"{own}: sha256 {v.short} does not match the recorded {str(meta.get('vocab_sha256'))[:12]}; "
                        f"the file was changed: restore it or retrain the teacher")
    name = meta.get("vocab")
    return get_vocab(name) if name in VOCABS and get_vocab(name).sha256 == v.sha256 else v


def _vocab_fits(space, meta: dict[str, Any]) -> bool:
    """Whether a stored teacher's vocabulary is the space's (by content)."""
    if "vocab_sha256" not in meta:
        return space.vocab == BERT_VOCAB

    return meta["vocab_sha256"] == get_vocab(space.vocab).sha256


def _masking_fits(space, meta: dict[str, Any]) -> bool:
    """Whether a stored teacher was pre-trained with the space's masking; an imported teacher's
    pre-training is not known, so it fits any."""
    return "imported_from" in meta or teacher_masking(meta) == space.masking


def teachers_dir() -> Path:
    return cache_dir() / "teachers"


# ------------------------------------------------------------------------------------------------
# training
def _lr_lambda(recipe: TeacherRecipe) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        return max(0.0, (recipe.steps - step) / max(1, recipe.steps - recipe.warmup))
    return f


def data_note(teacher: Teacher, corpus) -> str | None:
    """One line when students are distilled on other text than ``teacher`` was pre-trained on.

    Allowed (a teacher of general text, students transferred on your domain's), but more often a
    ``--corpus`` given to ``mbnas teacher train`` and forgotten later; the scores' data names it too."""
    if teacher.meta.get("data_hash") in (None, corpus.data_hash):
        return None
    return (f"note: teacher {teacher.hash} was pre-trained on {teacher.meta.get('data', 'other text')}; students "
            f"are distilled and scored on {corpus.shown} (--corpus picks their text)")


def _heldout_record(model, corpus, cand: Candidate, eval_batches: int, device: str,
                    log: Callable[[str], None], masking: Masking = BERT_MASKING) -> dict[str, Any]:
    """Score ``model`` on ``corpus``'s fixed held-out batches and log it: the ``heldout`` entry of
    teacher.json, naming its data."""
    batches = heldout_batches(corpus.heldout, cand.seq_len, 32, max_batches=eval_batches, masking=masking,
                              vocab=corpus.vocab)
    scores, floor = score_with_floor(model, batches, device=device)
    log(f"held-out masked-token accuracy {scores.mlm_accuracy:.2%}, cross-entropy {scores.heldout_ce:.3f} "
        f"({scores.n_masked:,} masked positions); with its blocks skipped {floor.mlm_accuracy:.2%}, "
        f"{floor.heldout_ce:.3f}")
    return {**scores.as_dict(), "data": f"held-out split: {corpus.shown}{masked_with(masking)}",
            "blocks_skipped": {"mlm_accuracy": floor.mlm_accuracy, "heldout_ce": floor.heldout_ce}}


def _provenance(command: str | None) -> dict[str, str]:
    """When and by which command a teacher folder was written (teacher.json)."""
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command or "mbnas " + " ".join(shlex.quote(a) for a in sys.argv[1:])}


def train_teacher(space, recipe: TeacherRecipe | None = None, device: str = "cpu", out: Path | None = None,
                  corpus_files: list[Path] | None = None, log: Callable[[str], None] = print,
                  command: str | None = None) -> Teacher:
    """Pre-train the space's teacher with masked-LM and save it; returns the loaded teacher."""
    recipe = recipe or recipe_for(space)
    cand = space.teacher
    corpus = corpus_for(corpus_files, vocab=space.vocab)
    corpus.check_windows(cand.seq_len)  # before the training, not after it (the held-out score needs one)
    _check_batch(recipe.batch_size, cand, corpus, device, log)
    torch.manual_seed(recipe.seed)
    model = build_masked_lm(cand, seed=recipe.seed).to(device).train()
    t0 = time.time()
    log(f"teacher {space.name}: {cand.label}, {recipe.steps} steps x {recipe.batch_size} x {cand.seq_len} tokens, "
        f"lr {recipe.lr}, device {device}, {torch.get_num_threads()} threads; corpus: {corpus.shown}")
    tokens = pretrain(model, corpus, cand.seq_len, recipe, device, log)
    seconds = time.time() - t0
    meta = {
        "space": space.name, "candidate": cand.to_dict(), "recipe": asdict(recipe), "device": device,
        "threads": torch.get_num_threads(), "tokens_seen": tokens, "seconds": round(seconds, 1),
        "data_hash": corpus.data_hash, "data": corpus.shown, **_vocab_meta(corpus.vocab),
        "heldout": _heldout_record(model, corpus, cand, recipe.eval_batches, device, log, recipe.masking),
        **_provenance(command), "torch": torch.__version__,
    }
    return save_teacher(model, cand, meta, out)


def pretrain(model, corpus, seq_len: int, recipe: TeacherRecipe, device: str, log: Callable[[str], None] = print,
             on_step: Callable[[int], None] | None = None) -> int:
    """Masked-LM pre-training of ``model`` (a MobileBertForMaskedLM, on ``device``) on windows of
    ``seq_len`` tokens of ``corpus``'s training split by ``recipe``: AdamW (no decay on biases and norms), warm-up then linear decay,
    gradients clipped at 1. ``on_step(n)`` runs after the n-th optimiser step (1-based); returns the
    tokens seen. A non-finite loss is a ``UserError``."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe))
    batches = make_mlm_batches(corpus.train, seq_len, recipe.batch_size,
                               np.random.default_rng(recipe.seed), recipe.masking, vocab=corpus.vocab)
    amp = autocast_for(device, recipe.precision)
    t0, tokens = time.time(), 0
    every = max(1, recipe.steps // 20)
    for step in range(recipe.steps):
        b = next(batches).to(device)
        with amp:
            loss = mlm_loss(model, b)
        if not torch.isfinite(loss):
            raise UserError(f"teacher training diverged at step {step} (loss {loss.item()}); lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens += b.input_ids.numel()
        if (step + 1) % every == 0 or step == recipe.steps - 1:
            el = time.time() - t0
            log(f"  step {step + 1}/{recipe.steps}  loss {loss.item():.3f}  {tokens / el:,.0f} tok/s  {el / 60:.1f} min")
        if on_step is not None:
            on_step(step + 1)
    return tokens


def _check_batch(batch_size: int, cand: Candidate, corpus, device: str, log: Callable[[str], None]) -> None:
    """A batch that cannot fit in this machine's memory is refused before training (one such run
    was ended by the kernel's out-of-memory killer, without a word); one larger than the training
    text is noted. Only the masked-LM logits are counted (15% of positions x the vocabulary, fp32,
    with their softmax and gradient), so the real need is higher still."""
    need = 0.15 * batch_size * cand.seq_len * cand.vocab_size * 4 * 3
    if device == "cpu" and hasattr(os, "sysconf"):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > 0.8 * total:
            raise UserError(f"a teacher batch of {batch_size} sequences: the masked-LM logits alone need about "
                            f"{need / 2**30:.0f} GiB, and this machine has {total / 2**30:.0f} GiB; give a smaller "
                            f"--batch-size (or budget.teacher.batch_size in the space file)")
    windows = len(corpus.train) // (cand.seq_len - 2)
    if batch_size > windows:
        log(f"note: a batch of {batch_size} sequences is more than the {windows:,} distinct windows of the training "
            f"text; windows repeat within every batch")


def save_weights(model, path: Path) -> None:
    """``model``'s weights as safetensors, the same bytes for the same weights, so a teacher's name
    (the file's hash) depends on its weights alone.

    ``safetensors.torch.save_model`` stores tied tensors (MLM decoder <-> word embeddings, the head's
    biases) once, but records each dropped name in the header's metadata, which the Rust writer puts
    out in a different order in every process: importing one checkpoint twice gave two teachers.
    Here a tied tensor is kept under its first name in sorted order (the rule ``load_model`` also
    accepts) and the metadata is the one fixed entry transformers looks for."""
    state = model.state_dict()
    kept: dict[tuple[int, int, tuple[int, ...]], str] = {}  # (storage, offset, shape) -> the name kept
    tensors = {}
    for name in sorted(state):
        t = state[name]
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in kept:  # a tied tensor: the model ties it again when it is built
            continue
        kept[key] = name
        tensors[name] = t.contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})


def _vocab_meta(vocab) -> dict[str, str]:
    """What teacher.json records of the vocabulary: its name (a built-in's, or the file the space named)
    and the sha256 of the copy kept beside the weights."""
    return {"vocab": vocab.name, "vocab_sha256": vocab.sha256}


def save_teacher(model, cand: Candidate, meta: dict[str, Any], out: Path | None = None) -> Teacher:
    """Write the four files; the folder is named ``<space>-<hash>`` under ``out`` (default cache).
    ``meta`` names the vocabulary (``_vocab_meta``); its file is copied in, so the folder stands alone."""
    root = Path(out) if out else teachers_dir()
    tmp = root / f".tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    vocab = get_vocab(meta.get("vocab", BERT_VOCAB))
    shutil.copyfile(vocab.path, tmp / VOCAB)
    save_weights(model, tmp / WEIGHTS)
    digest = sha256_file(tmp / WEIGHTS)
    model.config.to_json_file(str(tmp / CONFIG))
    meta = {**meta, "sha256": digest, "hash": digest[:12]}
    (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    final = root / f"{meta['space']}-{digest[:12]}"
    if final.exists():  # same weights already stored: keep the first copy
        shutil.rmtree(tmp)
    else:
        tmp.rename(final)
    return load_teacher_dir(final)


def import_teacher(space, src: Path, corpus_files: list[Path] | None = None, device: str = "cpu",
                   out: Path | None = None, log: Callable[[str], None] = print, command: str | None = None) -> Teacher:
    """Pin a teacher trained elsewhere: a transformers ``MobileBertForMaskedLM`` folder
    (``config.json`` + ``model.safetensors``) whose shape fits the space's teacher.

    The weights are checked against the teacher's modules, scored on the held-out text (the data the
    tool knows; what it was pre-trained on is the user's to say) and stored in this layout, named by
    their hash like a teacher trained here. Safetensors only: a pickled ``pytorch_model.bin`` is not
    loaded (it can run code); convert it where it was made.
    """
    src = Path(src)
    weights = src / WEIGHTS
    if not (src / CONFIG).is_file():
        raise UserError(f"{src}: no {CONFIG}; give the folder a transformers MobileBertForMaskedLM was saved to")
    if not weights.is_file():
        pickled = " (pytorch_model.bin is not loaded: it can run code; save it with safe_serialization=True)" \
            if (src / "pytorch_model.bin").exists() else ""
        raise UserError(f"{src}: no {WEIGHTS}{pickled}")
    cand = resolve_arch(str(src / CONFIG), seq_len=space.teacher.seq_len).replace(name=space.teacher.name)
    if cand != space.teacher:
        raise UserError(f"{src}: shape {cand.label} (layers {cand.num_layers}, width {cand.hidden_size}) does not fit "
                        f"space '{space.name}''s teacher {space.teacher.label}; choose the space it was trained for")
    model = build_masked_lm(cand)
    _load_weights(model, weights)
    corpus = corpus_for(corpus_files, vocab=space.vocab)
    if (src / VOCAB).is_file():
        theirs = get_vocab(str((src / VOCAB).resolve()))
        if theirs.sha256 != corpus.vocab.sha256:
            raise UserError(f"{src / VOCAB}: not the vocabulary of space '{space.name}' ({corpus.vocab.label}); "
                            f"its ids would mean other word pieces: choose the space it was trained for")
    heldout = _heldout_record(model.to(device), corpus, cand, recipe_for(space).eval_batches, device, log)
    meta = {"space": space.name, "candidate": cand.to_dict(), "imported_from": str(src.resolve()),
            "data": "not recorded (imported)", **_vocab_meta(corpus.vocab), "heldout": heldout, **_provenance(command)}
    return save_teacher(model.cpu(), cand, meta, out)


# ------------------------------------------------------------------------------------------------
# loading
def _load_weights(model, weights: Path) -> None:
    """Load ``weights`` (safetensors) into ``model``, or a ``UserError`` naming what does not match.
    Tied tensors (the MLM decoder shares the word embeddings) may be stored once, as transformers and
    ``save_teacher`` both do."""
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except SafetensorError as exc:  # truncated, or not safetensors at all
        raise UserError(f"{weights}: not a readable safetensors file ({exc}); save it again with "
                        f"save_pretrained(..., safe_serialization=True)") from None
    except RuntimeError as exc:  # a tensor of the right name but another shape
        raise UserError(f"{weights}: weights do not match the teacher's modules ({_first_mismatch(model, weights) or str(exc).splitlines()[0]})") from None
    if missing or unexpected:
        raise UserError(f"{weights}: weights do not match the teacher's modules "
                        f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def _first_mismatch(model, weights: Path) -> str | None:
    """``'<name>' is [a, b] in the file, [c, d] in the model`` for the first tensor (sorted by name)
    whose shape differs; torch's own message names none of them on its first line."""
    want = {k: list(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(weights), framework="pt") as f:
        for name in sorted(f.keys()):
            shape = list(f.get_slice(name).get_shape())
            if name in want and want[name] != shape:
                return f"'{name}' is {shape} in the file, {want[name]} in the model"
    return None


def load_teacher_dir(path: Path, device: str = "cpu", expect: Candidate | None = None) -> Teacher:
    """Load and verify a teacher folder (our layout: the three files above)."""
    path = Path(path)
    if path.is_file():  # --teacher .../model.safetensors: the folder was meant
        raise UserError(f"{path}: a file; a teacher is the folder holding {WEIGHTS} and {META}: give {path.parent}")
    for f in (WEIGHTS, META):
        if not (path / f).exists():
            raise UserError(f"{path}: not a teacher folder (no {f}); train one with 'mbnas teacher train'")

    meta = load_json(path / META)  # not valid JSON: one line naming the file
    if not isinstance(meta, dict) or not isinstance(meta.get("candidate"), dict):
        raise UserError(f"{path / META}: not a teacher record (no 'candidate'); train one with 'mbnas teacher "
                        f"train', or restore the file")
    cand = Candidate.from_dict(meta["candidate"], where=f"{path / META}: candidate")
    if expect is not None and cand.replace(name=None) != expect.replace(name=None):
        raise UserError(f"{path}: teacher shape {cand.label} (layers {cand.num_layers}, width {cand.hidden_size}) "
                        f"does not fit the space's teacher {expect.label} (layers {expect.num_layers}, width "
                        f"{expect.hidden_size}); train one with 'mbnas teacher train --space ...'")
    digest = sha256_file(path / WEIGHTS)
    if digest != meta.get("sha256"):
        raise UserError(f"{path / WEIGHTS}: sha256 {digest[:12]} does not match the recorded {meta.get('hash')}; "
                        f"the file is corrupt or was replaced: retrain or restore it")
    model = build_masked_lm(cand)
    _load_weights(model, path / WEIGHTS)
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Teacher(model=model, candidate=cand, hash=digest[:12], meta=meta, path=path, vocab=teacher_vocab(path, meta))


def _stored_teachers() -> Iterator[tuple[Path, Path, dict, Candidate]]:
    """(root, folder, teacher.json, candidate) of every readable teacher: the user's cache, then the
    ones shipped with the package."""
    for root in (teachers_dir(), ASSET_DIR):
        for meta_path in sorted(root.glob(f"*/{META}")) if root.exists() else []:
            try:
                meta = json.loads(meta_path.read_text())
                cand = Candidate.from_dict(meta["candidate"]).replace(name=None)
            except (ValueError, KeyError, UserError):
                continue
            yield root, meta_path.parent, meta, cand


def find_teacher(space) -> Path | None:
    """The newest cached teacher for this space's shape, else the built-in one shipped with the package."""
    want = space.teacher.replace(name=None)
    found = [(root == teachers_dir(), meta.get("created", ""), folder)
             for root, folder, meta, cand in _stored_teachers()
             if cand == want and _vocab_fits(space, meta) and _masking_fits(space, meta)]
    if not found:
        return None
    return max(found)[2]  # a user's own teacher wins over the shipped one; newest first


def _other_shapes(space) -> str:
    """``; the teachers found have shape(s) ...`` when teachers of other shapes exist (an edited
    teacher block, say, where 'teacher info' lists one of the unedited shape)."""
    shapes = sorted({cand.label for _, _, _, cand in _stored_teachers()})
    return f"; the teachers found have shape(s) {', '.join(shapes)}" if shapes else ""


def load_teacher(space, device: str = "cpu", path: str | Path | None = None) -> Teacher:
    if path is not None:
        t = load_teacher_dir(Path(path), device, expect=space.teacher)
        if not _vocab_fits(space, t.meta):
            raise UserError(f"{path}: teacher {t.hash} reads {t.vocab.label}, space '{space.name}' is in vocab "
                            f"{space.vocab}: its ids would mean other word pieces; train one with 'mbnas teacher "
                            f"train --space {space.ref}'")
        if not _masking_fits(space, t.meta):
            raise UserError(f"{path}: teacher {t.hash} was pre-trained with {t.masking.shown}, space '{space.name}' "
                            f"asks for {space.masking.shown} (budget.teacher.masking); train one with "
                            f"'mbnas teacher train --space {space.ref}'")
        return t
    found = find_teacher(space)
    if found is None:
        wanted = "" if space.vocab == BERT_VOCAB else f" and vocab {space.vocab}"
        if space.masking != BERT_MASKING:
            wanted += f", pre-trained with {space.masking.shown}"
        raise UserError(f"no teacher of shape {space.teacher.label}{wanted} (space '{space.name}''s teacher block, "
                        f"{space.source}): run 'mbnas teacher train --space {space.ref}' "
                        f"(or pass --teacher DIR){_other_shapes(space)}")
    return load_teacher_dir(found, device, expect=space.teacher)


def describe(t: Teacher) -> str:
    h = t.meta.get("heldout", {})
    origin = (f"imported from {t.meta['imported_from']}" if "imported_from" in t.meta else
              f"{t.meta.get('recipe', {}).get('steps')} steps, {t.meta.get('tokens_seen', 0):,} tokens in "
              f"{t.meta.get('seconds', 0) / 60:.1f} min")
    return (f"teacher {t.hash} ({t.path}): {t.candidate.label}, space {t.meta.get('space')}, "
            f"{origin}; held-out masked-token accuracy "
            f"{h.get('mlm_accuracy', math.nan):.2%}, cross-entropy {h.get('heldout_ce', math.nan):.3f}{_floor(h)} "
            f"on {h.get('data', '?')}")


def _floor(heldout: dict[str, Any]) -> str:
    """``(blocks skipped: ...)``: what the embeddings and head score alone, when recorded (teachers of 0.4 on)."""
    f = heldout.get("blocks_skipped")
    return f" (with its blocks skipped: {f['mlm_accuracy']:.2%}, {f['heldout_ce']:.3f})" if f else ""
