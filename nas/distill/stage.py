"""One training stage's optimiser and schedule, shared by every strategy and the downstream fine-tune."""

from __future__ import annotations

import torch


class Diverged(Exception):
    """Training produced a non-finite loss; the message says where."""


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise Diverged(f"loss became {loss.item()} during {where}")


def lr_factor(t: int, steps: int, warmup: float) -> float:
    """Share of the peak rate at step ``t`` of a stage of ``steps``: linear warm-up over the first
    ``warmup`` share of the steps (at least one step when ``warmup`` > 0), then linear decay towards
    0 at the stage's end (the references: warm-up, then linear decay; google-research
    run_pretraining.py). A 60-step phase with warm-up 0.1: step 0 runs at 1/7 of the peak, step 6 at
    the peak, the last step at 1/54 of it."""
    w = min(steps - 1, max(1, round(warmup * steps))) if warmup > 0 and steps > 1 else 0
    if t < w:
        return (t + 1) / (w + 1)
    return (steps - t) / (steps - w)


class Stage:
    """AdamW over parameter groups, stepping with clipping, a finite-loss check and the per-stage
    schedule of ``lr_factor``: each group's ``lr`` is its peak. ``phase(groups, steps)`` starts a new
    phase (its own warm-up) on the same optimiser, its state kept, as TF1's progressive transfer does."""

    def __init__(self, groups: list[dict], lr: float, steps: int, warmup: float) -> None:
        self.params = [p for g in groups for p in g["params"]]
        # fused: one kernel over all parameters instead of a dozen small ops per tensor (the student
        # has ~150 tensors; the per-tensor loop was ~8% of a pre-training-distillation step on CPU)
        self.opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, fused=True)
        self.warmup = warmup
        self._start(steps)

    def _start(self, steps: int) -> None:
        for g in self.opt.param_groups:
            g["peak_lr"] = g["lr"]
        self.steps, self.t = steps, 0

    def phase(self, peaks: list[float], steps: int) -> None:
        """A new phase: group i peaks at ``peaks[i]`` (0: frozen for the phase)."""
        for g, lr in zip(self.opt.param_groups, peaks):
            g["lr"] = lr
        self._start(steps)

    def skip(self) -> None:
        """A step with nothing to train (Theseus drew no successor): the schedule moves on."""
        self.t += 1

    def step(self, loss: torch.Tensor, where: str) -> float:
        check_finite(loss, where)
        f = lr_factor(self.t, self.steps, self.warmup)
        for g in self.opt.param_groups:
            g["lr"] = g["peak_lr"] * f
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()  # parameters without a gradient (frozen this phase) are skipped, state kept
        self.t += 1
        return loss.item()
