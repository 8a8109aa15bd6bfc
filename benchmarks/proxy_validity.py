"""Which cheap score ranks demo candidates as the ground truth does (benchmarks/ground_truth.py).

    python benchmarks/proxy_validity.py [--jobs 2]

Each ground-truth candidate is trained at the search budget (the demo space's, progressive, seeds
0 and 1), which records every score ``mbnas distill`` measures (nas.mlm, nas.proxies); parameter
count is the naive baseline. For each score: Kendall's tau-b between the score (per seed, then the
mean of the two taus) and the ground truth's metric (mean over its seeds), and the share of matched
pairs (norm-only and activation-only pairs) the score orders as the ground truth does, a pair whose
ground-truth difference is within the ground truth's seed standard deviation counting as a tie
(agreement whatever the score says). Writes benchmarks/results/proxy_validity.{md,json} and the
measured tau of each score into nas/assets/score_validity.json, which the search summary and the
dashboard show next to the score. Runs: benchmarks/results/proxy_validity-runs.jsonl (resumable).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import RESULTS, RunsFile, write_result  # noqa: E402
from benchmarks._train import run_all, teacher_of  # noqa: E402
from benchmarks.ground_truth import (  # noqa: E402
    ACT_PAIRS, CANDIDATES, GT_METRIC, GT_MULTIPLE, GT_PRECISION, NORM_PAIRS, RUNS as GT_RUNS, SEEDS, budget, ground_truth,
    kendall_tau, seed_std,
)

RUNS = RESULTS / "proxy_validity-runs.jsonl"
AIM_TAU, AIM_PAIRS = 0.7, 0.8
VALIDITY = Path(__file__).resolve().parents[1] / "nas" / "assets" / "score_validity.json"


def plan(space, precision: str) -> list[tuple[str, dict]]:
    """(key, spec) of every cheap-score run: the ground truth's candidates at the search budget, in
    the ground truth's order."""
    from benchmarks.ground_truth import plan as gt_plan
    from nas.distill.settings import RECIPE_VERSION

    _, teacher = teacher_of("demo")
    out = []
    for _, spec in gt_plan(space, ("main",), precision):
        c = space.build(**CANDIDATES[spec["name"]])
        key = RunsFile.key(f"recipe{RECIPE_VERSION}", teacher.hash, c.label, "1x", spec["seed"], precision)
        out.append((key, dict(space="demo", candidate=c.to_dict(), strategy="progressive", seed=spec["seed"],
                              overrides={"precision": precision}, threads=1, name=spec["name"])))
    return out


def main() -> int:
    from nas.distill import SCORES
    from nas.distill.settings import DEFAULT_SCORE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="of the cheap-score runs "
                    "(a search's default on a CPU: fp32)")
    ap.add_argument("--gt-precision", choices=("fp32", "bf16"), default=GT_PRECISION,
                    help=f"of the ground truth's runs (default {GT_PRECISION}, as committed)")
    ap.add_argument("--report", action="store_true", help="only write the tables of the runs so far")
    args = ap.parse_args()
    space, teacher = teacher_of("demo")
    store = RunsFile(RUNS, "proxy-validity")
    runs = plan(space, args.precision)
    if not args.report:
        run_all([(k, s) for k, s in runs if k not in store.done], store, args.jobs)

    gt = ground_truth(RunsFile(GT_RUNS, "ground-truth"), space, args.gt_precision)
    # a partial ground truth is reported as such: each candidate's mean over the seeds it has
    truth = {n: statistics.fmean(d[GT_METRIC]) for n, d in gt.items()}
    gt_seeds = {n: len(d[GT_METRIC]) for n, d in gt.items()}
    std = seed_std(gt, GT_METRIC)  # nan until some candidate has every seed
    cheap: dict[int, dict[str, dict[str, float]]] = {}  # seed -> name -> scores
    for key, spec in runs:
        r = store.done.get(key)
        if r and "failure" not in r:
            cheap.setdefault(spec["seed"], {})[spec["name"]] = {**r["scores"], "params_m": r["params_m"]}
    names = [n for n in truth if n in cheap.get(SEEDS[0], {})]
    seeds = [s for s in SEEDS if names and all(n in cheap.get(s, {}) for n in names)]  # cheap seeds for all of them
    scores = [*SCORES, "params_m"]
    taus, pairs_ok = {}, {}
    pairs = [p for p in NORM_PAIRS + ACT_PAIRS if p[0] in names and p[1] in names]
    for k in scores:
        per_seed = [kendall_tau([cheap[s][n][k] for n in names], [truth[n] for n in names]) for s in seeds]
        taus[k] = statistics.fmean(per_seed) if len(names) >= 3 and per_seed else float("nan")
        agree = []
        for s in seeds:
            for a, b in pairs:
                d = truth[a] - truth[b]
                agree.append((std == std and abs(d) <= std) or (cheap[s][a][k] - cheap[s][b][k]) * d > 0)
        pairs_ok[k] = statistics.fmean(agree) if agree else float("nan")
    searchable = [k for k in SCORES if taus[k] == taus[k]]
    best = max(searchable, key=lambda k: (taus[k], pairs_ok[k])) if searchable else None
    complete = len(names) == len(CANDIDATES) and all(gt_seeds.get(n) == len(SEEDS) for n in names) and \
        seeds == list(SEEDS)
    spread = (max(truth.values()) - min(truth.values())) / std if len(truth) > 1 and std > 0 else float("nan")
    b = budget(space, GT_MULTIPLE)
    distill_args = f"--layer-steps {b['layer_steps']} --pd-steps {b['pd_steps']}" + (
        " --precision bf16" if args.gt_precision == "bf16" else "")  # the ground truth's runs, not the cheap ones
    result = {
        "default_score": best if complete else f"{DEFAULT_SCORE} (unchanged: the measurement is partial)", "kendall_tau": taus, "n_candidates": len(names),
        "matched_pairs_agreement": pairs_ok, "n_matched_pairs": len(pairs),
        "ground_truth_budget": {**b, "distill_args": distill_args},
        "ground_truth_metric": GT_METRIC, "ground_truth_seed_std": std, "ground_truth_spread_over_seed_std": spread,
        "aim": {"kendall_tau": AIM_TAU, "matched_pairs_agreement": AIM_PAIRS},
        "meets_aim": [k for k in scores if taus[k] >= AIM_TAU and pairs_ok[k] >= AIM_PAIRS],
        "teacher": teacher.hash, "precision": args.precision, "ground_truth_precision": args.gt_precision,
        "complete": complete, "cheap_seeds": seeds,
    }
    (RESULTS / "proxy_validity.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = [f"| {k} | {taus[k]:.2f} | {pairs_ok[k]:.0%} |" for k in sorted(scores, key=lambda k: -taus[k]
                                                                              if taus[k] == taus[k] else 9)]
    status = ("complete" if complete else
              f"**PARTIAL**: {len(names)} of {len(CANDIDATES)} candidates, ground-truth seeds per candidate "
              f"{sorted(set(gt_seeds.get(n, 0) for n in names)) or '-'} of {len(SEEDS)}, cheap-score seeds {seeds or '-'}; "
              "a tau over few candidates moves a lot with one more, so read it as a first look, not a verdict")
    body = (f"Status: {status}.\n\nCheap scores: demo search budget, progressive, fp32 as a search on a CPU trains; "
            f"ground truth: {GT_METRIC} at {GT_MULTIPLE}x in {args.gt_precision} (benchmarks/results/ground_truth.md), "
            f"mean of its seeds. Matched pairs: {len(pairs)} (a pair closer than the ground truth's seed std counts "
            f"as a tie, so as agreeing); ground-truth seed std {std:.4f}"
            + (" (no candidate has every seed yet: no pair counts as a tie)" if std != std else "")
            + f", best - worst = {spread:.1f}x it.\n\n"
            f"| score | Kendall tau (mean over seeds) | matched pairs ordered as the ground truth |\n|---|---|---|\n"
            + "\n".join(rows) + f"\n\nAim: tau >= {AIM_TAU} and >= {AIM_PAIRS:.0%} of pairs. Meeting it: "
            f"{', '.join(result['meets_aim']) or 'none'}. Best searchable score: {best}.\n")
    write_result("proxy_validity", "Proxy validity: cheap scores against the ground truth", body)
    if complete:  # only a complete measurement speaks for the tool
        VALIDITY.write_text(json.dumps({"space": "demo", "teacher": teacher.hash, "n_candidates": len(names),
                                        "kendall_tau": {k: round(v, 3) for k, v in taus.items()},
                                        "aim_tau": AIM_TAU, "default_score": best,
                                        "source": "benchmarks/results/proxy_validity.md"}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
