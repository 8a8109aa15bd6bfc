"""Fitting device profiles and measuring how wrong they are.

Two ways to make a profile:

* ``fit_op_profile`` - many measured architectures (a CSV from ``mbnas latency dataset``): one
  non-negative cost per latency feature, fitted by non-negative least squares on *relative* error
  (a 1 ms model off by 0.5 ms is as wrong as a 100 ms model off by 50 ms). Non-negative costs keep
  every op class's share of the breakdown >= 0.
* ``calibrate_scaled`` - a few measured latencies of a device nobody can run here (a phone): the
  op-level shape of a base profile learned on a real runtime, with one scale factor per group of
  features (``DeviceProfile`` coefficients x factor). Few points, few parameters; its error is
  reported leave-one-out.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latency_models.features import CACHE_FEATURES, FEATURES, INDEX, L2_FLOATS, features_many
from latency_models.profile import DeviceProfile, domain_of
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError


# ------------------------------------------------------------------------------------------------
def nnls(A: np.ndarray, b: np.ndarray, tol: float = 1e-10, max_iter: int | None = None) -> np.ndarray:
    """argmin ||A x - b||_2 subject to x >= 0 (Lawson & Hanson's active-set method)."""
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, bool)
    w = A.T @ (b - A @ x)
    for _ in range(max_iter or 3 * n):
        if passive.all() or w[~passive].max(initial=-np.inf) <= tol:
            break
        j = np.argmax(np.where(passive, -np.inf, w))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if z[passive].min() > 0:
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = A.T @ (b - A @ x)
    return x


def fit_relative(X: np.ndarray, y: np.ndarray, free: Sequence[int] | None = None) -> np.ndarray:
    """Non-negative w minimising sum(((X w - y) / y)^2); columns outside ``free`` are fixed at 0."""
    cols = np.arange(X.shape[1]) if free is None else np.asarray(free)
    A = X[:, cols] / y[:, None]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    w = np.zeros(X.shape[1])
    w[cols] = nnls(A / scale, np.ones(len(y))) / scale
    return w


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorStats:
    """Relative error of predictions against measurements (error = predicted / measured - 1)."""

    n: int
    within_5: float  # fraction with |error| <= 5%
    within_10: float
    mape: float  # mean |error|, percent
    median_abs: float  # percent
    p90_abs: float  # percent
    worst: float  # signed error of the worst case, percent
    worst_label: str
    median_signed: float  # bias, percent

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def error_stats(pred: np.ndarray, meas: np.ndarray, labels: Sequence[str]) -> ErrorStats:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    if len(pred) == 0:
        raise UserError("no measured rows to compute an error on")
    err = pred / meas - 1
    a = np.abs(err)
    i = int(np.argmax(a))
    return ErrorStats(n=len(err), within_5=float(np.mean(a <= 0.05)), within_10=float(np.mean(a <= 0.10)),
                      mape=float(100 * a.mean()), median_abs=float(100 * np.median(a)),
                      p90_abs=float(100 * np.quantile(a, 0.9)), worst=float(100 * err[i]), worst_label=labels[i],
                      median_signed=float(100 * np.median(err)))


def row_label(c: Candidate) -> str:
    return f"{c.name or c.label} L{c.num_layers} s{c.seq_len}"


def kfold_errors(X: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold relative errors of ``fit_relative`` (the fit's error on rows it did not see)."""
    idx = np.random.default_rng(seed).permutation(len(y))
    err = np.zeros(len(y))
    for fold in np.array_split(idx, k):
        train = np.setdiff1d(idx, fold)
        w = fit_relative(X[train], y[train])
        err[fold] = X[fold] @ w / y[fold] - 1
    return err


def fit_op_profile(cands: Sequence[Candidate], latency_ms: Sequence[float], *, name: str, device: str,
                   conditions: dict[str, Any], data: list[dict[str, Any]], description: str = "",
                   heldout: tuple[Sequence[Candidate], Sequence[float]] | None = None) -> DeviceProfile:
    """Fit one non-negative cost per feature on measured rows; report 5-fold CV and held-out error.

    ``data``: provenance of the rows ([{"path", "sha256", "rows"}]). ``heldout``: measured rows that
    are not fitted; when given, their error is the profile's ``error_summary``.

    Also fits, on the same rows, the costs without ``CACHE_FEATURES`` (``fit["transfer_coefficients"]``):
    the shape that ``calibrate.transfer_shape`` hands to devices with another cache.
    """
    X, y = features_many(cands), np.asarray(latency_ms, float)
    if len(y) < len(FEATURES):
        raise UserError(f"fitting {len(FEATURES)} op costs needs at least {len(FEATURES)} measured rows, got {len(y)}")
    w = fit_relative(X, y)
    w_transfer = fit_relative(X, y, free=[INDEX[f] for f in FEATURES if f not in CACHE_FEATURES])
    labels = [row_label(c) for c in cands]
    train = error_stats(X @ w, y, labels)
    cv = error_stats((1 + kfold_errors(X, y)) * y, y, labels)
    error: dict[str, Any] = {"train": train.to_dict(), "cv5": cv.to_dict()}
    threads = conditions.get("threads", "?")
    if heldout is not None and len(heldout[0]):
        hc, hy = list(heldout[0]), np.asarray(heldout[1], float)
        h = error_stats(features_many(hc) @ w, hy, [row_label(c) for c in hc])
        error["heldout"] = h.to_dict()
        error["summary"] = (f"held-out error: {100 * h.within_10:.0f}% within 10%, {100 * h.within_5:.0f}% within 5%, "
                            f"MAPE {h.mape:.1f}%, worst {h.worst:+.1f}% on {h.n} architectures "
                            f"({conditions.get('runtime_short') or conditions.get('runtime', '')}, "
                            f"{threads} thread{'s' if threads != 1 else ''})")
    else:
        error["summary"] = (f"5-fold CV error: {100 * cv.within_10:.0f}% within 10%, MAPE {cv.mape:.1f}% on "
                            f"{cv.n} architectures (no held-out set)")
    return DeviceProfile(name=name, coefficients={f: float(v) for f, v in zip(FEATURES, w)},
                         conditions=conditions, error=error, description=description, device=device,
                         fit={"method": "non-negative least squares on relative error, one cost per op feature",
                              "features": list(FEATURES), "l2_floats": L2_FLOATS, "data": data, "rows": len(y),
                              "transfer_coefficients": {f: float(v) for f, v in zip(FEATURES, w_transfer)},
                              "domain": domain_of(cands)})


def feature_contributions(profile: DeviceProfile, cands: Sequence[Candidate]) -> np.ndarray:
    """(n, len(FEATURES)) milliseconds each feature contributes (features x coefficients)."""
    return features_many(cands) * profile.weights


def group_columns(groups: dict[str, Sequence[str]]) -> dict[str, np.ndarray]:
    out = {}
    for g, feats in groups.items():
        bad = [f for f in feats if f not in INDEX]
        if bad:
            raise UserError(f"calibration group '{g}': unknown feature '{bad[0]}'")
        out[g] = np.array([INDEX[f] for f in feats])
    return out
