"""Masked-LM pieces shared by teacher pre-training, distillation and evaluation.

The MLM head is applied only at masked positions: at the demo shape the vocabulary projection
over every position costs more than the whole encoder, and the loss only reads masked ones.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from nas.data.tokenizer import Batch


def encode(model, batch: Batch, **kwargs):
    """Run the encoder (``model.mobilebert``) of a ``MobileBertForMaskedLM``."""
    return model.mobilebert(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)


def masked_logits(model, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, H), labels (B, T) -> logits (N_masked, V) at positions where labels != -100."""
    sel = hidden[labels != -100]  # (N, H)
    return model.cls(sel)  # (N, V)


def mlm_loss(model, batch: Batch) -> torch.Tensor:
    hidden = encode(model, batch).last_hidden_state  # (B, T, H)
    logits = masked_logits(model, hidden, batch.labels)
    return F.cross_entropy(logits.float(), batch.labels[batch.labels != -100])


@dataclass(frozen=True)
class MlmScores:
    """Task-agnostic scores on held-out masked positions.

    mlm_accuracy: top-1 accuracy of the masked token.
    heldout_ce: mean cross-entropy (nats) of the masked token.
    teacher_kl: mean KL(teacher || model) of the predicted distributions (None without a teacher).
    top1_agreement: share of masked positions where model and teacher predict the same token.
    block_fidelity: how well each block reproduces the teacher's block on held-out text: every
        block gets the teacher's input to that block, its output is rescaled per token to the
        teacher's, and the Pearson correlation (over the hidden dimension, per token) between the
        block's update to the feature map and the teacher block's update is averaged over tokens and
        blocks (``block_fidelity``). None without a teacher, or
        when the block counts or widths differ. Unlike the MLM scores it does not pass through the
        embeddings and MLM head every student inherits from the teacher.
    n_masked: masked positions scored.
    """

    mlm_accuracy: float
    heldout_ce: float
    teacher_kl: float | None
    top1_agreement: float | None
    n_masked: int
    block_fidelity: float | None = None

    def as_dict(self) -> dict[str, float]:
        """Every score, plus the two "higher is better" forms the search can maximise:
        mlm_likelihood = exp(-heldout_ce), the geometric-mean probability of the right token;
        teacher_fidelity = exp(-teacher_kl)."""
        d = {k: v for k, v in self.__dict__.items() if v is not None}
        d["mlm_likelihood"] = math.exp(-self.heldout_ce)
        if self.teacher_kl is not None:
            d["teacher_fidelity"] = math.exp(-self.teacher_kl)
        return d


def feature_correlation(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """s, t: (B, T, H) feature maps -> their mean per-token Pearson correlation over H (a scalar).

    Both maps are layer-normalised (zero mean, unit variance per token), so the correlation is
    mean(s_n * t_n) = 1 - MSE(s_n, t_n) / 2: the normalised feature-map transfer loss, read as a similarity.
    """
    h = s.shape[-1]
    return (F.layer_norm(s.float(), (h,)) * F.layer_norm(t.float(), (h,))).mean(-1).mean()


def match_token_scale(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """s, t: (B, T, H) -> s with each token's mean and standard deviation over H set to t's."""
    s_mean, t_mean = s.mean(-1, keepdim=True), t.mean(-1, keepdim=True)
    s_std, t_std = s.std(-1, unbiased=False, keepdim=True), t.std(-1, unbiased=False, keepdim=True)
    return (s - s_mean) / s_std.clamp_min(1e-6) * t_std + t_mean


def block_fidelity(model, teacher_states: torch.Tensor, rescale: bool = True) -> float:
    """teacher_states: (L+1, B, T, H) the teacher's embeddings then each block's output, on one batch.

    Block l of ``model`` is fed the teacher's input to block l; its output token is rescaled to the
    teacher block's output token's mean and standard deviation (``rescale``; ``match_token_scale``),
    and its update (output - input) is compared with the teacher block's update by
    ``feature_correlation``; mean over blocks. The residual part of the feature map, which every
    block passes through, is left out: kept in, it makes every student look ~0.95 alike.

    Why rescale: without it the score reads each output token's scale and shift (the update is
    taken before normalising), which the feature-map loss deliberately ignores (it compares
    layer-normalised maps). So it split the demo's candidates by LayerNorm vs NoNorm while their
    held-out accuracy was flat; rescaled, that gap shrank by 88-100%. Full windows: no attention mask.
    """
    th = teacher_states.float()
    rs = []
    for l, layer in enumerate(model.mobilebert.encoder.layer):
        out = layer(th[l], None)  # (B, T, H)
        if rescale:
            out = match_token_scale(out, th[l + 1])
        rs.append(feature_correlation(out - th[l], th[l + 1] - th[l]).item())
    return sum(rs) / len(rs)


@torch.no_grad()
@contextmanager
def blocks_skipped(model):
    """``model`` (a MobileBertForMaskedLM) with its encoder blocks removed while inside: the MLM head
    reads the embeddings' output directly. What the embeddings and head alone score is the floor the
    blocks are measured from (how much of a teacher's quality its blocks, the part a search changes,
    provide)."""
    blocks = model.mobilebert.encoder.layer
    model.mobilebert.encoder.layer = torch.nn.ModuleList()
    try:
        yield model
    finally:
        model.mobilebert.encoder.layer = blocks


class ScoresWithFloor(NamedTuple):
    full: MlmScores  # the model as it is
    floor: MlmScores  # the same model with its blocks skipped: the embeddings and head alone


def score_with_floor(model, batches: list[Batch], device: str = "cpu") -> ScoresWithFloor:
    """``model``'s scores on ``batches`` and its floor's (``blocks_skipped``): what its blocks add is
    the difference."""
    full = evaluate_mlm(model, batches, device=device)
    with blocks_skipped(model):
        floor = evaluate_mlm(model, batches, device=device)
    return ScoresWithFloor(full, floor)


def evaluate_mlm(model, batches: list[Batch], teacher=None, device: str = "cpu",
                 teacher_hidden: list[torch.Tensor] | None = None) -> MlmScores:
    """Score ``model`` on fixed held-out batches. ``teacher_hidden`` (cached teacher states, one
    (L+1, B, T, H) tensor per batch: embeddings, then each block) spares the teacher's encoder pass."""
    was_training = model.training
    model.eval()
    correct = n = 0
    ce = kl = agree = fid = 0.0
    fid_ok = teacher is not None
    for i, b in enumerate(batches):
        b = b.to(device)
        y = b.labels[b.labels != -100]
        logits = masked_logits(model, encode(model, b).last_hidden_state, b.labels).float()
        logp = F.log_softmax(logits, -1)
        ce += F.nll_loss(logp, y, reduction="sum").item()
        pred = logits.argmax(-1)
        correct += (pred == y).sum().item()
        n += y.numel()
        if teacher is not None:
            th = teacher_hidden[i].to(device) if teacher_hidden is not None else \
                torch.stack(encode(teacher, b, output_hidden_states=True).hidden_states)  # (L+1, B, T, H)
            t_logp = F.log_softmax(masked_logits(teacher, th[-1].float(), b.labels).float(), -1)
            kl += F.kl_div(logp, t_logp, log_target=True, reduction="sum").item()
            agree += (t_logp.argmax(-1) == pred).sum().item()
            cfg = model.config
            fid_ok = fid_ok and th.shape[0] == cfg.num_hidden_layers + 1 and th.shape[-1] == cfg.hidden_size
            if fid_ok:
                fid += block_fidelity(model, th)
    model.train(was_training)
    with_teacher = teacher is not None
    return MlmScores(
        mlm_accuracy=correct / n, heldout_ce=ce / n,
        teacher_kl=kl / n if with_teacher else None,
        top1_agreement=agree / n if with_teacher else None, n_masked=n,
        block_fidelity=fid / len(batches) if fid_ok else None,
    )
