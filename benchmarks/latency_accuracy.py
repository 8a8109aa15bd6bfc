"""How right are the latency profiles? Prints the tables and writes benchmarks/results/latency_accuracy.md.

    python benchmarks/latency_accuracy.py            # from the committed measurements and profiles
    python benchmarks/latency_accuracy.py --refit    # refit both profiles from the CSVs first (rewrites them)
    python benchmarks/latency_accuracy.py --calibrate-host [--minutes 15]   # calibrate this machine afresh first

This host (``mbnas latency calibrate-host``): a fresh calibration, its exports included (an empty
folder of exported models), within ``--minutes``; its timings are kept in
benchmarks/results/latency_calibrate_host.csv and the run's facts in latency_calibrate_host.json.
Aim: >= 90% of the held-out architectures within 10% of their measured latency and >= 90% of their
latency ratios to MobileBERT (timed in the same rounds) within 10%, next to the noise floor of the
same run. The same timings also score the other ways to predict this machine (the other fit, and
the built-in ``host-cpu-litert`` timed on another CPU).

Predictor structure: candidate terms and fitting methods compared by repeated 5-fold cross-validation
on the host *training* rows only; the chosen one is then scored once on the held-out rows.

Host (``host-cpu-litert``): fitted on latency_models/data/host-cpu-litert-train.csv, scored on
host-cpu-litert-heldout.csv (architectures the fit never saw; real mobilebert-space candidates at the
paper shape among them). Targets: >= 95% within +-10%, >= 80% within +-5%. Measurement noise: the same
architectures exported and timed again later (host-cpu-litert-repeat.csv).

Pixel 4 (``pixel4-cpu-tflite``): leave-one-out over the 4 verified paper points (target: each within
10%), and the 2 unverified ablation points predicted, never fitted (target: right order).

Baselines on the same rows: latency proportional to FLOPs (+ a constant), fitted the same way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency_models import load_profile  # noqa: E402
from latency_models.calibrate import (HOST_HELDOUT, HOST_REPEAT, HOST_TRAIN, build_pixel_profile,  # noqa: E402
                                      measurement_noise, ok_rows, transfer_shape, write_builtin_profiles)
from latency_models.dataset import read_rows  # noqa: E402
from latency_models.features import FEATURES, L2_FLOATS, features_many  # noqa: E402
from latency_models.fit import error_stats, fit_relative, nnls, row_label  # noqa: E402
from latency_models.profile import DeviceProfile  # noqa: E402
from nas.table import markdown_table  # noqa: E402
from search_spaces import load_space  # noqa: E402
from search_spaces.ops import OP_CLASSES, count, list_ops  # noqa: E402
from search_spaces.references import REFERENCES, UNVERIFIED_PIXEL4_MS  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "latency_accuracy.md"


def stats_row(name, st):
    return [name, st.n, f"{100 * st.within_5:.0f}%", f"{100 * st.within_10:.0f}%", f"{st.mape:.2f}%",
            f"{st.median_abs:.2f}%", f"{st.p90_abs:.2f}%", f"{st.worst:+.1f}% ({st.worst_label})",
            f"{st.median_signed:+.2f}%"]


STATS_HEAD = ["set", "n", "within 5%", "within 10%", "MAPE", "median abs", "p90 abs", "worst", "median signed"]


def group_of(source: str, c) -> str:
    if source.startswith("reference:"):
        return "references (paper shape)"
    if "paper shape" in source:
        return "mobilebert space, paper shape (24 blocks)"
    if source.startswith("space:mobilebert"):
        return "mobilebert space, 2-4 blocks"
    if source.startswith("space:demo"):
        return "demo space (4 blocks, seq 64)"
    return "BERT-/IB-BERT-like shapes"


def flops_baseline(train_c, train_y, test_c):
    """latency = a * FLOPs + b, fitted on relative error like the profiles."""
    X = np.array([[count(c).flops, 1.0] for c in train_c])
    w = fit_relative(X, np.asarray(train_y))
    return np.array([[count(c).flops, 1.0] for c in test_c]) @ w


# ------------------------------------------------------------------------------------------------
# predictor structure: variants scored by cross-validation on the training rows only
XNN_MR, XNN_NR = 7, 16  # XNNPACK's f32 GEMM tile on AVX-512


def _up(x: int, m: int) -> int:
    return -(-x // m) * m


def candidate_terms(c, l2: float = L2_FLOATS) -> dict[str, float]:
    """Per-candidate sums of the terms tried besides ``FEATURES`` (from ``search_spaces.ops.list_ops``)."""
    d = dict.fromkeys(("n_ops", "macs_padded", "fc_small", "w_step", "macs_step", "w_ws_step", "macs_smooth",
                       "w_ws_smooth", "w_smooth"), 0.0)
    for op in list_ops(c):
        r = op.repeat
        d["n_ops"] += r
        if op.kind == "attention" and op.detail != "softmax":
            d["macs_padded"] += op.batch * _up(op.m, XNN_MR) * op.k * _up(op.n, XNN_NR) * r
        if op.kind != "matmul":
            continue
        w = op.k * op.n
        ws = w + op.m * op.k + op.m * op.n  # weights, input and output of the call
        d["macs_padded"] += _up(op.m, XNN_MR) * op.k * _up(op.n, XNN_NR) * r
        d["fc_small"] += r * (min(op.k, op.n) < 16)
        d["w_step"] += w * r * (w > l2)
        d["macs_step"] += op.macs * r * (w > l2)
        d["w_ws_step"] += w * r * (ws > l2)
        d["macs_smooth"] += op.macs * r * min(1.0, w / l2)
        d["w_ws_smooth"] += w * r * min(1.0, ws / l2)
        d["w_smooth"] += w * r * min(1.0, w / l2)
    return d


def _fit(A: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    if method == "rel":  # the profiles' fit: non-negative, relative error
        return fit_relative(A, y)
    if method == "ols":
        return np.linalg.lstsq(A / y[:, None], np.ones(len(y)), rcond=None)[0]
    if method == "abs":
        s = np.linalg.norm(A, axis=0)
        s[s == 0] = 1.0
        return nnls(A / s, y) / s
    if method == "l1":  # least absolute relative error, non-negative, by reweighting
        wt = np.ones(len(y))
        for _ in range(30):
            x = _weighted_rel(A, y, wt)
            wt = 1 / np.maximum(np.abs(A @ x / y - 1), 0.01)
        return x
    raise ValueError(method)


def _weighted_rel(A: np.ndarray, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
    sw = np.sqrt(wt)
    B = A / y[:, None] * sw[:, None]
    s = np.linalg.norm(B, axis=0)
    s[s == 0] = 1.0
    return nnls(B / s, sw) / s


def cv_scores(A: np.ndarray, y: np.ndarray, method: str = "rel", k: int = 5, repeats: int = 20) -> dict[str, float]:
    """Out-of-fold relative errors of ``repeats`` shuffled k-fold splits, pooled."""
    errs = []
    for seed in range(repeats):
        idx = np.random.default_rng(seed).permutation(len(y))
        e = np.zeros(len(y))
        for fold in np.array_split(idx, k):
            train = np.setdiff1d(idx, fold)
            e[fold] = A[fold] @ _fit(A[train], y[train], method) / y[fold] - 1
        errs.append(np.abs(e))
    E = np.array(errs)
    return {"w5": float(np.mean(E <= 0.05)), "w10": float(np.mean(E <= 0.10)), "mape": float(100 * E.mean()),
            "p90": float(100 * np.quantile(E, 0.9)), "worst": float(100 * E.max(axis=1).mean())}


CHOSEN = "+ fc weights x min(1, k*n / L2) (`fc_w_spill`)"


def structure_section(cands, y) -> list[str]:
    X = features_many(cands)
    old = [i for i, f in enumerate(FEATURES) if f != "fc_w_spill"]
    ex = [candidate_terms(c) for c in cands]
    col = {k: np.array([e[k] for e in ex])[:, None] for k in ex[0]}
    prev, new = X[:, old], X
    variants = [
        ("previous: 20 per-op features (per-class op counts and a per-invoke constant among them)", prev, "rel"),
        ("  the same, fitted on absolute error", prev, "abs"),
        ("  the same, unconstrained least squares", prev, "ols"),
        ("  the same, least absolute relative error", prev, "l1"),
        ("+ total op count (one shared dispatch cost)", np.hstack([prev, col["n_ops"]]), "rel"),
        (f"+ matmul MACs padded to {XNN_MR}x{XNN_NR} GEMM tiles", np.hstack([prev, col["macs_padded"]]), "rel"),
        ("+ matmuls with a dimension < 16 (small-matmul count)", np.hstack([prev, col["fc_small"]]), "rel"),
        ("+ fc weights of matrices > L2 (step)", np.hstack([prev, col["w_step"]]), "rel"),
        ("+ fc MACs of matrices > L2 (step)", np.hstack([prev, col["macs_step"]]), "rel"),
        ("+ fc weights of calls whose weights+input+output > L2 (step)", np.hstack([prev, col["w_ws_step"]]), "rel"),
        ("+ fc MACs x min(1, k*n / L2)", np.hstack([prev, col["macs_smooth"]]), "rel"),
        ("+ fc weights x min(1, (weights+input+output) / L2)", np.hstack([prev, col["w_ws_smooth"]]), "rel"),
        (CHOSEN, new, "rel"),
        ("  the same, fitted on absolute error", new, "abs"),
        ("  the same, unconstrained least squares", new, "ols"),
        ("  the same, least absolute relative error", new, "l1"),
        ("  the same + matmul MACs padded to GEMM tiles", np.hstack([new, col["macs_padded"]]), "rel"),
    ]
    rows = []
    for name, A, method in variants:
        r = cv_scores(A, y, method)
        label = f"**{name} (chosen)**" if name == CHOSEN else name
        rows.append([label, A.shape[1], f"{100 * r['w5']:.1f}%", f"{100 * r['w10']:.1f}%", f"{r['mape']:.2f}%",
                     f"{r['p90']:.1f}%", f"{r['worst']:.1f}%"])
    sens = []
    for f in (0.25, 0.5, 1, 2, 4):
        ex_f = [candidate_terms(c, f * L2_FLOATS) for c in cands]
        step = cv_scores(np.hstack([prev, np.array([[e["w_step"]] for e in ex_f])]), y)
        smooth = cv_scores(np.hstack([prev, np.array([[e["w_smooth"]] for e in ex_f])]), y)
        sens.append([f"{f:g} x ({f * L2_FLOATS * 4 / 2**20:.3g} MiB)"]
                    + [f"{100 * r['w5']:.1f}% / {100 * r['w10']:.1f}% / {r['mape']:.2f}%" for r in (step, smooth)])
    sq = cv_scores(np.hstack([prev, np.array([[sum(o.k * o.n * o.k * o.n * o.repeat for o in list_ops(c)
                                                    if o.kind == "matmul")] for c in cands])]), y)
    sens.append(["no cap: fc weights x k*n", "", f"{100 * sq['w5']:.1f}% / {100 * sq['w10']:.1f}% / {sq['mape']:.2f}%"])
    return [
        "## Predictor structure: chosen by cross-validation on the training rows", "",
        f"Every variant below was scored by 5-fold cross-validation repeated over 20 shuffles on the {len(y)} "
        f"training rows only (out-of-fold errors pooled; worst = mean over shuffles of the worst row). The "
        f"held-out rows were not looked at until the structure was chosen, and then scored once (next section). "
        f"Fitting is non-negative least squares on relative error unless the row says otherwise. L2 = "
        f"{L2_FLOATS * 4 / 2**20:.3g} MiB, one host core's L2 cache (a hardware fact, not fitted).", "",
        markdown_table(["variant", "terms", "within 5%", "within 10%", "MAPE", "p90 abs", "worst"], rows), "",
        "The chosen term, `fc_w_spill`: a weight matrix of k*n elements is re-read by every row tile of the GEMM; "
        "the share of that traffic that misses L2 grows with the matrix's share of L2 and saturates once it no "
        "longer fits. Its cost replaces the flat per-weight cost (`fc_w` fits to 0 next to it). The previous "
        "variant's per-class op counts (`fc_n`, `ln_n`, ...) and per-invoke constant (`const`) are the dispatch "
        "and fixed-overhead terms; a shared op count, padded tiles or a small-matmul count add nothing on CV. "
        "Unconstrained least squares is not eligible whatever its within-5%: its negative costs give negative "
        "breakdown shares, and its worst out-of-fold errors are the largest.", "",
        "Sensitivity to the cache size (within 5% / within 10% / MAPE on CV; the host's L2 was used before this "
        "scan, and is also the scan's best for the chosen form):", "",
        markdown_table(["cache size", "+ fc weights of matrices > cache (step)",
                        "+ fc weights x min(1, k*n / cache) (chosen form)"], sens), "",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refit", action="store_true", help="refit and rewrite the built-in profiles first")
    ap.add_argument("--calibrate-host", action="store_true",
                    help="first calibrate this machine afresh (mbnas latency calibrate-host, exports included)")
    ap.add_argument("--minutes", type=float, default=15.0, help="--calibrate-host's budget (default 15)")
    args = ap.parse_args()
    if args.refit:
        for p in write_builtin_profiles():
            print(f"wrote {p.relative_to(ROOT)}")
    if args.calibrate_host:
        run_calibrate_host(args.minutes)
    host, pixel = load_profile("host-cpu-litert"), load_profile("pixel4-cpu-tflite")
    out: list[str] = ["# Latency predictor accuracy", "",
                      f"Written by `benchmarks/latency_accuracy.py` on {time.strftime('%Y-%m-%d')}. "
                      f"Error = predicted / measured - 1.", ""]

    # ---------------------------------------------------------------- host: held-out error
    train_c, train_y, _ = ok_rows([HOST_TRAIN])
    out += structure_section(train_c, train_y)
    rows = [r for r in read_rows(HOST_HELDOUT) if r.ok]
    failed = [r for r in read_rows(HOST_TRAIN) + read_rows(HOST_HELDOUT) if not r.ok]
    hc, hy = [r.candidate for r in rows], np.array([r.latency_ms for r in rows])
    pred = host.estimate_many(hc)
    labels = [row_label(c) for c in hc]
    st = error_stats(pred, hy, labels)
    cond = host.conditions
    out += ["## host-cpu-litert: held-out architectures", "",
            f"Measured here: {cond['runtime']}, {cond['threads']} thread, batch 1; statistic: {cond['statistic']} "
            f"({cond['clock']} clock: the thread's CPU time per invoke, which leaves out time slices taken by "
            f"neighbours on this shared 2-core machine but not their cache and memory contention; wall medians "
            f"are in the CSVs). Fitted on {len(train_y)} architectures "
            f"({HOST_TRAIN.relative_to(ROOT)}), scored on {len(hy)} others ({HOST_HELDOUT.relative_to(ROOT)}). "
            f"Failed conversions: {len(failed)}.", ""]
    table = [stats_row("all held-out", st)]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(group_of(r.source, r.candidate), []).append(i)
    for g, idx in sorted(groups.items()):
        table.append(stats_row(g, error_stats(pred[idx], hy[idx], [labels[i] for i in idx])))
    prev = transfer_shape(host).estimate_many(hc)  # the same fit without fc_w_spill = the previous structure
    table.append(stats_row("previous structure (no `fc_w_spill`), same rows", error_stats(prev, hy, labels)))
    fb = flops_baseline(train_c, train_y, hc)
    table.append(stats_row("baseline: a x FLOPs + b (same rows)", error_stats(fb, hy, labels)))
    train_pred = host.estimate_many(train_c)
    table.append(stats_row("training rows (in-sample)",
                           error_stats(train_pred, train_y, [row_label(c) for c in train_c])))
    out += [markdown_table(STATS_HEAD, table), ""]
    target = st.within_10 >= 0.95 and st.within_5 >= 0.80 and st.n >= 40
    out += [f"Target (>= 40 held-out, >= 95% within 10%, >= 80% within 5%): **{'met' if target else 'NOT met'}** "
            f"({st.n} held-out, {100 * st.within_10:.0f}% within 10%, {100 * st.within_5:.0f}% within 5%).", ""]
    sp = error_stats(prev, hy, labels)
    out += [f"The structure was chosen on cross-validation (previous section); scored once here against the previous "
            f"structure on the same rows: within 5% {100 * sp.within_5:.0f}% -> {100 * st.within_5:.0f}%, within 10% "
            f"{100 * sp.within_10:.0f}% -> {100 * st.within_10:.0f}%, MAPE {sp.mape:.2f}% -> {st.mape:.2f}%, worst "
            f"{sp.worst:+.1f}% -> {st.worst:+.1f}%.", ""]
    noise = measurement_noise()
    if noise:
        out += [f"Measurement noise: the {noise['pairs']} held-out models (same .tflite files) timed again in a second "
                f"interleaved pass a few minutes later: median |difference| {noise['median_abs_pct']}%, p90 "
                f"{noise['p90_abs_pct']}%, max {noise['max_abs_pct']}%. Two timings of the same file agree within "
                f"5% only {_within5(noise)} of the time, so the 80%-within-5% target sits at the noise floor here.", ""]
        out += ["Noise by statistic (both passes record all three; the profile uses the median):", "",
                markdown_table(["statistic", "median abs diff", "p90 abs diff", "max abs diff", "within 5%"],
                               _noise_by_statistic()), ""]
    spread = np.array([(float(r.extra["p90_ms"]) - float(r.extra["p10_ms"])) / r.latency_ms for r in rows
                       if "p90_ms" in r.extra])
    if len(spread):
        out += [f"Within one measurement, (p90 - p10) / median of the runs: median {100 * np.median(spread):.1f}%, "
                f"max {100 * spread.max():.1f}%.", ""]
    pts = sorted(zip(labels, hy, pred, prev, [r.source for r in rows]), key=lambda t: -abs(t[2] / t[1] - 1))
    out += ["Held-out rows, worst first:", "",
            markdown_table(["architecture", "source", "measured ms", "predicted ms", "error", "previous structure"],
                           [[lab, src, f"{m:.3f}", f"{p:.3f}", f"{100 * (p / m - 1):+.1f}%",
                             f"{100 * (q / m - 1):+.1f}%"] for lab, m, p, q, src in pts]),
            ""]

    out += calibrate_host_section()

    # ---------------------------------------------------------------- pixel 4
    out += ["## pixel4-cpu-tflite: leave-one-out on the verified Pixel 4 points", "",
            f"Profile: {pixel.description}. Factors fitted on all 4 points: "
            + ", ".join(f"{g} x{v:.3f}" for g, v in pixel.fit["factors"].items()) + ".", ""]
    prow = []
    for p in pixel.error["points"]:
        prow.append([p["label"], p["kind"], f"{p['measured_ms']:.0f}", f"{p['predicted_ms']:.1f}",
                     f"{p['error_pct']:+.1f}%", f"{p['fitted_ms']:.1f}" if "fitted_ms" in p else ""])
    out += [markdown_table(["architecture", "kind", "paper ms", "predicted ms", "error", "all-4 fit ms"], prow), ""]
    loo = [p for p in pixel.error["points"] if p["kind"] == "leave-one-out"]
    ok_loo = all(abs(p["error_pct"]) <= 10 for p in loo)
    u = {n: pixel.estimate(c).latency_ms for n, (c, _) in UNVERIFIED_PIXEL4_MS.items()}
    order = u["mobilebert-nonorm-gelu"] < u["mobilebert-layernorm-relu"]
    out += [f"Target (each verified point within 10% leave-one-out): **{'met' if ok_loo else 'NOT met'}** "
            f"(worst {max(abs(p['error_pct']) for p in loo):.1f}%). Unverified ablation points in the paper's order "
            f"(NoNorm+GELU 92 < LayerNorm+ReLU 167): **{'yes' if order else 'NO'}** "
            f"(predicted {u['mobilebert-nonorm-gelu']:.0f} and {u['mobilebert-layernorm-relu']:.0f} ms).", ""]
    own_costs = {k: v for k, v in host.fit.items() if k != "transfer_coefficients"}  # fc_w_spill kept
    naive = build_pixel_profile(DeviceProfile(name=host.name, coefficients=host.coefficients,
                                              conditions=host.conditions, error={}, fit=own_costs))
    out += ["Scaled from the host's own costs, `fc_w_spill` included (not the transfer shape), leave-one-out would "
            "be: " + ", ".join(f"{p['label'].split(' ')[0]} {p['error_pct']:+.1f}%" for p in naive.error["points"]
                               if p["kind"] == "leave-one-out")
            + ". The spill term prices the host's 1.25 MiB L2; the phone's caches differ and four points cannot fit "
              "them, so the Pixel profile is scaled from the host costs refitted without it.", ""]
    fb_pix = []
    refs = [r for r in REFERENCES.values() if r.pixel4_verified]
    for i, r in enumerate(refs):
        others = [x for j, x in enumerate(refs) if j != i]
        p = flops_baseline([x.candidate for x in others], [x.pixel4_latency_ms for x in others], [r.candidate])[0]
        fb_pix.append(abs(p / r.pixel4_latency_ms - 1))
    out += [f"Baseline a x FLOPs + b, leave-one-out on the same 4 points: worst {100 * max(fb_pix):.0f}%, "
            f"MAPE {100 * np.mean(fb_pix):.0f}% (same FLOPs, 62 vs 192 ms: FLOPs are not latency).", ""]

    # ---------------------------------------------------------------- breakdowns
    brow = []
    for prof in (host, pixel):
        for name in ("mobilebert", "mobilebert-tiny", "mobilebert-no-opt", "bert-base"):
            e = prof.estimate(REFERENCES[name].candidate)
            brow.append([prof.name, name, f"{e.latency_ms:.1f}"] + [f"{e.breakdown[k]:.1f}" for k in OP_CLASSES])
    out += ["## Predicted breakdown of the references (ms)", "", markdown_table(["profile", "architecture", "total"]
                                                                                + list(OP_CLASSES), brow), ""]
    # ---------------------------------------------------------------- speed
    cands = load_space("mobilebert").sample(1000, seed=0) * 100
    best = min(_timed(lambda: pixel.estimate_many(cands)) for _ in range(5))
    out += ["## Prediction speed", "",
            f"`estimate_many` on 100,000 mobilebert-space candidates: {best * 1000:.0f} ms of CPU time on one core "
            f"(best of 5) = {len(cands) / best:,.0f} candidates/s.", ""]
    text = "\n".join(out)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n")
    print(f"\nwrote {OUT.relative_to(ROOT)}")
    return 0


# ------------------------------------------------------------------------------------------------
CH_CSV, CH_JSON = OUT.with_name("latency_calibrate_host.csv"), OUT.with_name("latency_calibrate_host.json")


def run_calibrate_host(minutes: float) -> None:
    """``calibrate_host`` from an empty export folder (a fresh calibration, conversions included)."""
    import json
    import shutil
    import tempfile

    from latency_models.calibrate_host import HostCalibrationConfig, calibrate_host
    from latency_models.host import this_cpu
    from nas.tflite import export_candidate

    with tempfile.TemporaryDirectory(prefix="mbnas-calibrate-host-") as tmp:
        cfg = HostCalibrationConfig(minutes=minutes, keep_dir=Path(tmp) / "tflite", name="this-host")
        res = calibrate_host(Path(tmp) / "this-host.json", export_candidate, cfg,
                             log=lambda s: print(s, file=sys.stderr, flush=True))
        shutil.copy(res.csv, CH_CSV)
    CH_JSON.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": this_cpu().describe(), "minutes": minutes,
        "seconds": res.seconds, "exported": len(res.exported), "skipped_for_time": res.skipped, "failed": res.failed,
        "method": res.method, "rounds": res.rounds, "noise": res.noise, "aim_met": res.aim_met,
        "command": f"python benchmarks/latency_accuracy.py --calibrate-host --minutes {minutes:g}"}, indent=1) + "\n")
    print("\n".join(res.report()))


def calibrate_host_section() -> list[str]:
    """The fresh calibration of this host, and every way to predict it scored on the same timings."""
    import json

    from latency_models.calibrate_host import AIM_SHARE, fit_profile, ratio_errors

    if not (CH_CSV.exists() and CH_JSON.exists()):
        return ["## This host, calibrated afresh (`mbnas latency calibrate-host`)", "",
                "Not measured yet: `python benchmarks/latency_accuracy.py --calibrate-host`.", ""]
    run = json.loads(CH_JSON.read_text())
    rows = [r for r in read_rows(CH_CSV) if r.ok]
    fit = [r for r in rows if r.source.startswith("calibrate-host fit")]
    held = [r for r in rows if r.source.startswith("calibrate-host heldout")]
    fc, fy = [r.candidate for r in fit], np.array([r.latency_ms for r in fit])
    hc, hy = [r.candidate for r in held], np.array([r.latency_ms for r in held])
    anchor = next(i for i, r in enumerate(held) if r.source.endswith("reference:mobilebert"))
    labels = [row_label(c) for c in hc]
    ways = [(f"op-level fit on the {len(fy)} fit rows (calibrate-host's choice from 42 rows on)",
             fit_profile("t", fc, fy, hc, hy, {}, [], method="op-level")[0]),
            ("a factor per op class over host-cpu-litert's costs (its choice below 42 rows)",
             fit_profile("t", fc, fy, hc, hy, {}, [], method="scaled")[0]),
            ("host-cpu-litert as shipped (timed on another CPU; not refitted)", load_profile("host-cpu-litert"))]
    table, verdict = [], None
    for name, prof in ways:
        st = error_stats(prof.estimate_many(hc), hy, labels)
        ra = ratio_errors(prof, hc, hy, anchor)
        table.append([name, st.n, f"{100 * st.within_10:.0f}%", f"{st.median_abs:.1f}%", f"{st.worst:+.1f}%",
                      f"{100 * ra['within_10']:.0f}%", f"{ra['median_abs']:.1f}%", f"{ra['worst']:+.1f}%"])
        if verdict is None:
            verdict = st.within_10 >= AIM_SHARE and ra["within_10"] >= AIM_SHARE
    noise = run.get("noise") or {}
    s = run["seconds"]
    out = ["## This host, calibrated afresh (`mbnas latency calibrate-host`)", "",
           f"Run {run['date']} on {run['cpu']}: `{run['command']}`, from an empty export folder. "
           f"{run['exported']} models exported in {s['export']:.0f} s, timed together over {run.get('rounds', '?')} "
           f"interleaved rounds (as many as the budget left allowed) in {s['time']:.0f} s, {s['total']:.0f} s in all (budget {60 * run['minutes']:.0f} s); "
           f"{len(run['skipped_for_time'])} left out for time, {len(run['failed'])} failed. "
           f"{len(fy)} fit rows, {len(hy)} held-out rows (never fitted; ratios to MobileBERT, timed in the same "
           f"rounds, over the {len(hy) - 1} others). Timings: `{CH_CSV.relative_to(ROOT)}`.", "",
           markdown_table(["predictor", "held-out", "within 10%", "median abs", "worst", "ratios within 10%",
                           "ratio median abs", "ratio worst"], table), "",
           f"Noise floor of the same run (per model, the even rounds' median against the odd rounds'): median "
           f"{noise.get('median_abs_pct', float('nan')):.1f}%, p90 {noise.get('p90_abs_pct', float('nan')):.1f}%, "
           f"max {noise.get('max_abs_pct', float('nan')):.1f}% over {noise.get('models', 0)} models.", "",
           f"Aim (>= {100 * AIM_SHARE:.0f}% of held-out latencies and >= {100 * AIM_SHARE:.0f}% of their ratios "
           f"within 10%, by the op-level fit): **{'met' if verdict else 'NOT met'}**.", ""]
    best = ways[0][1]
    pred = best.estimate_many(hc)
    rows_out = []
    for i in sorted(range(len(hc)), key=lambda i: -abs(pred[i] / hy[i] - 1)):
        ratio = "" if i == anchor else f"{100 * ((pred[i] / pred[anchor]) / (hy[i] / hy[anchor]) - 1):+.1f}%"
        rows_out.append([labels[i], held[i].source.split(": ", 1)[-1], f"{hy[i]:.3f}", f"{pred[i]:.3f}",
                         f"{100 * (pred[i] / hy[i] - 1):+.1f}%", ratio])
    out += ["Held-out rows by the op-level fit, worst first:", "",
            markdown_table(["architecture", "source", "measured ms", "predicted ms", "error", "ratio error"],
                           rows_out), ""]
    return out


def _pairs():
    from latency_models.dataset import candidate_key

    h = {candidate_key(r.candidate, r.threads): r for r in read_rows(HOST_HELDOUT) if r.ok}
    return [(h[k], r) for r in read_rows(HOST_REPEAT) if r.ok and (k := candidate_key(r.candidate, r.threads)) in h]


def _within5(noise) -> str:
    d = np.array([b.latency_ms / a.latency_ms - 1 for a, b in _pairs()])
    return f"{100 * np.mean(np.abs(d) <= 0.05):.0f}%"


def _noise_by_statistic():
    rows = []
    for col, name in (("cpu_median_ms", "median of all runs"), ("best_round_ms", "least-loaded round's median"),
                      ("p10_ms", "10th percentile of all runs")):
        d = np.abs(np.array([float(b.extra[col]) / float(a.extra[col]) - 1 for a, b in _pairs() if col in a.extra]))
        if len(d):
            rows.append([name, f"{100 * np.median(d):.2f}%", f"{100 * np.quantile(d, 0.9):.2f}%",
                         f"{100 * d.max():.2f}%", f"{100 * np.mean(d <= 0.05):.0f}%"])
    return rows


def _timed(f) -> float:
    t0 = time.thread_time()
    f()
    return time.thread_time() - t0


if __name__ == "__main__":
    sys.exit(main())
