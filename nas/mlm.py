"""Masked-LM pieces shared by teacher pre-training, distillation and evaluation.

The MLM head is applied only at masked positions: at the demo shape the vocabulary projection
over every position costs more than the whole encoder, and the loss only reads masked ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    n_masked: masked positions scored.
    """

    mlm_accuracy: float
    heldout_ce: float
    teacher_kl: float | None
    top1_agreement: float | None
    n_masked: int

    def as_dict(self) -> dict[str, float]:
        """Every score, plus the two "higher is better" forms the search can maximise:
        mlm_likelihood = exp(-heldout_ce), the geometric-mean probability of the right token;
        teacher_fidelity = exp(-teacher_kl)."""
        d = {k: v for k, v in self.__dict__.items() if v is not None}
        d["mlm_likelihood"] = math.exp(-self.heldout_ce)
        if self.teacher_kl is not None:
            d["teacher_fidelity"] = math.exp(-self.teacher_kl)
        return d


@torch.no_grad()
def evaluate_mlm(model, batches: list[Batch], teacher=None, device: str = "cpu",
                 teacher_hidden: list[torch.Tensor] | None = None) -> MlmScores:
    """Score ``model`` on fixed held-out batches; ``teacher_hidden`` (cached final hidden states,
    one (B, T, H) tensor per batch) spares the teacher's encoder pass."""
    was_training = model.training
    model.eval()
    correct = n = 0
    ce = kl = agree = 0.0
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
                encode(teacher, b).last_hidden_state
            t_logp = F.log_softmax(masked_logits(teacher, th.float(), b.labels).float(), -1)
            kl += F.kl_div(logp, t_logp, log_target=True, reduction="sum").item()
            agree += (t_logp.argmax(-1) == pred).sum().item()
    model.train(was_training)
    return MlmScores(
        mlm_accuracy=correct / n, heldout_ce=ce / n,
        teacher_kl=kl / n if teacher is not None else None,
        top1_agreement=agree / n if teacher is not None else None, n_masked=n,
    )
