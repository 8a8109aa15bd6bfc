"""How right are the latency profiles? Prints the tables and writes benchmarks/results/latency_accuracy.md.

    python benchmarks/latency_accuracy.py            # from the committed measurements and profiles
    python benchmarks/latency_accuracy.py --refit    # refit both profiles from the CSVs first (rewrites them)

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
from latency_models.calibrate import (HOST_HELDOUT, HOST_REPEAT, HOST_TRAIN, measurement_noise,  # noqa: E402
                                      ok_rows, write_builtin_profiles)
from latency_models.dataset import read_rows  # noqa: E402
from latency_models.fit import error_stats, fit_relative, row_label  # noqa: E402
from nas.ops import OP_CLASSES, count  # noqa: E402
from nas.references import REFERENCES, UNVERIFIED_PIXEL4_MS  # noqa: E402
from nas.table import markdown_table  # noqa: E402
from search_spaces import load_space  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refit", action="store_true", help="refit and rewrite the built-in profiles first")
    args = ap.parse_args()
    if args.refit:
        for p in write_builtin_profiles():
            print(f"wrote {p.relative_to(ROOT)}")
    host, pixel = load_profile("host-cpu-litert"), load_profile("pixel4-cpu-tflite")
    out: list[str] = ["# Latency predictor accuracy", "",
                      f"Written by `benchmarks/latency_accuracy.py` on {time.strftime('%Y-%m-%d')}. "
                      f"Error = predicted / measured - 1.", ""]

    # ---------------------------------------------------------------- host: held-out error
    train_c, train_y, _ = ok_rows([HOST_TRAIN])
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
    fb = flops_baseline(train_c, train_y, hc)
    table.append(stats_row("baseline: a x FLOPs + b (same rows)", error_stats(fb, hy, labels)))
    train_pred = host.estimate_many(train_c)
    table.append(stats_row("training rows (in-sample)",
                           error_stats(train_pred, train_y, [row_label(c) for c in train_c])))
    out += [markdown_table(STATS_HEAD, table), ""]
    target = st.within_10 >= 0.95 and st.within_5 >= 0.80 and st.n >= 40
    out += [f"Target (>= 40 held-out, >= 95% within 10%, >= 80% within 5%): **{'met' if target else 'NOT met'}** "
            f"({st.n} held-out, {100 * st.within_10:.0f}% within 10%, {100 * st.within_5:.0f}% within 5%).", ""]
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
    pts = sorted(zip(labels, hy, pred, [r.source for r in rows]), key=lambda t: -abs(t[2] / t[1] - 1))
    out += ["Held-out rows, worst first:", "",
            markdown_table(["architecture", "source", "measured ms", "predicted ms", "error"],
                           [[lab, src, f"{m:.3f}", f"{p:.3f}", f"{100 * (p / m - 1):+.1f}%"]
                            for lab, m, p, src in pts]),
            ""]

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
