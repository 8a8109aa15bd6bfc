"""Train one candidate from the fixed teacher and score it: ``distill_candidate``.

Call order: ``teacher_cache`` (once per search) -> ``init_student`` (embeddings and MLM head copied
from the teacher, except for the no-teacher baseline) -> the strategy's stages -> ``evaluate_mlm``
on the fixed held-out batches -> optionally a short downstream fine-tune.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from nas.candidate import Candidate
from nas.device import autocast_for, training_precision
from nas.distill.losses import attention_loss, feature_map_loss, kd_loss
from nas.distill.settings import DistillSettings
from nas.distill.teacher_cache import TeacherCache, teacher_cache
from nas.mlm import evaluate_mlm, masked_logits
from nas.records import data_of

LayerCallback = Callable[[int, float], None]


class EarlyStop(Exception):
    """Raised by an ``on_layer`` callback to stop a hopeless candidate; the message says why."""


class Diverged(Exception):
    """Training produced a non-finite loss; the message says where."""


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
    from nas.models import build_masked_lm

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


def _check(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise Diverged(f"loss became {loss.item()} during {where}")


class _Stage:
    """An optimiser over parameter groups, stepping with clipping and a finite-loss check."""

    def __init__(self, groups: list[dict], lr: float) -> None:
        self.params = [p for g in groups for p in g["params"]]
        # fused: one kernel over all parameters instead of a dozen small ops per tensor (the student
        # has ~150 tensors; the per-tensor loop was ~8% of a pre-training-distillation step on CPU)
        self.opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, fused=True)

    def step(self, loss: torch.Tensor, where: str) -> float:
        _check(loss, where)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return loss.item()


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


# ------------------------------------------------------------------------------------------------
# strategies: each returns per-layer transfer losses
def _progressive(student, teacher, cache, s, on_layer, device) -> list[float]:
    layers, losses = _blocks(student), []
    emb = list(student.mobilebert.embeddings.parameters())
    n = len(cache.transfer)
    step = 0
    for l in range(len(layers)):
        earlier = emb + [p for j in range(l) for p in layers[j].parameters()]
        groups = [{"params": list(layers[l].parameters()), "lr": s.lr}]
        for p in earlier:
            p.requires_grad_(s.earlier_lr_scale > 0)
        if s.earlier_lr_scale > 0:
            groups.append({"params": earlier, "lr": s.lr * s.earlier_lr_scale})
        stage, hist = _Stage(groups, s.lr), []
        for _ in range(s.layer_steps):
            i = step % n
            outs = _forward_upto(student, cache.transfer[i].input_ids.to(device), l)
            hist.append(stage.step(_layer_loss(student, cache, i, l, outs, s), f"layer {l} transfer"))
            step += 1
        losses.append(_tail_mean(hist))
        if on_layer:
            on_layer(l, losses[-1])
    for p in student.parameters():
        p.requires_grad_(True)
    return losses


def _joint_layerwise(student, cache, s, device, steps: int, with_kd=None) -> list[float]:
    """All layers' transfer losses summed (joint), plus the distillation loss when ``with_kd``."""
    L, n = len(_blocks(student)), len(cache.transfer)
    stage = _Stage([{"params": list(student.parameters())}], s.lr)
    hist: list[list[float]] = [[] for _ in range(L)]
    for step in range(steps):
        i = step % n
        outs = _forward_upto(student, cache.transfer[i].input_ids.to(device), L - 1)
        per = [_layer_loss(student, cache, i, l, outs, s) for l in range(L)]
        loss = sum(per)
        if with_kd is not None:
            loss = loss + with_kd(i)
        stage.step(loss, "joint layer-wise transfer" if with_kd is None else "auxiliary transfer")
        for l in range(L):
            hist[l].append(per[l].item())
    return [_tail_mean(h) for h in hist]


def _pd(student, teacher, cache, s, device, steps: int, offset: int = 0) -> None:
    """Pre-training distillation: hard labels + teacher logits at masked positions, all parameters."""
    stage, n = _Stage([{"params": list(student.parameters())}], s.lr), len(cache.transfer)
    for step in range(steps):
        stage.step(_kd_step_loss(student, teacher, cache, (offset + step) % n, s, device), "pre-training distillation")


def _mlm_only(student, cache, s, device, steps: int, where: str, offset: int = 0) -> None:
    stage, n = _Stage([{"params": list(student.parameters())}], s.lr), len(cache.transfer)
    for step in range(steps):
        stage.step(_mlm_step_loss(student, cache, (offset + step) % n, device), where)


def _theseus(student, teacher, cache, s, device, steps: int, constant: bool) -> None:
    """BERT-of-Theseus: each teacher block is replaced by the student block with probability p;
    teacher blocks stay frozen; task loss only (masked-LM)."""
    t_layers, s_layers = _blocks(teacher.model), _blocks(student)
    b0 = s.theseus_b
    k = (1.0 - b0) / max(1.0, 0.9 * steps)  # p reaches 1 at 90% of the stage
    gen = torch.Generator().manual_seed(s.seed)
    stage, n = _Stage([{"params": list(student.parameters())}], s.lr), len(cache.transfer)
    for step in range(steps):
        p = s.theseus_p if constant else min(1.0, k * step + b0)
        use_student = (torch.rand(len(s_layers), generator=gen) < p).tolist()

        def mixed(ids, use=use_student):
            h = student.mobilebert.embeddings(input_ids=ids)
            for j, flag in enumerate(use):
                h = (s_layers[j] if flag else t_layers[j])(h, None)
            return h

        stage.step(_mlm_step_loss(student, cache, step % n, device, forward=mixed), "theseus module replacing")


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
    student = init_student(c, teacher, from_teacher=s.strategy != "none", seed=s.seed).to(device).train()
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
            _theseus(student, teacher, cache, s, device, stage_steps, constant=s.strategy == "theseus-constant")
            _mlm_only(student, cache, s, device, s.pd_steps, "successor fine-tuning", offset=stage_steps)
        else:  # none: the no-teacher baseline, same number of steps
            _mlm_only(student, cache, s, device, stage_steps + s.pd_steps, "masked-LM without a teacher")
    t_train = time.time() - t0 - t_cache
    scores = evaluate_mlm(student, cache.heldout, teacher=teacher.model, device=device,
                          teacher_hidden=cache.heldout_hidden).as_dict()
    scores.pop("n_masked", None)
    t_eval = time.time() - t0 - t_cache - t_train
    timings = {"teacher_cache": t_cache, "train": t_train, "evaluate": t_eval}
    score_name, score_data = s.score_name, cache.data
    if s.objective == "downstream":
        from nas.distill.downstream import evaluate_downstream

        t1 = time.time()
        acc, data = evaluate_downstream(student, c, s, s.task_csv)
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
