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


CPU_ROWS = 8  # rows of (rows, V) slices: 8 x 30,522 fp32 = 1 MB, inside one core's L2


class _KdLoss(torch.autograd.Function):
    """alpha * CE(z, y) + (1 - alpha) * T^2 * KL(p_t^T || p_s^T), mean over the N masked positions.

    Why not autograd: at the demo shape (N ~ 300 masked positions x V = 30,522) the taped form
    spends more time on element-wise passes over (N, V) than the student's whole encoder spends
    on matmuls: the divisions by T, three log-softmaxes, KL's exp/sub/mul, their backward passes,
    and a fresh (N, V) allocation for each (page faults on this kind of host cost about as much as
    the arithmetic). Here the gradient is written down,
        d/dz = [alpha * (softmax(z) - onehot(y)) + (1 - alpha) * T * (softmax(z / T) - p_t^T)] / N,
    and computed in the forward pass ``rows`` rows at a time into a few reused (rows, V) buffers,
    so each slice is still in cache for its next pass. Measured at 300 x 30,522 on one thread:
    330-360 ms (taped) -> 87 ms for loss and gradient; ``kd_loss_reference`` is the taped form the
    tests compare it with.
    """

    @staticmethod
    def forward(ctx, z, t, y, alpha: float, temperature: float):
        n, v = z.shape
        T = temperature
        rows = n if z.is_cuda else CPU_ROWS  # a GPU wants the whole matrix in one kernel
        grad = torch.empty_like(z)  # (N, V)
        # (rows, V) buffers: log p_t^T, log p_s, log p_s^T (T != 1 only), p_t^T, scratch
        log_pt, log_ps, pt, tmp = (z.new_empty(min(rows, n), v) for _ in range(4))
        log_psT = log_ps if T == 1 else z.new_empty(min(rows, n), v)
        total = torch.zeros((), dtype=torch.float64, device=z.device)
        with torch.autocast(z.device.type, enabled=False):
            for a in range(0, n, rows):
                r = min(rows, n - a)
                zc, tc, yc, g = z[a:a + r], t[a:a + r], y[a:a + r], grad[a:a + r]  # (r, V) (r, V) (r,) (r, V)
                A, B, C, P, X = log_pt[:r], log_ps[:r], log_psT[:r], pt[:r], tmp[:r]
                torch.log_softmax(tc if T == 1 else torch.div(tc, T, out=X), -1, out=A)
                torch.log_softmax(zc, -1, out=B)
                if T != 1:
                    torch.log_softmax(torch.div(zc, T, out=X), -1, out=C)
                torch.exp(A, out=P)
                hard = -B.gather(1, yc[:, None]).sum()
                soft = torch.sub(A, C, out=X).mul_(P).sum()  # sum of KL(p_t^T || p_s^T) over the rows
                total += alpha * hard + (1 - alpha) * T * T * soft
                rows_idx = torch.arange(r, device=z.device)
                if T == 1:
                    torch.exp(B, out=g)
                    g[rows_idx, yc] -= alpha
                    g.sub_(P, alpha=1 - alpha)
                else:
                    torch.exp(B, out=g).mul_(alpha)
                    g[rows_idx, yc] -= alpha
                    g.add_(torch.exp(C, out=X).sub_(P), alpha=(1 - alpha) * T)
        ctx.save_for_backward(grad.div_(n))
        return (total / n).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        # in place: no second (N, V) allocation; a second backward through the same graph would
        # trip autograd's version check instead of silently scaling twice
        return grad.mul_(grad_out), None, None, None, None


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            alpha: float, temperature: float) -> torch.Tensor:
    """Pre-training distillation at masked positions: logits (N, V) fp32, labels (N,).

    alpha * hard-label cross-entropy + (1 - alpha) * T^2 * KL(teacher || student) at temperature T
    (``_KdLoss``: same value and gradient as the textbook form, ``kd_loss_reference``)."""
    return _KdLoss.apply(student_logits.float(), teacher_logits.float().detach(), labels, alpha, temperature)


def kd_loss_reference(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """The textbook form of ``kd_loss`` through autograd (what the tests compare it with)."""
    hard = F.cross_entropy(student_logits, labels)
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, -1), F.log_softmax(teacher_logits.float() / T, -1),
                    log_target=True, reduction="batchmean") * T * T
    return alpha * hard + (1 - alpha) * soft
