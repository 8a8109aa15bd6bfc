"""What a search stores in its Optuna study: the only results store.

The search writes one ``TrialRecord`` per trial as Optuna user attributes and one ``StudyMeta`` as
one study user attribute (``StudyMeta.save``, ``META_ATTR``); the dashboard and export read them
back through ``from_trial`` / ``StudyMeta.from_study``. Keeping both directions here means the writer and the readers can
never drift apart.

Objective values of a complete trial, in this order (``OBJECTIVE_VALUES``):
    0: ``score``       maximise (the study's score: see ``StudyMeta.score_name``)
    1: ``latency_ms``  minimise (predicted by ``StudyMeta.latency_profile``; never measured)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.candidate import Candidate

OBJECTIVE_VALUES = ("score", "latency_ms")
DIRECTIONS = ("maximize", "minimize")
# What each score a study can maximise means (all "higher is better"); README "Scores" says more.
SCORE_MEANINGS = {
    "block_fidelity": "correlation of each block's update of the feature map with the teacher block's, "
                      "given the teacher's input to the block, its output rescaled per token to the teacher's",
    "block_fidelity_raw": "block_fidelity without the rescaling (mbnas 0.2.0's default: reads each token's scale)",
    "heldout_transfer": "minus the layer-wise feature-map transfer loss on held-out text, mean over blocks",
    "hybrid_likelihood": "exp(-cross-entropy) of masked tokens with one student block in the teacher, mean over blocks",
    "mlm_accuracy": "top-1 accuracy of masked tokens",
    "mlm_likelihood": "exp(-cross-entropy) of masked tokens",
    "teacher_fidelity": "exp(-KL(teacher || student)) at masked positions",
    "top1_agreement": "share of masked positions where student and teacher predict the same token",
    "downstream_accuracy": "accuracy after a short fine-tune on the labelled sentences",
}


def describe_score(name: str) -> str:
    """``name (what it means; how well it ranks like the ground truth)``, or just ``name`` for a score
    this version does not know."""
    return f"{name} ({SCORE_MEANINGS[name]}; {score_validity(name)})" if name in SCORE_MEANINGS else name


def score_validity(name: str) -> str:
    """How well ``name`` ranked demo candidates like the ground truth (``nas/assets/score_validity.json``,
    written by benchmarks/proxy_validity.py once its measurement is complete), in words."""
    path = Path(__file__).parent / "assets" / "score_validity.json"
    if name == "downstream_accuracy":
        return "measured on the task itself"
    try:
        v = json.loads(path.read_text())
        tau = v["kendall_tau"][name]
    except (OSError, ValueError, KeyError):
        return "not yet validated against a ground truth: README 'Scores'"
    aim = v.get("aim_tau")
    short = f", below the {aim:g} aimed for" if aim is not None and tau < aim else ""
    # the teacher too: a ground truth holds for the teacher its candidates were trained from
    teacher = f" (teacher {v['teacher']})" if v.get("teacher") else ""
    return (f"Kendall tau {tau:.2f}{short} against the {v['space']} space's ground truth{teacher} over "
            f"{v['n_candidates']} candidates, {v['source']}")
_PREFIX = "mbnas."
# The whole StudyMeta in one attribute: one storage write, so a worker that opens the study while
# another creates it sees all of the settings or none (one attribute per field let a second worker
# read ``space`` before ``reference_point`` existed).
META_ATTR = _PREFIX + "study"


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search.

    candidate: the architecture.
    params / flops: ``search_spaces.ops.count`` (MobileBertModel without pooler/head; FLOPs = 2 x MACs).
    latency_ms: predicted latency on the study's profile; ``latency_breakdown`` by op class (ms).
    score: the study's score (``None`` for a failed or rejected trial).
    scores: every score measured (e.g. ``mlm_accuracy``, ``heldout_ce``, ``teacher_kl``, ``top1_agreement``).
    layer_losses: transfer loss after each layer's phase (progressive/joint/auxiliary), in layer order.
    strategy: knowledge-transfer strategy; teacher_hash: content hash of the fixed teacher.
    seconds: wall time of training + evaluation; precision: what its training steps computed in
        (fp32 or bf16; None: not trained, or recorded before this field).
    weights: path of the trained student's ``model.safetensors`` (relative to the study's run dir).
    failure: why a trial failed, was rejected (over the latency budget) or stopped early.
    """

    candidate: Candidate
    params: int
    flops: int
    latency_ms: float
    latency_breakdown: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    layer_losses: list[float] = field(default_factory=list)
    strategy: str | None = None
    teacher_hash: str | None = None
    seconds: float | None = None
    weights: str | None = None
    failure: str | None = None
    precision: str | None = None

    def to_user_attrs(self) -> dict[str, Any]:
        """One attribute per field, ``candidate`` last: written in this order, a reader in another
        worker (repeat check, dashboard) sees a whole record or none (``from_user_attrs`` -> None)."""
        d = dataclasses.asdict(self)
        del d["candidate"]
        d["candidate"] = self.candidate.to_dict()
        return {_PREFIX + k: v for k, v in d.items()}

    @classmethod
    def from_user_attrs(cls, attrs: dict[str, Any]) -> "TrialRecord | None":
        """``None`` when the attributes hold no record (e.g. a trial killed before it wrote one)."""
        d = {k[len(_PREFIX):]: v for k, v in attrs.items() if k.startswith(_PREFIX)}
        if "candidate" not in d:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d["candidate"] = Candidate.from_dict(d["candidate"], where="trial record")
        return cls(**d)

    @classmethod
    def from_trial(cls, trial: Any) -> "TrialRecord | None":
        return cls.from_user_attrs(trial.user_attrs)


def data_of(score: str, score_name: str, score_data: str, heldout_data: str | None) -> str:
    """Which data ``score`` was measured on: the objective's own (``score_data``: a downstream task's
    dev split, say) or the held-out text every masked-LM score is measured on."""
    return score_data if score == score_name or heldout_data is None else heldout_data


@dataclass(frozen=True)
class StudyMeta:
    """Settings of a search, stored once per study.

    score_name: which score the ``score`` objective is (e.g. ``mlm_accuracy``).
    score_data: the data it was measured on, in words.
    latency_profile: predictor used for ``latency_ms``; latency_error: its measured error, in words.
    reference_point: (score, latency_ms) for hypervolume: worst acceptable score, slowest latency.
    run_dir: where trained students' weights are kept.
    distill_options: ``--distill-option`` overrides of the strategy's settings (they change what
    the scores mean, so a resumed study must use the same ones).
    user_data: the user's ``--corpus`` / ``--task-csv`` named by content (None: the built-in data).
    heldout_data: the held-out text the masked-LM scores were measured on, in words; differs from
    ``score_data`` when the objective is a downstream task (None: studies written before it).
    latency_profile_hash: ``DeviceProfile.content_hash`` of the profile, so that a profile file
    calibrated again in place is not taken for the one the study was made with (None: older studies).
    precision: what the study's candidates are trained in (fp32 or bf16): ``--precision`` resolved on
    the device of the machine that made the study (``auto`` is bf16 on some GPUs only), so one
    study never mixes the two. None: not known yet (a Ray driver that sees no GPU, older studies);
    then the first completed trial sets it (``settle_score_meta``).
    recipe: ``nas.distill.settings.RECIPE_VERSION`` of the training recipe its candidates were trained
    with (None: a study made by mbnas 0.2.0 or earlier, recipe 1); a resume across it is refused.
    """

    space: dict[str, Any]
    strategy: str
    objective: str
    score_name: str
    score_data: str
    latency_profile: str
    latency_error: str
    teacher_hash: str
    reference_point: tuple[float, float]
    latency_budget_ms: float | None = None
    run_dir: str | None = None
    seed: int | None = None
    distill_options: dict[str, Any] = field(default_factory=dict)
    user_data: str | None = None
    heldout_data: str | None = None
    latency_profile_hash: str | None = None
    precision: str | None = None
    recipe: int | None = None

    def data_of(self, score: str) -> str:
        """The data ``score`` (a key of a trial's scores) was measured on."""
        if self.heldout_data is None and self.objective == "downstream" and score != self.score_name:
            return "held-out text (which is not recorded in this older study)"
        return data_of(score, self.score_name, self.score_data, self.heldout_data)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (what ``META_ATTR`` holds)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def save(self, study: Any) -> None:
        """Store the settings in ``study``: one attribute, one storage write (see ``META_ATTR``)."""
        study.set_user_attr(META_ATTR, self.to_dict())

    @classmethod
    def from_study(cls, study: Any) -> "StudyMeta | None":
        """``None`` when the study holds no settings (not created by ``mbnas search``, or not yet)."""
        attrs = study.user_attrs
        if META_ATTR in attrs:
            d = dict(attrs[META_ATTR])
        else:  # studies written before META_ATTR: one attribute per field
            d = {k[len(_PREFIX):]: v for k, v in attrs.items() if k.startswith(_PREFIX)}
            if "space" not in d:
                return None
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d["reference_point"] = tuple(d["reference_point"])
        return cls(**d)


def settle_score_meta(study, meta: StudyMeta, outcome) -> StudyMeta:
    """The trainer names its score and the data of its scores (an ``Outcome``); the study records
    what the first completed trial said, and its precision when the study's is not known yet."""
    said = {"score_name": outcome.score_name, "score_data": outcome.score_data,
            "heldout_data": outcome.heldout_data}
    changes = {k: v for k, v in said.items() if v and v != getattr(meta, k)}
    if meta.precision is None and outcome.precision:  # a Ray driver, or an older study: its first completed trial
        changes["precision"] = outcome.precision
    if not changes:
        return meta
    meta = dataclasses.replace(meta, **changes)
    meta.save(study)
    return meta
