"""Build device profiles: the two built-in ones, and a user's own from measurements.

``host-cpu-litert``
    ``fit.fit_op_profile`` on the host training CSV; its error is measured on the held-out CSV
    (architectures the fit never saw, paper-shape candidates among them).

``pixel4-cpu-tflite``
    Four verified Pixel 4 latencies (docs/FACTS.md section 1) cannot fit 21 op costs. They fit two
    numbers over the op-level shape learned on the host runtime (``calibrate_scaled``). That shape is
    ``transfer_shape``: the host costs refitted without the L2-spill term (``features.CACHE_FEATURES``),
    whose size is the host's cache, not the phone's, and four points cannot fit the phone's own.
    (Transplanting the host's spill costs was tried: leave-one-out error -23% on MobileBERT w/o OPT,
    BERT-base's large matrices being priced at the host's cache rates.)

    * ``compute``: one factor on every host op cost except LayerNorm and GELU (the phone's speed
      relative to one host core: matmuls, attention, adds, NoNorm, ReLU, embedding);
    * ``norm_act``: the phone's *own* price of LayerNorm and GELU, the two ops MobileBERT's
      "operational optimisations" remove. On host LiteRT they cost +5-10% (XNNPACK runs the 9-op
      LayerNorm graph and a fused GELU); on the Pixel 4 with 2020 TFLite +210%. The host's own
      LayerNorm/GELU costs are a poor shape for that (tried first: leave-one-out error +39% on
      MobileBERT w/o OPT): the 2020 runtime ran both unfused. So their shape is structural, the
      element-wise passes of the TF 1.x graphs MobileBERT was exported from: LayerNorm = 10 passes
      over its elements (mean, squared difference, mean, add, rsqrt, 3 mul, sub, add), GELU (tanh
      approximation) = 8 passes; one factor prices a pass (``PIXEL_NORM_ACT_SHAPE``).

    Only the verified points BERT_BASE and MobileBERT w/o OPT contain LayerNorm or GELU, always
    together, so four points cannot split the two. The two unverified ablation points (LayerNorm +
    ReLU 167 ms, NoNorm + GELU 92 ms) are predicted and shown, never fitted: they test that split.
    Error = leave-one-out over the four verified points.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latency_models.dataset import candidate_key, read_rows, this_host
from latency_models.features import FEATURES, INDEX, features_many
from latency_models.fit import error_stats, fit_op_profile, fit_relative, group_columns, row_label, sha256_file
from latency_models.host import CpuFingerprint, this_cpu
from latency_models.profile import PROFILES_DIR, DeviceProfile, domain_of, load_profile
from latency_models.tflite_bench import candidate_for, parse_benchmark_output
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.files import read_user_text
from search_spaces.references import REFERENCES, UNVERIFIED_PIXEL4_MS

DATA_DIR = Path(__file__).parent / "data"
HOST_TRAIN = DATA_DIR / "host-cpu-litert-train.csv"
HOST_HELDOUT = DATA_DIR / "host-cpu-litert-heldout.csv"
HOST_REPEAT = DATA_DIR / "host-cpu-litert-repeat.csv"
# how a user gets a profile of this machine (``other_host``'s note; README "Calibrate this machine")
CALIBRATE_HOST_HINT = ("mbnas latency calibrate-host --out my-host.json (15 minutes; --device host then picks "
                       "it)")

NORM_ACT = ("ln_n", "ln_el", "gelu_n", "gelu_el")
# element-wise passes of the unfused TF 1.x LayerNorm (10) and tanh-GELU (8) graphs, per element
PIXEL_NORM_ACT_SHAPE = {"ln_n": 0.0, "ln_el": 10.0, "gelu_n": 0.0, "gelu_el": 8.0}
PIXEL_GROUPS = {"compute": tuple(f for f in FEATURES if f not in NORM_ACT), "norm_act": NORM_ACT}
NORM_ACT_SPLIT = {"layer_norm": ("ln_n", "ln_el"), "gelu": ("gelu_n", "gelu_el")}
CLASS_GROUPS = {  # enough points (>= 12): one factor per op class, LayerNorm/GELU apart from NoNorm/ReLU
    "matmul": ("fc_n", "fc_macs", "fc_w", "fc_out", "fc_w_spill"),
    "attention": ("att_n", "att_macs", "att_sm", "att_qkv"),
    "norm_act": NORM_ACT,
    "cheap_norm_act": ("nn_n", "nn_el", "relu_n", "relu_el"),
    "elementwise": ("add_n", "add_el"),
    "embedding": ("emb_el", "const"),
}


def _rel(path: Path) -> str:
    """A data path as stored in a profile: relative to the package's parent when inside it."""
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)


def data_entry(path: Path, rows: int) -> dict[str, Any]:
    return {"path": _rel(path), "sha256": sha256_file(path), "rows": rows}


def ok_rows(paths: Sequence[str | Path]) -> tuple[list[Candidate], np.ndarray, list[dict[str, Any]]]:
    """Candidates and latencies of the ``ok`` rows of measurement CSVs, with their provenance."""
    cands, ys, data = [], [], []
    for p in paths:
        rows = [r for r in read_rows(p) if r.ok]
        cands += [r.candidate for r in rows]
        ys += [r.latency_ms for r in rows]
        data.append(data_entry(Path(p), len(rows)))
    return cands, np.array(ys, float), data


def conditions_from_rows(paths: Sequence[str | Path]) -> dict[str, Any]:
    rows = [r for p in paths for r in read_rows(p) if r.ok]
    threads = sorted({r.threads for r in rows})
    runtimes = sorted({r.extra.get("runtime", "") for r in rows} - {""})
    clocks = sorted({r.extra.get("clock", "") for r in rows} - {""})
    seqs = sorted({r.candidate.seq_len for r in rows})
    rounds = sorted({int(r.extra.get("rounds") or 1) for r in rows})
    runs = min(int(r.extra.get("runs") or 0) for r in rows) if rows else 0
    statistic = (f"median of >= {runs} runs" + (f" spread over {rounds[0]} interleaved rounds of all models "
                                                  f"(measure_round_robin)" if rounds == [rounds[0]] and rounds[0] > 1
                                                  else " after 5 warm-up runs"))
    short = "; ".join(sorted({r.split(" XNNPACK")[0] for r in runtimes})) or "unknown"
    return {"runtime": "; ".join(runtimes) or "unknown", "runtime_short": short,
            "threads": threads[0] if len(threads) == 1 else threads, "precision": "fp32", "batch": 1,
            "seq_len": 128 if 128 in seqs else seqs,
            "seq_lens_measured": seqs, "clock": ", ".join(clocks) or "unknown",
            "statistic": statistic}


# ------------------------------------------------------------------------------------------------
def build_host_profile(train: Sequence[Path] = (HOST_TRAIN,), heldout: Sequence[Path] = (HOST_HELDOUT,),
                       name: str = "host-cpu-litert") -> DeviceProfile:
    """Fit the host profile on ``train`` CSVs and measure it on ``heldout`` CSVs."""
    cands, y, data = ok_rows(train)
    hc, hy, hdata = ok_rows(heldout) if heldout else ([], np.array([]), [])
    cond = conditions_from_rows(train)
    cpu = this_cpu()
    cond["cpu"] = cpu.to_dict()
    prof = fit_op_profile(
        cands, y, name=name, device=f"host CPU ({cpu.model}), one core ({cpu.arch})", conditions=cond,
        data=data, heldout=(hc, hy) if len(hc) else None,
        description="LiteRT (ai-edge-litert) with XNNPACK, fp32, batch 1, one thread, on this project's host "
                    "machines; fitted on measured architectures of the mobilebert and demo spaces and BERT-/"
                    "IB-BERT-like shapes, checked on held-out architectures (paper shape included)",
    )
    if len(hc):
        pred = prof.estimate_many(hc)
        prof.error["points"] = [
            {"label": row_label(c), "kind": "held-out", "measured_ms": round(float(m), 4),
             "predicted_ms": round(float(p), 4), "error_pct": round(100 * (p / m - 1), 2)}
            for c, m, p in zip(hc, hy, pred)]
        prof.fit["heldout_data"] = hdata
    noise = measurement_noise()
    if noise:
        prof.error["measurement_noise"] = noise
    return prof


def other_host(prof: DeviceProfile) -> str | None:
    """A note when ``prof`` was timed on a host CPU other than this machine's (``latency_models.host``:
    the whole fingerprint must match): its costs are that CPU's. None for a phone's profile."""
    theirs = prof.conditions.get("cpu")
    if theirs is None and not prof.device.startswith("host CPU ("):
        return None
    mine = this_cpu()
    if theirs is None:  # a host profile from before fingerprints (the built-in one): its CPU's model name only
        there = prof.device.removeprefix("host CPU (").rsplit("), ", 1)[0]  # "host CPU (<model>), one core (x86_64)"
        if there == mine.model:  # the whole name: "Intel(R) Xeon(R) Processor" is part of "... @ 2.80GHz"
            return None
        what, differs = there, "model"
    else:
        fp = CpuFingerprint.from_dict(theirs)
        diff = fp.differences(mine)
        if not diff:
            return None
        what, differs = fp.describe(), "; ".join(diff)
    return (f"note: {prof.name} was timed on another CPU, {what}; this machine is {mine.describe()} (differs in "
            f"{differs}): its predictions are that CPU's. Calibrate this one: {CALIBRATE_HOST_HINT}")


def measurement_noise(repeat: Path = HOST_REPEAT, heldout: Path = HOST_HELDOUT) -> dict[str, Any] | None:
    """Relative difference between two timings of the same exported models at different times."""
    if not (repeat.exists() and heldout.exists()):
        return None
    first = {candidate_key(r.candidate, r.threads): r.latency_ms for r in read_rows(heldout) if r.ok}
    pairs = [(first[k], r.latency_ms) for r in read_rows(repeat) if r.ok
             and (k := candidate_key(r.candidate, r.threads)) in first]
    if not pairs:
        return None
    d = np.array([b / a - 1 for a, b in pairs])
    return {"pairs": len(pairs), "median_abs_pct": round(float(100 * np.median(np.abs(d))), 2),
            "p90_abs_pct": round(float(100 * np.quantile(np.abs(d), 0.9)), 2),
            "max_abs_pct": round(float(100 * np.max(np.abs(d))), 2),
            "what": "the held-out models timed again in a second interleaved pass, later (repeat vs held-out CSV)"}


# ------------------------------------------------------------------------------------------------
def transfer_shape(base: DeviceProfile) -> DeviceProfile:
    """``base`` with the op costs other devices are scaled from: ``fit["transfer_coefficients"]``
    (refitted without the cache-size terms of ``features.CACHE_FEATURES``) where the profile has them."""
    coef = base.fit.get("transfer_coefficients")
    if not coef:
        return base
    return DeviceProfile(name=base.name, coefficients=dict(coef), conditions=base.conditions, error=base.error,
                         fit=base.fit, description=base.description, device=base.device)


def structural_shape(base: DeviceProfile) -> DeviceProfile:
    """``transfer_shape(base)`` with LayerNorm and GELU priced per element pass of their unfused graphs
    (``PIXEL_NORM_ACT_SHAPE``, x 1e-6 ms before a factor) instead of the base's own costs.

    A phone calibrated from a few points at one width (the bench suite: all hidden 512, seq 128) can
    only fit one factor per group; on the host's shape LayerNorm is a per-call cost (its ``ln_el`` is
    0), so that factor made every LayerNorm cost its MobileBERT price: 0.66 ms per call in a 2-block
    demo model. Per element, it scales with the width, as the unfused graphs do."""
    t = transfer_shape(base)
    return DeviceProfile(name=t.name, conditions=t.conditions, error={}, fit=t.fit, description=t.description,
                         device=t.device, coefficients={**t.coefficients,
                                                        **{f: v * 1e-6 for f, v in PIXEL_NORM_ACT_SHAPE.items()}})


def scaled_design(base: DeviceProfile, cands: Sequence[Candidate], groups: dict[str, Sequence[str]]) -> np.ndarray:
    """(n, groups) milliseconds the base profile books on each group of features."""
    contrib = features_many(cands) * base.weights
    cols = group_columns(groups)
    return np.stack([contrib[:, cols[g]].sum(axis=1) for g in groups], axis=1)


def exercised_groups(base: DeviceProfile, cands: Sequence[Candidate], groups: dict[str, Sequence[str]]
                     ) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """``groups`` with each group that no candidate exercises merged into the first one that some
    candidate does (its features are then scaled with that one), and the merged groups' names."""
    D = scaled_design(base, cands, groups)
    unused = [g for g, s in zip(groups, D.sum(axis=0)) if s == 0]
    keep = [g for g in groups if g not in unused]
    if not unused or not keep:
        return {g: tuple(v) for g, v in groups.items()}, []
    merged = {g: tuple(groups[g]) for g in keep}
    merged[keep[0]] += tuple(f for g in unused for f in groups[g])
    return merged, unused


def fit_factors(base: DeviceProfile, cands: Sequence[Candidate], y: np.ndarray,
                groups: dict[str, Sequence[str]]) -> dict[str, float]:
    """Non-negative factor per group minimising relative error."""
    D = scaled_design(base, cands, groups)
    if np.any(D.sum(axis=0) == 0):
        empty = [g for g, s in zip(groups, D.sum(axis=0)) if s == 0]
        raise UserError(f"calibration: no measured architecture exercises group '{empty[0]}'; "
                        f"measure one that does or use fewer groups")
    return dict(zip(groups, (float(v) for v in fit_relative(D, np.asarray(y, float)))))


def scaled_coefficients(base: DeviceProfile, factors: dict[str, float],
                        groups: dict[str, Sequence[str]]) -> dict[str, float]:
    w = base.weights
    out = {f: 0.0 for f in FEATURES}
    for g, feats in groups.items():
        for f in feats:
            out[f] = float(w[INDEX[f]] * factors[g])
    return out


def calibrate_scaled(base: DeviceProfile, cands: Sequence[Candidate], y: Sequence[float], *, name: str,
                     device: str, conditions: dict[str, Any], groups: dict[str, Sequence[str]],
                     data: list[dict[str, Any]], description: str = "",
                     shown: Sequence[tuple[Candidate, float, str]] = ()) -> DeviceProfile:
    """Scale factors per feature group over ``base``, with leave-one-out error per point.

    ``shown``: (candidate, latency, note) points predicted and reported but never fitted.
    """
    y = np.asarray(y, float)
    if len(y) < len(groups) + 1:
        raise UserError(f"calibration with {len(groups)} factor(s) needs at least {len(groups) + 1} measured "
                        f"architectures for a leave-one-out error, got {len(y)}")
    factors = fit_factors(base, cands, y, groups)
    coef = scaled_coefficients(base, factors, groups)
    full = DeviceProfile(name=name, coefficients=coef, conditions=conditions, error={})
    points = []
    loo_pred = np.zeros(len(y))
    for i in range(len(y)):
        keep = [j for j in range(len(y)) if j != i]
        # the only point that prices a group cannot be predicted with that group's own factor: without
        # it, the group is scaled with another, as a calibration that never measured it would be
        groups_i, _ = exercised_groups(base, [cands[j] for j in keep], groups)
        f_i = fit_factors(base, [cands[j] for j in keep], y[keep], groups_i)
        p_i = DeviceProfile(name=name, coefficients=scaled_coefficients(base, f_i, groups_i), conditions={},
                            error={})
        loo_pred[i] = p_i.estimate_many([cands[i]])[0]
        points.append({"label": row_label(cands[i]), "kind": "leave-one-out", "measured_ms": float(y[i]),
                       "predicted_ms": round(float(loo_pred[i]), 3),
                       "error_pct": round(100 * (loo_pred[i] / y[i] - 1), 2),
                       "fitted_ms": round(float(full.estimate_many([cands[i]])[0]), 3),
                       "factors_without_it": {g: round(v, 4) for g, v in f_i.items()}})
    st = error_stats(loo_pred, y, [row_label(c) for c in cands])
    for c, ms, note in shown:
        p = float(full.estimate_many([c])[0])
        points.append({"label": row_label(c), "kind": "shown, not fitted", "measured_ms": float(ms),
                       "predicted_ms": round(p, 3), "error_pct": round(100 * (p / ms - 1), 2), "note": note})
    threads = conditions.get("threads", "?")
    error = {"loo": st.to_dict(), "points": points,
             "summary": (f"leave-one-out error <= {max(abs(p['error_pct']) for p in points[:len(y)]):.1f}% "
                         f"(MAPE {st.mape:.1f}%) on {len(y)} measured points "
                         f"({conditions.get('runtime_short') or conditions.get('runtime', '')}, {threads} threads)")}
    return DeviceProfile(name=name, coefficients=coef, conditions=conditions, error=error, device=device,
                         description=description,
                         fit={"method": "scale factors per feature group over a base profile, non-negative least "
                                        "squares on relative error",
                              "base_profile": base.name, "base_data": base.fit.get("data", []),
                              "groups": {g: list(v) for g, v in groups.items()},
                              "factors": {g: round(v, 6) for g, v in factors.items()}, "data": data,
                              "domain": domain_of(cands)})


def build_pixel_profile(base: DeviceProfile) -> DeviceProfile:
    """``pixel4-cpu-tflite`` from the verified Pixel 4 points of ``search_spaces.references`` (see module doc)."""
    refs = [r for r in REFERENCES.values() if r.pixel4_verified and r.pixel4_latency_ms]
    cands = [r.candidate for r in refs]
    y = [r.pixel4_latency_ms for r in refs]
    shown = [(c, ms, "unverified (recalled, not checked against the paper's table): shown, never fitted")
             for c, ms in UNVERIFIED_PIXEL4_MS.values()]
    digest = hashlib.sha256(json.dumps([[r.name, r.pixel4_latency_ms] for r in refs]).encode()).hexdigest()
    prof = calibrate_scaled(
        structural_shape(base), cands, y, name="pixel4-cpu-tflite", device="Google Pixel 4 (Snapdragon 855), CPU",
        conditions={"runtime": "TFLite (2020, as in the MobileBERT paper)", "runtime_short": "TFLite",
                    "threads": 4, "precision": "fp32",
                    "batch": 1, "seq_len": 128, "statistic": "as reported in the paper"},
        groups=PIXEL_GROUPS, shown=shown,
        data=[{"path": "search_spaces/references.py (MobileBERT paper Tables 4-5; docs/FACTS.md section 1)",
               "sha256": digest,
               "rows": len(y), "points": {r.name: r.pixel4_latency_ms for r in refs}}],
        description="MobileBERT paper's Pixel 4 latencies (TFLite, 4 threads, seq 128): one factor over the "
                    "host-cpu-litert op-level shape (compute), one on unfused LayerNorm/GELU element passes",
    )
    prof.fit["norm_act_shape"] = {"unit": "element-wise passes per element (x 1e-6 ms before the factor)",
                                  **PIXEL_NORM_ACT_SHAPE}
    prof.error["summary"] = prof.error["summary"].replace("measured points", "verified Pixel 4 points")
    return prof


def write_builtin_profiles() -> tuple[Path, Path]:
    host = build_host_profile()
    pixel = build_pixel_profile(host)
    # the extrapolation band is measured apart (benchmarks/latency_extrapolation.py writes it): keep it
    old = load_profile(pixel.name).error.get("extrapolation")
    if old:
        pixel.error["extrapolation"] = old
    return host.save(PROFILES_DIR / f"{host.name}.json"), pixel.save(PROFILES_DIR / f"{pixel.name}.json")


if __name__ == "__main__":  # pragma: no cover
    for p in write_builtin_profiles():
        print("wrote", p)


# ------------------------------------------------------------------------------------------------
def scale_groups(cands: Sequence[Candidate]) -> dict[str, tuple[str, ...]]:
    """Feature groups, one scale factor each, that ``len(cands)`` measured points can fit with a
    leave-one-out error to spare: one per op class from 12 points (two a factor), compute and
    LayerNorm/GELU from 3, a single factor below. LayerNorm and GELU get a factor each when some
    point has one without the other (the bench suite's two ablation models): their price differs
    from phone to phone (the Pixel 4 paid far more for LayerNorm), and only such points can tell
    them apart."""
    n = len(cands)
    if n < 3:
        return {"all": tuple(FEATURES)}
    groups = {g: tuple(v) for g, v in (CLASS_GROUPS if n >= 2 * len(CLASS_GROUPS) else PIXEL_GROUPS).items()}
    separable = any((c.norm == "layer_norm") != (c.act == "gelu") for c in cands)
    if separable and n >= len(groups) + 2:
        del groups["norm_act"]
        groups.update(NORM_ACT_SPLIT)
    return groups


def check_profile_name(name: str, flag: str) -> None:
    """A profile's name (it becomes a file name and a study's ``latency_profile``): one line if unsafe."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise UserError(f"{flag} {name!r}: use letters, digits, '.', '_' and '-' (it names the profile)")


def calibrate_inputs(device: str, inputs: Sequence[str | Path], base: str = "host-cpu-litert",
                     heldout: Sequence[str | Path] = ()) -> tuple[DeviceProfile, list[str]]:
    """A user's profile from measurement CSVs and/or ``benchmark_model`` outputs (``mbnas latency calibrate``).

    Many CSV rows (>= 2 per op feature) -> an op-level fit of its own (``fit_op_profile``). Fewer points,
    or phone logs -> scale factors over ``base``'s ``structural_shape`` (``scale_groups``: one per op
    class from 12 points on, compute and LayerNorm/GELU from 3, LayerNorm apart from GELU when the
    points can tell them apart, a single factor from 2; ``calibrate_scaled``, leave-one-out error).
    """
    check_profile_name(device, "--device")
    for h in heldout:
        if not Path(h).is_file():
            raise UserError(f"--heldout {h}: no such file")
    cands: list[Candidate] = []
    ys: list[float] = []
    data: list[dict[str, Any]] = []
    notes: list[str] = []
    threads: set = set()
    runtimes: set = set()
    csvs = []
    hosts: set[str] = set()  # the CSV rows' hosts ("": a row that does not say, e.g. a phone's)
    for raw in inputs:
        p = Path(raw)
        if not p.is_file():
            raise UserError(f"{p}: no such file")
        text = read_user_text(p)  # one line if the file is not UTF-8 text (a .tflite given by mistake)
        first_line = text.partition("\n")[0]
        if "Graph:" in text:  # benchmark_model output, even one cut short before its timings
            r = parse_benchmark_output(text, where=str(p))
            c = candidate_for(r, [p.parent])
            cands.append(c)
            ys.append(r.avg_ms)
            threads.add(r.threads)
            runtimes.add("TFLite benchmark_model" + ("" if r.xnnpack is None else
                                                     (" (XNNPACK)" if r.xnnpack else " (no XNNPACK)")))
            data.append({"path": str(p), "sha256": sha256_file(p), "rows": 1, "graph": r.graph})
            if r.node_types:
                parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.class_ms().items(), key=lambda kv: -kv[1]))
                notes.append(f"{p.name}: {r.name} {r.avg_ms:.2f} ms measured over {r.runs} runs; "
                             f"op profile ms: {parts}")
            else:
                notes.append(f"{p.name}: {r.name} {r.avg_ms:.2f} ms measured over {r.runs} runs (no op profile)")
        elif "," not in first_line:
            raise UserError(f"{p}: neither a latency CSV (a header of comma-separated columns: README, "
                            f"'Measurement CSV') nor TFLite benchmark_model output (a 'Graph: [...]' line, then "
                            f"timings): a run cut short, or another file?")
        else:
            rows = [r for r in read_rows(p) if r.ok]
            hosts |= {r.extra.get("host") or "" for r in rows}
            cands += [r.candidate for r in rows]
            ys += [r.latency_ms for r in rows]
            threads |= {r.threads for r in rows}
            runtimes |= {r.extra.get("runtime", "unknown") for r in rows}
            data.append(data_entry(p, len(rows)))
            csvs.append(p)
    if len(threads) > 1:
        notes.append(f"note: the inputs mix thread counts {sorted(t for t in threads if t)}; one profile per "
                     f"thread count predicts better")
    y = np.array(ys, float)
    cond = {"runtime": "; ".join(sorted(runtimes)), "threads": next(iter(threads)) if len(threads) == 1
            else sorted(t for t in threads if t), "precision": "fp32", "batch": 1,
            "seq_len": sorted({c.seq_len for c in cands})[0] if cands else None}
    if csvs and len(csvs) == len(inputs) and hosts == {this_host()}:  # all timed here: this CPU's profile
        cond["cpu"] = this_cpu().to_dict()
    if len(csvs) == len(inputs) and len(y) >= 2 * len(FEATURES):
        hc, hy, hdata = ok_rows(heldout) if heldout else ([], np.array([]), [])
        prof = fit_op_profile(cands, y, name=device, device=device, conditions=cond, data=data,
                              heldout=(hc, hy) if len(hc) else None,
                              description=f"op-level fit on {len(y)} measured architectures")
        if hdata:
            prof.fit["heldout_data"] = hdata
        notes.append(f"op-level fit: one cost per feature on {len(y)} rows")
        return prof, notes
    if len(y) < 2:
        raise UserError(f"calibration needs at least 2 measured architectures, got {len(y)}")
    if heldout:
        notes.append(f"note: --heldout is not used: it scores an op-level fit, which needs >= {2 * len(FEATURES)} "
                     f"CSV rows (got {len(y)} points); this profile's error is leave-one-out over its points")
    base_prof = structural_shape(load_profile(base))
    groups = scale_groups(cands)
    groups, unused = exercised_groups(base_prof, cands, groups)
    if unused:
        notes.append(f"no measured architecture exercises {', '.join(unused)}: scaled with '{next(iter(groups))}'")
    notes.append(f"scale factors over {base_prof.name} for {', '.join(groups)} ({len(y)} points)")
    prof = calibrate_scaled(base_prof, cands, y, name=device, device=device, conditions=cond, groups=groups,
                            data=data, description=f"{len(y)} measured points over {base_prof.name}'s op-level shape")
    return prof, notes
