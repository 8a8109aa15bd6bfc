"""Train one candidate from the fixed teacher and score it: ``distill_candidate``.

Call order: ``teacher_cache`` (once per search) -> ``init_student`` (embeddings and MLM head copied
from the teacher, for every strategy) -> the strategy's stages, each with its own warm-up and decay,
step t reading fresh transfer batch t -> ``evaluate_mlm`` on the fixed held-out batches ->
optionally a short downstream fine-tune.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from nas.device import autocast_for, training_precision
from nas.distill.downstream import evaluate_downstream
from nas.distill.losses import attention_loss, feature_map_loss, kd_loss
from nas.distill.settings import DistillSettings
from nas.distill.stage import Diverged, Stage
from nas.distill.teacher_cache import TeacherCache, teacher_cache
from nas.mlm import evaluate_mlm, masked_logits
from nas.models import build_masked_lm
from nas.proxies import evaluate_proxies
from nas.records import data_of
from search_spaces.candidate import Candidate

LayerCallback = Callable[[int, float], None]


class EarlyStop(Exception):
    """Raised by an ``on_layer`` callback to stop a hopeless candidate; the message says why."""


@dataclass
class DistillResult:
    """A trained candidate and its scores.

    score: the objective (``score_name``), measured on ``score_data``.
    scores: every score measured (block_fidelity, mlm_accuracy, heldout_ce, teacher_kl, top1_agreement, ...
        [, downstream_accuracy]); the masked-LM ones on ``heldout_data`` (``data_of`` says for each).
    layer_losses: transfer loss of each layer at the end of its phase (empty for theseus / none).
    seconds: wall time; timings: its parts (teacher_cache, train, evaluate, downstream).
    precision: what the training steps computed in (fp32 or bf16; the scores are fp32 either way).
    """

    candidate: Candidate
    student: Any
    strategy: str
    score: float
    score_name: str
    score_data: str
    scores: dict[str, float]
    layer_losses: list[float]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    teacher_hash: str | None = None
    heldout_data: str | None = None
    precision: str = "fp32"

    def data_of(self, score: str) -> str:
        return data_of(score, self.score_name, self.score_data, self.heldout_data)

    def save(self, out: str | Path) -> Path:
        """``model.safetensors`` + ``config.json`` of a stock ``MobileBertForMaskedLM``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.student.save_pretrained(out)
        return out


# ------------------------------------------------------------------------------------------------
def init_student(c: Candidate, teacher, from_teacher: bool, seed: int):
    """A fresh student; embeddings and MLM head start from the teacher's (identical shapes: the
    space fixes vocabulary, embedding and inter-block widths)."""
    student = build_masked_lm(c, seed=seed)
    if from_teacher:
        t_state = teacher.model.state_dict()
        s_state = student.state_dict()
        copied = {k: v for k, v in t_state.items()
                  if (k.startswith("mobilebert.embeddings.") or k.startswith("cls.")) and k in s_state
                  and s_state[k].shape == v.shape}
        student.load_state_dict(copied, strict=False)
    _attach_attention_taps(student)
    return student


def _attach_attention_taps(model) -> None:
    """Keep each layer's attention probabilities (B, heads, T, T) of the last forward pass."""
    layers = model.mobilebert.encoder.layer
    model._mbnas_attn = [None] * len(layers)

    def tap(i):
        def hook(_module, _inputs, output):
            model._mbnas_attn[i] = output[1]
        return hook

    for i, layer in enumerate(layers):
        layer.attention.self.register_forward_hook(tap(i))


def _blocks(model):
    return model.mobilebert.encoder.layer


def _forward_upto(model, input_ids: torch.Tensor, upto: int) -> list[torch.Tensor]:
    """Embeddings and blocks 0..upto for layer-wise transfer; returns each block's output (B, T, H).
    No attention mask: transfer windows are full length.

    Attention dropout is off for this pass (other stages keep the config's): transformers' eager
    attention hands out its probabilities *after* dropout, zeros where dropped and the rest scaled
    by 1 / (1 - p), and the attention-transfer KL needs distributions. With dropout on, every
    dropped key added -t * log(1e-9) to the loss and the kept ones were pulled to (1 - p) times
    the teacher's (the teacher's maps are taken in eval mode).
    """
    blocks = _blocks(model)[: upto + 1]
    drops = [layer.attention.self.dropout for layer in blocks]
    rates = [d.p for d in drops]
    for d in drops:
        d.p = 0.0
    try:
        h = model.mobilebert.embeddings(input_ids=input_ids)
        outs = []
        for layer in blocks:
            h = layer(h, None)
            outs.append(h)
        return outs
    finally:
        for d, p in zip(drops, rates):
            d.p = p


def _layer_loss(student, cache: TeacherCache, i: int, layer: int, outs: list[torch.Tensor], s) -> torch.Tensor:
    """Feature-map + attention transfer of one layer on transfer batch i."""
    hidden, attn = cache.outputs[i]
    fm = feature_map_loss(outs[layer], hidden[layer + 1].to(outs[layer].device), s.weights)
    at = attention_loss(student._mbnas_attn[layer], attn[layer].to(outs[layer].device))
    return fm + s.weights.attention * at


def _kd_step_loss(student, teacher, cache: TeacherCache, i: int, s, device: str) -> torch.Tensor:
    b = cache.transfer[i].to(device)
    hidden = student.mobilebert(input_ids=b.input_ids).last_hidden_state
    logits = masked_logits(student, hidden, b.labels).float()
    with torch.no_grad():
        t_logits = masked_logits(teacher.model, cache.outputs[i][0][-1].to(device).float(), b.labels)
    return kd_loss(logits, t_logits, b.labels[b.labels != -100], s.alpha, s.temperature)


def _mlm_step_loss(student, cache: TeacherCache, i: int, device: str, forward=None) -> torch.Tensor:
    b = cache.transfer[i].to(device)
    hidden = (forward or (lambda ids: student.mobilebert(input_ids=ids).last_hidden_state))(b.input_ids)
    return F.cross_entropy(masked_logits(student, hidden, b.labels).float(), b.labels[b.labels != -100])


def _tail_mean(values: list[float], frac: float = 0.2) -> float:
    n = max(1, int(len(values) * frac))
    return float(sum(values[-n:]) / n)


def _stage(params, s, steps: int) -> Stage:
    return Stage([{"params": list(params)}], s.lr, steps, s.warmup)


# ------------------------------------------------------------------------------------------------
# strategies: each returns per-layer transfer losses; step t of a candidate reads transfer batch t
def _progressive(student, teacher, cache, s, on_layer, device) -> list[float]:
    """One layer at a time (``s.layerwise_release``, README "Strategies"). tf1: embeddings frozen,
    one optimiser over the blocks whose state carries across phases, earlier layers at
    ``earlier_lr_scale`` x lr; tf2: embeddings and earlier layers at the full rate, a new optimiser
    per phase. Each phase has its own warm-up and decay."""
    layers, losses = _blocks(student), []
    emb = list(student.mobilebert.embeddings.parameters())
    tf1 = s.layerwise_release == "tf1"
    stage = Stage([{"params": list(layer.parameters())} for layer in layers], s.lr, s.layer_steps,
                   s.warmup) if tf1 else None
    for p in emb:
        p.requires_grad_(not tf1)
    step = 0
    for l in range(len(layers)):
        if tf1:
            scale = s.earlier_lr_scale
            stage.phase([s.lr * scale] * l + [s.lr] + [0.0] * (len(layers) - l - 1), s.layer_steps)
            for j in range(l):
                for p in layers[j].parameters():
                    p.requires_grad_(scale > 0)
        else:
            stage = _stage(emb + [p for j in range(l + 1) for p in layers[j].parameters()], s, s.layer_steps)
        hist = []
        for _ in range(s.layer_steps):
            outs = _forward_upto(student, cache.transfer[step].input_ids.to(device), l)
            hist.append(stage.step(_layer_loss(student, cache, step, l, outs, s), f"layer {l} transfer"))
            step += 1
        losses.append(_tail_mean(hist))
        if on_layer:
            on_layer(l, losses[-1])
    for p in student.parameters():
        p.requires_grad_(True)
    return losses


def _joint_layerwise(student, cache, s, device, steps: int, with_kd=None) -> list[float]:
    """All layers' transfer losses summed (joint), plus the distillation loss when ``with_kd``."""
    L = len(_blocks(student))
    stage = _stage(student.parameters(), s, steps)
    hist: list[list[float]] = [[] for _ in range(L)]
    for step in range(steps):
        outs = _forward_upto(student, cache.transfer[step].input_ids.to(device), L - 1)
        per = [_layer_loss(student, cache, step, l, outs, s) for l in range(L)]
        loss = sum(per)
        if with_kd is not None:
            loss = loss + with_kd(step)
        stage.step(loss, "joint layer-wise transfer" if with_kd is None else "auxiliary transfer")
        for l in range(L):
            hist[l].append(per[l].item())
    return [_tail_mean(h) for h in hist]


def _pd(student, teacher, cache, s, device, steps: int, offset: int = 0) -> None:
    """Pre-training distillation: hard labels + teacher logits at masked positions, all parameters."""
    stage = _stage(student.parameters(), s, steps)
    for step in range(offset, offset + steps):
        stage.step(_kd_step_loss(student, teacher, cache, step, s, device), "pre-training distillation")


def _mlm_only(student, cache, s, device, steps: int, where: str, offset: int = 0, params=None) -> None:
    stage = _stage(student.parameters() if params is None else params, s, steps)
    for step in range(offset, offset + steps):
        stage.step(_mlm_step_loss(student, cache, step, device), where)


def copy_predecessors(student, teacher) -> tuple[int, int]:
    """Start each successor block from its predecessor (the teacher block it replaces) where shapes
    allow, as the reference does (``deepcopy`` of the predecessor layers): every tensor of teacher
    block j whose name and shape match student block j's is copied. Returns (copied, total) tensors:
    a student narrower than the teacher shares only its inter-block-width tensors with it."""
    copied = total = 0
    with torch.no_grad():
        for t_layer, s_layer in zip(_blocks(teacher.model), _blocks(student)):
            t_state = t_layer.state_dict()
            for name, v in s_layer.state_dict().items():
                total += 1
                if name in t_state and t_state[name].shape == v.shape:
                    v.copy_(t_state[name])
                    copied += 1
    return copied, total


def _theseus(student, teacher, cache, s, device, steps: int, constant: bool) -> None:
    """BERT-of-Theseus (JetRunner/BERT-of-Theseus): each teacher block (predecessor) is replaced by
    the student block (successor) with probability p; only the successors are optimised
    (predecessors, embeddings and MLM head frozen); task loss only (masked-LM)."""
    t_layers, s_layers = _blocks(teacher.model), _blocks(student)
    b0 = s.theseus_b
    k = (1.0 - b0) / max(1.0, 0.9 * steps)  # p reaches 1 at 90% of the stage
    gen = torch.Generator().manual_seed(s.seed)
    stage = _stage(s_layers.parameters(), s, steps)
    for step in range(steps):
        p = s.theseus_p if constant else min(1.0, k * step + b0)
        use_student = (torch.rand(len(s_layers), generator=gen) < p).tolist()
        if not any(use_student):  # every predecessor drawn: nothing to train this step (its rate is spent)
            stage.skip()
            continue

        def mixed(ids, use=use_student):
            h = student.mobilebert.embeddings(input_ids=ids)
            for j, flag in enumerate(use):
                h = (s_layers[j] if flag else t_layers[j])(h, None)
            return h

        stage.step(_mlm_step_loss(student, cache, step, device, forward=mixed), "theseus module replacing")


# ------------------------------------------------------------------------------------------------
def distill_candidate(c: Candidate, teacher, settings: DistillSettings, on_layer: LayerCallback | None = None,
                      corpus=None) -> DistillResult:
    """Train ``c`` from ``teacher`` with ``settings.strategy`` and score it.

    ``on_layer(layer, transfer_loss)`` is called after each layer's phase; it may raise
    ``EarlyStop``. A non-finite loss raises ``Diverged``.
    """
    s, device = settings, settings.device
    t0 = time.time()
    cache = teacher_cache(teacher, s, corpus)
    t_cache = time.time() - t0
    torch.manual_seed(s.seed)
    # every strategy inherits the teacher's embeddings and MLM head (identical shapes), the no-teacher
    # baseline too, so that it isolates what the blocks' transfer adds (and trains them)
    student = init_student(c, teacher, from_teacher=True, seed=s.seed).to(device).train()
    L = c.num_layers
    stage_steps = L * s.layer_steps
    layer_losses: list[float] = []
    with autocast_for(device, s.precision):
        if s.strategy == "progressive":
            layer_losses = _progressive(student, teacher, cache, s, on_layer, device)
            _pd(student, teacher, cache, s, device, s.pd_steps, offset=stage_steps)
        elif s.strategy == "joint":
            layer_losses = _joint_layerwise(student, cache, s, device, stage_steps)
            _report(layer_losses, on_layer)
            _pd(student, teacher, cache, s, device, s.pd_steps, offset=stage_steps)
        elif s.strategy == "auxiliary":
            layer_losses = _joint_layerwise(student, cache, s, device, stage_steps + s.pd_steps,
                                            with_kd=lambda i: _kd_step_loss(student, teacher, cache, i, s, device))
            _report(layer_losses, on_layer)
        elif s.strategy in ("theseus", "theseus-constant"):
            copy_predecessors(student, teacher)
            blocks = set(_blocks(student).parameters())
            for p in student.parameters():  # embeddings and MLM head stay the teacher's: no gradient to compute
                p.requires_grad_(p in blocks)
            _theseus(student, teacher, cache, s, device, stage_steps, constant=s.strategy == "theseus-constant")
            _mlm_only(student, cache, s, device, s.pd_steps, "successor fine-tuning", offset=stage_steps,
                      params=_blocks(student).parameters())
            for p in student.parameters():
                p.requires_grad_(True)
        else:  # none: the no-teacher baseline (inherited embeddings and head), same number of steps
            _mlm_only(student, cache, s, device, stage_steps + s.pd_steps, "masked-LM without a teacher")
    t_train = time.time() - t0 - t_cache
    scores = evaluate_mlm(student, cache.heldout, teacher=teacher.model, device=device,
                          teacher_hidden=cache.heldout_hidden).as_dict()
    scores.pop("n_masked", None)
    scores.update(evaluate_proxies(student, teacher, cache, device))
    t_eval = time.time() - t0 - t_cache - t_train
    timings = {"teacher_cache": t_cache, "train": t_train, "evaluate": t_eval}
    score_name, score_data = s.score_name, cache.data
    if s.objective == "downstream":
        t1 = time.time()
        acc, data = evaluate_downstream(student, c, s, teacher.vocab, s.task_csv)
        scores["downstream_accuracy"] = acc
        score_name, score_data = "downstream_accuracy", data
        timings["downstream"] = time.time() - t1
    for k, v in scores.items():
        if not math.isfinite(v):
            raise Diverged(f"score {k} is {v}")
    return DistillResult(candidate=c, student=student, strategy=s.strategy, score=scores[score_name],
                         score_name=score_name, score_data=score_data, scores=scores, layer_losses=layer_losses,
                         seconds=time.time() - t0, timings=timings, teacher_hash=teacher.hash,
                         heldout_data=cache.data, precision=training_precision(device, s.precision))


def _report(losses: list[float], on_layer: LayerCallback | None) -> None:
    if on_layer:
        for l, v in enumerate(losses):
            on_layer(l, v)
