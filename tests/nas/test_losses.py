"""The hand-written distillation loss against its taped textbook form, and the allocator setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from nas.distill import losses
from nas.distill.losses import kd_loss, kd_loss_reference


def _logits(n: int, v: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, v, generator=g) * 4  # a confident teacher: log-probs far below -20 occur
    z = t + torch.randn(n, v, generator=g) * 2
    y = torch.randint(0, v, (n,), generator=g)
    return z, t, y


@pytest.mark.parametrize("alpha,temperature", [(0.5, 1.0), (0.0, 1.0), (1.0, 1.0), (0.3, 2.0), (0.7, 0.5)])
@pytest.mark.parametrize("n", [1, 8, 21])  # one row, one whole slice, and a ragged last slice
def test_kd_loss_matches_the_taped_form(alpha, temperature, n):
    z0, t, y = _logits(n, 300, seed=n)
    got = []
    for f in (kd_loss_reference, kd_loss):
        z = z0.clone().requires_grad_()
        loss = f(z, t, y, alpha, temperature)
        (2.5 * loss).backward()  # an upstream factor must scale the gradient
        got.append((loss.detach(), z.grad))
    (ref_loss, ref_grad), (loss, grad) = got
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)


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
