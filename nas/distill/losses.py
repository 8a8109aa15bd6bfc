"""Knowledge-transfer losses of MobileBERT (paper section 3.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _mean_var(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token mean and (biased) variance over the last dimension, (B, T) each.

    Centred two-pass form: on CPU ``Tensor.var`` takes ~10x as long (2.4 vs 0.28 ms at 32 x 64 x 128,
    one thread; it was a quarter of the feature-map loss), with the same result to fp32 rounding.
    With the teacher's side off the tape, loss and gradient went from 10.2 to 6.6 ms there."""
    mean = x.mean(-1)
    c = x - mean.unsqueeze(-1)
    return mean, (c * c).mean(-1)


def feature_map_loss(s: torch.Tensor, t: torch.Tensor, w) -> torch.Tensor:
    """s, t: (B, T, H) inter-block feature maps of one layer.

    MSE of the layer-normalised maps (weight ``w.fmt``) plus matching of each token's mean
    (``w.mean``) and variance (``w.var``) over the hidden dimension, as released
    (``feature_map_loss_reference`` is the textbook form the tests compare it with).
    """
    h = s.shape[-1]
    s = s.float()  # under CUDA autocast a block may hand out bf16; the variance term weighs 5000 (no-op in fp32)
    with torch.no_grad():  # the teacher's side is a constant: no tape
        t = t.float()
        t_ln = F.layer_norm(t, (h,))
        t_mean, t_var = _mean_var(t)
    s_mean, s_var = _mean_var(s)
    fmt = F.mse_loss(F.layer_norm(s, (h,)), t_ln)
    mean = F.mse_loss(s_mean, t_mean)
    var = (s_var - t_var).abs().mean()
    return w.fmt * fmt + w.mean * mean + w.var * var


def feature_map_loss_reference(s: torch.Tensor, t: torch.Tensor, w) -> torch.Tensor:
    """The textbook form of ``feature_map_loss`` (what the tests compare it with)."""
    t = t.float()
    h = s.shape[-1]
    fmt = F.mse_loss(F.layer_norm(s, (h,)), F.layer_norm(t, (h,)))
    mean = F.mse_loss(s.mean(-1), t.mean(-1))
    var = (s.var(-1, unbiased=False) - t.var(-1, unbiased=False)).abs().mean()
    return w.fmt * fmt + w.mean * mean + w.var * var


ATTENTION_EPS = 1e-9  # probabilities are clamped here before the log (a softmax can underflow to 0)


class _AttentionKl(torch.autograd.Function):
    """KL(t || s) summed over keys, averaged over the other dimensions; s, t: (B, heads, T, T).

    Why not autograd: the taped form makes nine passes over (B, heads, T, T), each into a fresh
    tensor (clamps, logs, difference, product, sums), and as many back, although the teacher's half
    is a constant. Here the loss is <t, log t> - <t, log s> (two dot products) and the gradient,
    -t / max(s, eps) where s >= eps and 0 below (the clamp's), is written down; the mask is applied
    only when some probability did fall below eps (one min over s tells). Measured at 32 x 4 x 64 x
    64 on one thread, loss and gradient: 7.1 -> 4.3 ms (medians of 3 runs, noisy machine); with
    ``feature_map_loss``'s change, a joint layer-wise step of the demo student (4 layers' losses)
    went from 262 to 248 ms (medians of 8 alternating rounds).
    """

    @staticmethod
    def forward(ctx, s, t):
        rows = s.numel() // s.shape[-1]  # B * heads * T distributions
        t = t.float().reshape(-1)  # (N,): a copy when t is the cache's fp16
        s_cl = s.clamp_min(ATTENTION_EPS)
        buf = torch.log(s_cl).reshape(-1)
        cross = torch.dot(t, buf)  # sum t * log s
        torch.clamp_min(t, ATTENTION_EPS, out=buf).log_()
        ent = torch.dot(t, buf)  # sum t * log t: a constant, for the loss's value only
        ctx.save_for_backward(s, s_cl, t)
        ctx.rows, ctx.clamped = rows, bool(s.min() < ATTENTION_EPS)
        return (ent - cross) / rows

    @staticmethod
    def backward(ctx, grad_out):
        s, s_cl, t = ctx.saved_tensors
        grad = torch.div(t.view_as(s), s_cl).mul_(-grad_out / ctx.rows)  # (B, heads, T, T)
        if ctx.clamped:
            grad.masked_fill_(s < ATTENTION_EPS, 0.0)
        return grad, None


def attention_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """s, t: (B, heads, T, T) attention distributions; KL(t || s) summed over keys, averaged over
    batch, heads and queries (``_AttentionKl``; ``attention_loss_reference`` is the taped form)."""
    return _AttentionKl.apply(s.float(), t.detach())  # CPU bf16 autocast hands out bf16 maps (benchmarks/cpu_bf16.py)


def attention_loss_reference(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The textbook form of ``attention_loss`` (what the tests compare it with)."""
    t = t.float()
    return (t * (torch.log(t.clamp_min(ATTENTION_EPS)) - torch.log(s.clamp_min(ATTENTION_EPS)))).sum(-1).mean()


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
