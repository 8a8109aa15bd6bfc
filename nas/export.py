"""Hand a searched architecture over to stock ``transformers``.

``export_trial`` writes one trial of a study to a folder::

    config.json          a stock MobileBertConfig (architectures: MobileBertForMaskedLM)
    model.safetensors    the trained student, exactly as the search saved it
    vocab.txt            the WordPiece vocabulary it was trained with (the space's: BERT uncased, news-wiki-4k, ...)
    architecture.json    the candidate, every score with the data it was measured on, the predicted
                         latency with its profile and error, the teacher hash and the strategy
    model.tflite         optional (``tflite=True``; needs the ``litert`` extra)

and then checks that ``MobileBertForMaskedLM.from_pretrained(folder)`` reproduces the student's
outputs. ``export_reference`` writes a named reference architecture's config (no weights exist).

Which trial (``pick_trial``): a trial number, or from the feasible Pareto front the ``knee``
(``nas.pareto.knee_point``), the ``fastest`` or the ``most-accurate`` point, or the most accurate
trial predicted under a latency (``under_ms``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.pareto import has_knee, knee_point, pareto_front
from nas.records import StudyMeta
from nas.search.outcomes import trial_views
from search_spaces.errors import UserError, check_choice
from search_spaces.files import check_output_folder, refuse_nonempty
from search_spaces.ops import count
from search_spaces.references import get_reference
from search_spaces.vocab import BERT_VOCAB

PICKS = ("knee", "fastest", "most-accurate")
SCHEMA = "mbnas.export/1"
WEIGHTS, CONFIG, VOCAB, ARCH = "model.safetensors", "config.json", "vocab.txt", "architecture.json"
TFLITE = "model.tflite"


@dataclass(frozen=True)
class Exported:
    out: Path
    trial: int | None
    files: list[str]
    max_abs_diff: float | None  # stock transformers vs the student as trained (None: nothing to compare)
    description: str


def _exportable(study) -> list:
    return [v for v in trial_views(study)
            if v.outcome == "complete" and v.feasible and v.values is not None and v.record is not None
            and v.record.weights]


def pick_trial(study, trial: int | None = None, pick: str | None = None, under_ms: float | None = None,
               notes: list[str] | None = None):
    """The ``TrialView`` to export (default: the knee of the front)."""
    if trial is not None:
        views = {v.number: v for v in trial_views(study)}
        if trial not in views:
            raise UserError(f"study '{study.study_name}' has no trial {trial} (trials 0-{len(views) - 1})")
        v = views[trial]
        if v.outcome != "complete" or not (v.record and v.record.weights):
            why = (v.record.failure if v.record and v.record.failure else v.outcome)
            raise UserError(f"trial {trial} has no trained student to export ({why})")
        return v
    done = _exportable(study)
    if not done:
        raise UserError(f"study '{study.study_name}' has no completed trial to export yet")
    if under_ms is not None:
        fast = [v for v in done if v.values[1] <= under_ms]
        if not fast:
            best = min(done, key=lambda v: v.values[1])
            raise UserError(f"no completed trial is predicted under {under_ms:g} ms (fastest: trial {best.number}, "
                            f"{best.values[1]:.3g} ms)")
        return max(fast, key=lambda v: (v.values[0], -v.values[1]))
    front = pareto_front([v.values[0] for v in done], [v.values[1] for v in done])
    pick = pick or "knee"
    check_choice("--pick", pick, PICKS)
    if pick == "fastest":
        return done[front[0].index]
    if pick == "most-accurate":
        return done[front[-1].index]
    if notes is not None and not has_knee(front):
        notes.append(f"the front of {len(front)} point(s) has no knee (no point above the line between its fastest "
                     f"and most accurate ends): this is its most accurate point")
    return done[knee_point(front).index]


OURS = (CONFIG, WEIGHTS, VOCAB, ARCH, TFLITE)  # every file an export may write


@contextlib.contextmanager
def _staged(out: Path, force: bool = False, keep: dict[str, Path] | None = None):
    """A fresh folder beside ``out`` to write an export into; when the block succeeds its files
    replace ours in ``out``, so a failed or interrupted export (a conversion error, Ctrl-C) leaves
    ``out`` as it was. A folder that already holds files is refused unless ``force``; then an
    earlier export's files go (its model.tflite must not sit beside another trial's weights) and
    anything else stays. ``keep``: folders an export reads from, by what they are: never written into,
    nor below."""
    out = check_output_folder(out, "--out")
    for what, folder in (keep or {}).items():
        if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
            raise UserError(f"--out {out}: that is in {what} ({folder}); export to a folder outside it")
    refuse_nonempty(out, "--out", force, "choose a new folder, or pass --force to replace an earlier export there")
    real = out.resolve()  # a symlinked --out: stage beside its target, so the final moves are renames
    real.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".part", dir=real.parent))
    try:
        yield stage
        out.mkdir(exist_ok=True)
        for name in OURS:
            (out / name).unlink(missing_ok=True)
        for f in stage.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_config(candidate, out: Path) -> None:
    cfg = candidate.to_hf_config()
    cfg.architectures = ["MobileBertForMaskedLM"]
    cfg.save_pretrained(str(out))


def _max_abs_diff(trained_dir: Path, out: Path, seq_len: int) -> float:
    """Logits of the student as the search saved it vs. as stock transformers loads the export."""
    import torch
    from transformers import MobileBertForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    trained = MobileBertForMaskedLM.from_pretrained(str(trained_dir)).eval()
    ids = sample_ids(trained.config.vocab_size, (2, seq_len), torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        a = trained(input_ids=ids, attention_mask=mask).logits
        b = MobileBertForMaskedLM.from_pretrained(str(out)).eval()(input_ids=ids, attention_mask=mask).logits
    return float((a - b).abs().max())


def sample_ids(vocab_size: int, shape: tuple[int, int], gen=None):
    """(B, T) random ids past the special tokens of a BERT-layout vocabulary of ``vocab_size``
    (news-wiki-4k's 4,096 as well as BERT's 30,522: a fixed upper id indexed past the smaller one)."""
    import torch

    from nas.data.tokenizer import MASK

    return torch.randint(MASK + 1, vocab_size, shape, generator=gen)


def export_tflite(out: Path, seq_len: int) -> Path:
    """``model.tflite`` of the exported folder via litert-torch (int32 input ids, fixed length)."""
    from transformers import MobileBertForMaskedLM

    from nas.tflite import convert, ids_to

    model = MobileBertForMaskedLM.from_pretrained(str(out), attn_implementation="eager").eval()
    sample = (sample_ids(model.config.vocab_size, (1, seq_len)),)
    return convert(ids_to(model, "logits"), sample, out / TFLITE)


def architecture_record(rec, meta, score: float, latency_ms: float, study_name: str, trial: int,
                        storage_url: str | None) -> dict:
    """The ``architecture.json`` body of a trial (schema ``mbnas.export/1``): candidate, size, the
    score with its data, the *predicted* latency with profile and error, teacher and strategy.
    Shared by ``mbnas export`` and the dashboard's download, so both write the same file."""
    c = rec.candidate
    return {
        "schema": SCHEMA,
        "candidate": c.to_dict(),
        "label": c.label,
        "params": rec.params,
        "flops": rec.flops,
        "score": {"name": meta.score_name, "value": float(score), "data": meta.score_data},
        "scores": {k: {"value": x, "data": meta.data_of(k)} for k, x in rec.scores.items()},
        "latency": {"ms": float(latency_ms), "predicted": True, "profile": meta.latency_profile,
                    "error": meta.latency_error, "seq_len": c.seq_len, "breakdown_ms": rec.latency_breakdown},
        "teacher_hash": rec.teacher_hash,
        "strategy": rec.strategy,
        "train_precision": rec.precision,
        "layer_losses": rec.layer_losses,
        "train_seconds": rec.seconds,
        "source": {"study": study_name, "trial": int(trial), "storage": storage_url},
    }


def export_trial(study, out: Path, trial: int | None = None, pick: str | None = None, under_ms: float | None = None,
                 tflite: bool = False, storage_url: str | None = None, force: bool = False) -> Exported:
    from nas.data.tokenizer import get_vocab

    meta = StudyMeta.from_study(study)
    if meta is None:
        raise UserError(f"study '{study.study_name}' was not written by 'mbnas search' (no mbnas settings in it)")
    notes: list[str] = []
    v = pick_trial(study, trial, pick, under_ms, notes)
    rec = v.record
    if Path(rec.weights).is_absolute() or ".." in Path(rec.weights).parts:
        # a search writes weights under its run dir; a record naming anything else was not written by it
        raise UserError(f"trial {v.number}: its record names weights outside the study's run dir "
                        f"({rec.weights!r}); refusing to copy them")
    trained_dir = Path(meta.run_dir or ".") / Path(rec.weights).parent
    weights = trained_dir / Path(rec.weights).name
    if not weights.exists():
        from nas.search.ray_backend import NODE_ATTR

        node = study.trials[v.number].user_attrs.get(NODE_ATTR)
        where = f" (Ray node {node})" if node else ""
        raise UserError(f"trial {v.number}: trained weights not found at {weights}; export on the machine that "
                        f"trained it{where}, or copy its run dir ({meta.run_dir}) here")
    if tflite:
        from nas.tflite import converter

        converter()  # the missing extra is one line before anything is written
    c = rec.candidate
    arch = architecture_record(rec, meta, v.values[0], v.values[1], study.study_name, v.number, storage_url)
    vocab = get_vocab(meta.space.get("vocab", BERT_VOCAB))  # the space's: its teacher's, so every student's
    arch["tokenizer"] = f"{vocab.label} (vocab.txt, sha256 {vocab.short}); lower-case the text, [CLS] text [SEP]"
    files = [CONFIG, WEIGHTS, VOCAB, ARCH] + ([TFLITE] if tflite else [])
    out = Path(out)
    # the study's run folder holds every trial's folder (without a recorded one: this trial's)
    keep = {"the study's run folder": Path(meta.run_dir or trained_dir),
            "the tokenizer's vocabulary folder": vocab.path.parent}
    with _staged(out, force, keep) as stage:
        _write_config(c, stage)
        shutil.copyfile(weights, stage / WEIGHTS)
        shutil.copyfile(vocab.path, stage / VOCAB)
        try:
            diff = _max_abs_diff(trained_dir, stage, c.seq_len) if (trained_dir / CONFIG).exists() else None
        except (RuntimeError, ValueError, OSError) as exc:  # e.g. transformers' size-mismatch report
            raise UserError(f"trial {v.number}: the weights in {trained_dir} do not load as its architecture "
                            f"{c.label} ({str(exc).strip().splitlines()[0]}); were they changed after the "
                            f"search?") from None
        arch["check"] = {"stock_transformers_max_abs_logit_diff": diff}
        (stage / ARCH).write_text(json.dumps(arch, indent=2) + "\n")
        if tflite:
            export_tflite(stage, c.seq_len)
    desc = (f"trial {v.number} ({c.label}, {rec.strategy}): {meta.score_name} {v.values[0]:.4f} on {meta.score_data}; "
            f"{v.values[1]:.3g} ms predicted on {meta.latency_profile} ({meta.latency_error})"
            + "".join(f"; {n}" for n in notes))
    return Exported(out=out, trial=v.number, files=files, max_abs_diff=diff, description=desc)


def export_reference(name: str, out: Path, force: bool = False) -> Exported:
    ref = get_reference(name)
    c = ref.candidate
    k = count(c)
    arch = {
        "schema": SCHEMA, "candidate": c.to_dict(), "label": c.label, "params": k.params, "flops": k.flops,
        "reference": {"name": ref.name, "description": ref.description, "paper_params_m": ref.paper_params_m,
                      "pixel4_latency_ms": ref.pixel4_latency_ms, "pixel4_verified": ref.pixel4_verified,
                      "latency_source": "MobileBERT paper, Tables 4-5 (TFLite, 4 threads, seq 128)"},
        "weights": None,
    }
    if c.attention == "block":
        arch["note"] = ("IB-BERT teacher: Q/K read the block input, which stock transformers cannot build; "
                        "config.json carries ib_bert_block_qk and nas.models.build_masked_lm builds it")
    with _staged(out, force) as stage:
        _write_config(c, stage)
        (stage / ARCH).write_text(json.dumps(arch, indent=2) + "\n")
    out = Path(out)
    return Exported(out=out, trial=None, files=[CONFIG, ARCH], max_abs_diff=None,
                    description=f"reference {ref.name} ({c.label}, {k.params_m:.2f}M params): config only, no weights")


def load_exported(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / ARCH).read_text())
