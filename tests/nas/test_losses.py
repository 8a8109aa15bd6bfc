"""The hand-written transfer losses (distillation, attention, feature maps) against their taped
textbook forms, and the allocator setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from nas.distill import losses
from types import SimpleNamespace

from nas.distill.losses import (attention_loss, attention_loss_reference, feature_map_loss,
                                feature_map_loss_reference, kd_loss, kd_loss_reference)


def _logits(n: int, v: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, v, generator=g) * 4  # a confident teacher: log-probs far below -20 occur
    z = t + torch.randn(n, v, generator=g) * 2
    y = torch.randint(0, v, (n,), generator=g)
    return z, t, y


def _same_as_reference(reference, fast, x0: torch.Tensor, *args) -> None:
    """``fast`` gives ``reference``'s value and gradient w.r.t. its first argument."""
    got = []
    for f in (reference, fast):
        x = x0.clone().requires_grad_()
        loss = f(x, *args)
        (2.5 * loss).backward()  # an upstream factor must scale the gradient
        got.append((loss.detach(), x.grad))
    (ref_loss, ref_grad), (loss, grad) = got
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("alpha,temperature", [(0.5, 1.0), (0.0, 1.0), (1.0, 1.0), (0.3, 2.0), (0.7, 0.5)])
@pytest.mark.parametrize("n", [1, 8, 21])  # one row, one whole slice, and a ragged last slice
def test_kd_loss_matches_the_taped_form(alpha, temperature, n):
    z0, t, y = _logits(n, 300, seed=n)
    _same_as_reference(kd_loss_reference, kd_loss, z0, t, y, alpha, temperature)


def _attention(seed: int, heads: int = 2, seq: int = 16, sharp: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.softmax(torch.randn(3, heads, seq, seq, generator=g) * sharp, -1)
    t = torch.softmax(torch.randn(3, heads, seq, seq, generator=g) * 3, -1)
    return s, t


@pytest.mark.parametrize("case", ["fp32", "fp16 teacher", "student underflows", "teacher zeros"])
def test_attention_loss_matches_the_taped_form(case):
    s, t = _attention(seed=7)
    if case == "fp16 teacher":  # as the teacher cache stores it
        t = t.half()
    elif case == "student underflows":  # probabilities at or under the clamp: no gradient there
        s[0, 0, 0, :3] = torch.tensor([0.0, 1e-12, 1e-9])
        s[1, 1, 5, 7] = 0.0
    elif case == "teacher zeros":
        t[2, 0, 3, :4] = 0.0
    _same_as_reference(attention_loss_reference, attention_loss, s, t)


def test_attention_loss_takes_bf16_student_maps():
    """CPU bf16 autocast hands the loss bf16 attention probabilities (CUDA's autocast gives fp32;
    benchmarks/cpu_bf16.py trains so): the loss is computed in fp32 and the gradient comes back in
    the student's dtype."""
    s, t = _attention(seed=7)
    s16 = s.bfloat16().requires_grad_()
    loss = attention_loss(s16, t.half())
    loss.backward()
    assert loss.dtype == torch.float32 and s16.grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(attention_loss(s.bfloat16().float(), t.half()).item(), rel=1e-5)


def test_attention_loss_is_zero_at_the_teacher():
    _, t = _attention(seed=3)
    assert attention_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("half", [False, True])
def test_feature_map_loss_matches_the_taped_form(half):
    g = torch.Generator().manual_seed(5)
    s = torch.randn(3, 16, 32, generator=g) * 2 + 0.5
    t = torch.randn(3, 16, 32, generator=g) * 3 - 1  # other scale and offset than the student's
    w = SimpleNamespace(fmt=1.0, mean=0.7, var=0.3)
    _same_as_reference(feature_map_loss_reference, feature_map_loss, s, t.half() if half else t, w)


def test_kd_loss_slices_do_not_change_the_result(monkeypatch):
    z, t, y = _logits(37, 500, seed=3)
    whole = kd_loss(z, t, y, 0.5, 1.0)
    monkeypatch.setattr(losses, "CPU_ROWS", 5)
    assert kd_loss(z, t, y, 0.5, 1.0).item() == pytest.approx(whole.item(), rel=1e-6)


def test_kd_loss_is_finite_for_an_overconfident_student():
    z, t, y = _logits(4, 300, seed=1)
    z = z * 1e3  # log-softmax of -1e4 and below: underflows to exact zeros, never NaN
    z.requires_grad_()
    loss = kd_loss(z, t, y, 0.5, 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


_PROBE = "import nas.runtime as r; print(r.keep_freed_memory(), r.keep_freed_memory())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_allocator_setting_applies_once_and_can_be_turned_off():
    on = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, "MBNAS_MALLOC": "system"})
    assert on.stdout.split() == ["True", "True"]
    assert off.stdout.split() == ["False", "False"]
