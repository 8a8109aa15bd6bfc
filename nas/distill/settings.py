"""How one candidate is trained and scored: budgets, loss weights, strategy."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from nas.device import PRECISIONS
from nas.records import SCORE_MEANINGS
from search_spaces import load_space
from search_spaces.errors import UserError, check_choice

# progressive / joint / auxiliary: MobileBERT's three knowledge-transfer schemes (paper section 4.3)
# theseus: BERT-of-Theseus with the linear curriculum p = min(1, k*t + b); theseus-constant: p fixed
# none: the same student trained with masked-LM only, from scratch: the no-teacher baseline
#
# The task-agnostic score a search maximises unless --score says otherwise: the one that ranked 16 demo
# candidates like their ground truth (5x the training, 2 seeds): Kendall tau 0.76, 7 of 7 matched
# pairs (benchmarks/results/proxy_validity.md; README "Scores"). block_fidelity, the default before,
# ranked them at 0.35.
DEFAULT_SCORE = "mlm_likelihood"
STRATEGIES = ("progressive", "joint", "auxiliary", "theseus", "theseus-constant", "none")
# Which release's layer-wise schedule progressive transfer follows (README "Strategies"):
# tf1: google-research mobilebert (run_pretraining.py): embeddings frozen, earlier layers at
#   earlier_lr_scale x lr, one optimiser whose state carries across layer phases, a warm-up per phase;
# tf2: tensorflow/models official/projects/mobilebert: embeddings and earlier layers at the full
#   rate, a new optimiser per layer phase.
LAYERWISE_RELEASES = ("tf1", "tf2")
# The training recipe's version: part of a study's identity (a resume across it is refused).
# 1: mbnas <= 0.2.0: 64 fixed transfer batches cycled, constant lr, Theseus training every parameter
#    from random successors, the no-teacher baseline without inherited embeddings.
# 2: mbnas 0.3.0: fresh batches every step, warm-up + linear decay per stage, Theseus as published.
RECIPE_VERSION = 2
RECIPE_MADE_BY = {1: "mbnas 0.2.0 or earlier", 2: "mbnas 0.3.0 or later"}
OBJECTIVES = ("mlm", "downstream")
# Task-agnostic scores a search can maximise (all "higher is better"): nas.records.SCORE_MEANINGS, README
# "Scores". The default is the one that, measured, best separates candidates of different capacity
# at the demo budget (benchmarks/transfer_strategies.py).
SCORES = tuple(k for k in SCORE_MEANINGS if k != "downstream_accuracy")


@dataclass(frozen=True)
class TransferWeights:
    """Layer-wise loss weights, as released with MobileBERT (tensorflow/models distillation configs).

    fmt: MSE between layer-normalised feature maps (inter-block hidden states).
    mean / var: match the per-token mean and variance of the raw feature maps.
    attention: KL(teacher || student) of the attention distributions.
    """

    fmt: float = 100.0
    mean: float = 5000.0
    var: float = 5.0
    attention: float = 1.0


@dataclass(frozen=True)
class DistillSettings:
    """Training and scoring of one candidate.

    layer_steps: steps per layer of the layer-wise stage (progressive: each layer in turn; joint:
        L * layer_steps steps on all layers; auxiliary and theseus: folded into one stage of the
        same length; none: MLM steps). pd_steps: pre-training distillation (or final fine-tune) steps.
        Every strategy thus takes L * layer_steps + pd_steps optimiser steps: the same budget.
    batch_size, lr: student optimiser (AdamW; lr is the peak of every stage's schedule, see
        ``warmup``; chosen by a sweep on the demo space, benchmarks/results/recipe.md).
    earlier_lr_scale: progressive only: lr factor for layers already transferred (0 = frozen).
    alpha, temperature: pre-training distillation: alpha * hard-label CE + (1 - alpha) * T^2 * KL.
    theseus_b, theseus_k: curriculum p = min(1, k * t + b); k is scaled so p reaches 1 at 90% of
        the replacing stage (current README: b = 0.3, k = 0.0006 reach 1 after 1,167 steps);
        theseus_p: the constant replacement probability (current README: 0.5).
    warmup: share of each stage's (each layer phase's) steps spent warming the rate up linearly
        from 0; the rest decays it linearly towards 0 at the stage's end.
    layerwise_release: progressive only: ``LAYERWISE_RELEASES`` (tf1 or tf2).
    transfer_batches: 0 (default): a fresh masked batch every step (``TransferStream``); N > 0: N
        fixed batches cycled (recipe 1, kept for comparison).
    eval_batches: held-out batches (32 sequences each) of the task-agnostic score.
    downstream_steps / downstream_eval: the short fine-tune of the downstream objective.
    score_name: which score is the search objective for ``objective='mlm'``.
    corpus: the user's text files (``--corpus``): transfer batches and held-out scores come from them
        alone; empty: the built-in corpus (README "Data").
    task_csv: the user's ``text,label`` CSV (``--task-csv``) for ``objective='downstream'``; None:
        Rotten Tomatoes.
    precision: arithmetic of the training steps (``nas.device.training_precision``: auto, fp32,
        bf16); scoring is fp32 whatever it is.
    """

    strategy: str = "progressive"
    objective: str = "mlm"
    layer_steps: int = 100
    pd_steps: int = 300
    batch_size: int = 32
    lr: float = 5e-4
    earlier_lr_scale: float = 0.1
    alpha: float = 0.5
    temperature: float = 1.0
    weights: TransferWeights = TransferWeights()
    theseus_b: float = 0.3
    theseus_p: float = 0.5
    warmup: float = 0.1
    layerwise_release: str = "tf1"
    transfer_batches: int = 0
    eval_batches: int = 20
    downstream_steps: int = 300
    downstream_lr: float = 1e-3
    downstream_eval: int = 1000
    score_name: str = DEFAULT_SCORE
    device: str = "cpu"
    seed: int = 0
    corpus: tuple[str, ...] = ()
    task_csv: str | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # --distill-option values arrive as parsed JSON: check types first
            v = getattr(self, f.name)
            if f.type in ("int", "float") and (isinstance(v, bool) or not isinstance(v, (int, float))
                                               or (f.type == "int" and not isinstance(v, int))):
                kind = "an integer" if f.type == "int" else "a number"
                raise UserError(f"distill setting '{f.name}' must be {kind}, got {v!r}")
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("score", self.score_name, SCORES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("layerwise_release", self.layerwise_release, LAYERWISE_RELEASES)
        for f in ("layer_steps", "pd_steps", "batch_size", "transfer_batches", "eval_batches"):
            if getattr(self, f) < 0 or (f not in ("pd_steps", "transfer_batches") and getattr(self, f) == 0):
                raise UserError(f"distill setting '{f}' must be positive, got {getattr(self, f)}")
        # ranges: each of these was accepted and trained something other than asked (a negative
        # alpha weight, no fine-tune at all) or diverged in every trial (temperature 0)
        checks = (("lr", self.lr, 0, None, False), ("downstream_lr", self.downstream_lr, 0, None, False),
                  ("temperature", self.temperature, 0, None, False), ("alpha", self.alpha, 0, 1, True),
                  ("theseus_p", self.theseus_p, 0, 1, True), ("theseus_b", self.theseus_b, 0, 1, True),
                  ("earlier_lr_scale", self.earlier_lr_scale, 0, None, True), ("warmup", self.warmup, 0, 1, True),
                  ("downstream_steps", self.downstream_steps, 1, None, True),
                  ("downstream_eval", self.downstream_eval, 1, None, True))
        for name, v, low, high, closed in checks:
            ok = math.isfinite(v) and (v >= low if closed else v > low) and (high is None or v <= high)
            if not ok:
                where = (f"from {low} to {high}" if high is not None else
                         f"{'>=' if closed else '>'} {low}") + (" (finite)" if high is None else "")
                raise UserError(f"distill setting '{name}' must be {where}, got {v!r}")
        if isinstance(self.corpus, (str, bytes)) or not all(isinstance(p, str) for p in self.corpus):
            raise UserError(f"corpus must be a list of text file paths, got {self.corpus!r}")
        object.__setattr__(self, "corpus", tuple(self.corpus))  # a JSON list from --distill-option
        if self.task_csv is not None and self.objective != "downstream":
            raise UserError(f"--task-csv {self.task_csv}: a task is scored only with --objective downstream; "
                            f"add it, or leave the CSV out")

    def replace(self, **changes) -> "DistillSettings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_space(cls, space, **overrides) -> "DistillSettings":
        """The space file's ``budget.distill`` (a space or its name), then ``overrides``."""
        if isinstance(space, str):
            space = load_space(space)
        return cls(**{**space.distill_budget, **overrides})


# What --distill-option may change: the numeric knobs and the progressive schedule's release. The
# rest has a flag the study records (--seed, --strategy, --score, --corpus, ...) or is not a value to
# type (the loss weights).
DISTILL_OPTIONS = tuple(f.name for f in dataclasses.fields(DistillSettings) if f.type in ("int", "float")
                        and f.name != "seed") + ("layerwise_release",)


def user_data_of(s: DistillSettings, teacher, corpus=None) -> tuple[str | None, str | None]:
    """(the user's data of ``s`` named by content, or None for the built-in data; the line
    ``nas.teacher.data_note`` has for ``teacher``). Reads and checks the files, so a bad one is
    reported before any training. ``corpus``: ``s.corpus`` already loaded (``corpus_for``), if at hand.

    Content, not paths: a search resumed after its files changed would mix trials scored on two data
    sets, while the same files moved elsewhere are the same study (``StudyMeta.user_data``)."""
    from nas.data.corpus import corpus_for
    from nas.data.downstream import load_downstream
    from nas.teacher import data_note

    corpus = corpus or corpus_for(s.corpus, vocab=teacher.vocab)
    corpus.check_windows(teacher.candidate.seq_len)  # the held-out scores need one window at least
    parts = [f"corpus: {corpus.description}, token sha256 {corpus.data_hash[:16]}"] if s.corpus else []
    if s.task_csv:
        path = Path(s.task_csv)
        load_downstream(path)  # a malformed CSV is reported now, not after the first candidate's training
        parts.append(f"task: {path.name}, sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]}")
    return "; ".join(parts) or None, data_note(teacher, corpus)
