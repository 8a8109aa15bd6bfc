"""Knowledge-transfer losses of MobileBERT (paper section 3.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_map_loss(s: torch.Tensor, t: torch.Tensor, w) -> torch.Tensor:
    """s, t: (B, T, H) inter-block feature maps of one layer.

    MSE of the layer-normalised maps (weight ``w.fmt``) plus matching of each token's mean
    (``w.mean``) and variance (``w.var``) over the hidden dimension, as released.
    """
    t = t.float()
    h = s.shape[-1]
    fmt = F.mse_loss(F.layer_norm(s, (h,)), F.layer_norm(t, (h,)))
    mean = F.mse_loss(s.mean(-1), t.mean(-1))
    var = (s.var(-1, unbiased=False) - t.var(-1, unbiased=False)).abs().mean()
    return w.fmt * fmt + w.mean * mean + w.var * var


def attention_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """s, t: (B, heads, T, T) attention distributions; KL(t || s) summed over keys, averaged over
    batch, heads and queries."""
    t = t.float()
    return (t * (torch.log(t.clamp_min(1e-9)) - torch.log(s.clamp_min(1e-9)))).sum(-1).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            alpha: float, temperature: float) -> torch.Tensor:
    """Pre-training distillation at masked positions: logits (N, V), labels (N,)."""
    hard = F.cross_entropy(student_logits, labels)
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, -1), F.log_softmax(teacher_logits.float() / T, -1),
                    log_target=True, reduction="batchmean") * T * T
    return alpha * hard + (1 - alpha) * soft
