"""Ground truth for the demo space: 16 candidates trained long, 2 seeds each, scored on held-out
text and on a downstream task. A small NAS benchmark (format: docs/ground_truth.md).

    python benchmarks/ground_truth.py [--jobs 2] [--parts main stability] [--precision fp32]
    python benchmarks/ground_truth.py --report      # the table from the runs so far

- main: every candidate of ``CANDIDATES`` at the ground-truth budget (``GT_MULTIPLE`` x the search
  budget), progressive transfer, seeds 0 and 1; held-out masked-LM scores, then a fine-tune of
  ``DOWNSTREAM_STEPS`` steps on Rotten Tomatoes (its dev split's accuracy).
- stability: ``STABILITY`` candidates at twice that budget, seed 0: is their order the same?

Every run is one line of benchmarks/results/ground_truth-runs.jsonl (resumable: a killed run is
redone, finished ones are kept; a line is keyed by recipe version, teacher, candidate, budget, seed
and precision, so it outlives unrelated code changes). Set MBNAS_TEACHER_SPILL_DIR to keep the
teacher's outputs on disk between runs (13.7 GB a seed at 5x; the runs are then ~40% shorter).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import RESULTS, RunsFile, write_result  # noqa: E402
from benchmarks._train import run_all, teacher_of  # noqa: E402

GT_MULTIPLE = 5
GT_PRECISION = "bf16"  # the committed runs: bf16 autocast, on a CPU with AVX512-BF16 1.7x faster (cpu_bf16.md)
SEEDS = (0, 1)
DOWNSTREAM_STEPS = 600
RUNS = RESULTS / "ground_truth-runs.jsonl"
TABLE = RESULTS / "ground_truth.json"


def _c(intra, ffn, ratio, norm, act, attention):
    return dict(intra_size=intra, num_ffn=ffn, mha_ffn_ratio=ratio, norm=norm, act=act, attention=attention)


# 16 candidates over every searched dimension: four bases in both norms (4 norm pairs), three of
# them with the other activation (3 activation pairs), and five more across sizes and attention.
CANDIDATES = {
    "A-nn": _c(32, 1, 0.5, "no_norm", "relu", "bottleneck"), "A-ln": _c(32, 1, 0.5, "layer_norm", "relu", "bottleneck"),
    "B-nn": _c(64, 2, 0.4, "no_norm", "relu", "shared_qk"), "B-ln": _c(64, 2, 0.4, "layer_norm", "relu", "shared_qk"),
    "C-nn": _c(96, 3, 0.3, "no_norm", "gelu", "shared_qk"), "C-ln": _c(96, 3, 0.3, "layer_norm", "gelu", "shared_qk"),
    "D-nn": _c(128, 4, 0.25, "no_norm", "gelu", "bottleneck"),
    "D-ln": _c(128, 4, 0.25, "layer_norm", "gelu", "bottleneck"),
    "A-nn-gelu": _c(32, 1, 0.5, "no_norm", "gelu", "bottleneck"),
    "B-ln-gelu": _c(64, 2, 0.4, "layer_norm", "gelu", "shared_qk"),
    "C-nn-relu": _c(96, 3, 0.3, "no_norm", "relu", "shared_qk"),
    "tiny": _c(16, 1, 0.5, "no_norm", "relu", "bottleneck"),
    "E": _c(48, 4, 0.6, "layer_norm", "gelu", "shared_qk"),
    "F": _c(128, 1, 0.8, "no_norm", "relu", "shared_qk"),
    "G": _c(96, 2, 0.9, "layer_norm", "relu", "bottleneck"),
    "H": _c(48, 2, 0.2, "no_norm", "gelu", "bottleneck"),
}
NORM_PAIRS = [("A-nn", "A-ln"), ("B-nn", "B-ln"), ("C-nn", "C-ln"), ("D-nn", "D-ln")]
ACT_PAIRS = [("A-nn", "A-nn-gelu"), ("B-ln", "B-ln-gelu"), ("C-nn", "C-nn-relu")]
STABILITY = ("tiny", "B-nn", "C-ln", "D-ln")
METRICS = ("mlm_accuracy", "heldout_ce", "downstream_accuracy")
# The ground truth a cheap score must rank like: held-out cross-entropy of the masked tokens, read as
# the likelihood exp(-CE) so that higher is better like every score (the training objective of MLM
# pre-training; accuracy and the downstream task are in the table too).
GT_METRIC = "mlm_likelihood"


def budget(space, multiple: int) -> dict:
    d = space.distill_budget
    return dict(layer_steps=multiple * d["layer_steps"], pd_steps=multiple * d["pd_steps"])


def plan(space, parts, precision: str) -> list[tuple[str, dict]]:
    """(key, spec) of every run of ``parts``."""
    from nas.distill.settings import RECIPE_VERSION

    _, teacher = teacher_of("demo")
    runs = []
    for part in parts:
        names, multiple, seeds = ((CANDIDATES, GT_MULTIPLE, SEEDS) if part == "main" else
                                  (STABILITY, 2 * GT_MULTIPLE, (0,)))
        # the norm pairs' 8 candidates in both seeds first: a complete sub-benchmark (seed spread, the
        # cost of NoNorm) if a run is cut short; then the rest, first seeds first
        first = [n for n in names if any(n in p for p in NORM_PAIRS)]
        order = [(seed, n) for seed in seeds for n in first] + [(seed, n) for seed in seeds for n in names
                                                                if n not in first]
        for seed, name in order:
            c = space.build(**CANDIDATES[name])
            ov = {**budget(space, multiple), "precision": precision}
            key = RunsFile.key(f"recipe{RECIPE_VERSION}", teacher.hash, c.label, f"{multiple}x", seed, precision)
            runs.append((key, dict(space="demo", candidate=c.to_dict(), strategy="progressive", seed=seed,
                                   overrides=ov, threads=1, name=name, multiple=multiple,
                                   downstream=DOWNSTREAM_STEPS if part == "main" else None)))
    return runs


def ground_truth(store, space, precision: str) -> dict[str, dict]:
    """name -> {metric: [per-seed values]} at the ground-truth budget (finished runs only)."""
    out: dict[str, dict] = {}
    for key, spec in plan(space, ("main",), precision):
        r = store.done.get(key)
        if r is None or "failure" in r:
            continue
        d = out.setdefault(spec["name"], {"label": r["label"], "params_m": r["params_m"]})
        for m in (*METRICS, GT_METRIC):
            d.setdefault(m, []).append(r["scores"].get(m))
    return out


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b of two equally long lists (ties in either count as in scipy.stats.kendalltau)."""
    conc = disc = ta = tb = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        x, y = (a[i] > a[j]) - (a[i] < a[j]), (b[i] > b[j]) - (b[i] < b[j])
        if x == 0 and y == 0:
            continue
        if x == 0:
            ta += 1
        elif y == 0:
            tb += 1
        elif x == y:
            conc += 1
        else:
            disc += 1
    denom = ((conc + disc + ta) * (conc + disc + tb)) ** 0.5
    return (conc - disc) / denom if denom else float("nan")


def decided_pairs_kept(a: list[float], b: list[float], tol: float) -> tuple[int, int, int, int]:
    """Of all pairs: how many ``a`` orders by more than ``tol`` (the seed std: closer pairs are ties),
    how many of those ``b`` orders the same way, and how many ``b`` reverses by more than ``tol``
    -> (pairs, decided, kept, reversed beyond the spread)."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    decided = [(i, j) for i, j in pairs if abs(a[i] - a[j]) > tol]
    kept = sum((a[i] > a[j]) == (b[i] > b[j]) for i, j in decided)
    flipped = sum((a[i] > a[j]) != (b[i] > b[j]) and abs(b[i] - b[j]) > tol for i, j in decided)
    return len(pairs), len(decided), kept, flipped


def seed_std(gt: dict[str, dict], metric: str) -> float:
    """Pooled standard deviation between seeds over the candidates with every seed done."""
    vs = [statistics.variance(d[metric]) for d in gt.values() if len(d[metric]) == len(SEEDS) > 1]
    return statistics.fmean(vs) ** 0.5 if vs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", choices=("main", "stability"), default=["main", "stability"])
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=GT_PRECISION)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only write the table of the runs so far")
    args = ap.parse_args()
    space, teacher = teacher_of("demo")
    store = RunsFile(RUNS, "ground-truth")  # keys carry what makes a run comparable (see plan)
    runs = plan(space, ("main", "stability"), args.precision)
    if not args.report:
        todo = [(k, s) for k, s in plan(space, args.parts, args.precision) if k not in store.done]
        print(f"{len(todo)} runs to do ({len(runs) - len(todo)} of {len(runs)} done)", flush=True)
        run_all(todo, store, args.jobs)
    write_report(store, space, teacher, args.precision)
    return 0


def write_report(store, space, teacher, precision: str) -> None:
    from nas.distill import DistillSettings

    gt = ground_truth(store, space, precision)
    n_runs = sum(1 for k, _ in plan(space, ("main", "stability"), precision) if k in store.done)
    total = len(plan(space, ("main", "stability"), precision))
    s = DistillSettings.for_space(space)
    b = budget(space, GT_MULTIPLE)
    rows = []
    for name in CANDIDATES:
        d = gt.get(name)
        if d is None:
            rows.append(f"| {name} | {space.build(**CANDIDATES[name]).label} | | (not run yet) | | | |")
            continue
        cells = []
        for m in METRICS:
            vs = [v for v in d[m] if v is not None]
            cells.append(" / ".join(f"{v:.4f}" for v in vs) or "-")
        rows.append(f"| {name} | {d['label']} | {d['params_m']:.2f} | {len(d[METRICS[0]])} | " + " | ".join(cells) + " |")
    std = {m: seed_std(gt, m) for m in (*METRICS, GT_METRIC)}
    spread = {m: (max(statistics.fmean(d[m]) for d in gt.values()) - min(statistics.fmean(d[m]) for d in gt.values()))
              if gt else float("nan") for m in (*METRICS, GT_METRIC)}
    body = (f"Teacher {teacher.hash}: held-out masked-token accuracy {teacher.meta['heldout']['mlm_accuracy']:.4f}. "
            f"Ground-truth budget: {GT_MULTIPLE}x the search budget = {space.fixed['num_layers']} x "
            f"{b['layer_steps']} layer-wise + {b['pd_steps']} distillation steps (batch {s.batch_size} x "
            f"{space.fixed['seq_len']}), progressive, recipe 2 (fresh batches, warm-up + decay), {precision}, seeds "
            f"{', '.join(map(str, SEEDS))}; downstream: {DOWNSTREAM_STEPS} fine-tune steps on Rotten Tomatoes, "
            f"accuracy on its dev split. Runs done: {n_runs} of {total}.\n\n"
            "Each cell: seed 0 / seed 1.\n\n| name | candidate | params (M) | seeds | mlm_accuracy | heldout_ce | "
            "downstream_accuracy |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n")
    body += "| metric | best - worst candidate (means) | seed std (pooled) | ratio |\n|---|---|---|---|\n"
    for m in (*METRICS, GT_METRIC):
        body += f"| {m} | {spread[m]:.4f} | {std[m]:.4f} | {spread[m] / std[m]:.1f} |\n"
    # stability: the order of STABILITY at the ground-truth budget and at twice it
    twice = {}
    for k, spec in plan(space, ("stability",), precision):
        r = store.done.get(k)
        if r and "failure" not in r:
            twice[spec["name"]] = r["scores"]
    both = [n for n in STABILITY if n in twice and n in gt]
    if len(both) >= 2:
        a = [gt[n][GT_METRIC][0] for n in both]
        c = [twice[n][GT_METRIC] for n in both]
        body += (f"\nStability ({GT_METRIC}, seed 0): {GT_MULTIPLE}x "
                 + ", ".join(f"{n} {x:.5f}" for n, x in zip(both, a)) + f"; {2 * GT_MULTIPLE}x "
                 + ", ".join(f"{n} {x:.5f}" for n, x in zip(both, c))
                 + f". Kendall tau between the two orders: {kendall_tau(a, c):.2f}. ")
        n, decided, kept, flipped = decided_pairs_kept(a, c, std[GT_METRIC])
        body += (f"Of the {n} pairs, {decided} differ at {GT_MULTIPLE}x by more than the seed std "
                 f"({std[GT_METRIC]:.5f}); at {2 * GT_MULTIPLE}x {kept} of those keep their order, "
                 f"{decided - kept - flipped} turn within the seed spread, {flipped} beyond it. "
                 f"The other {n - decided} are ties at {GT_MULTIPLE}x (within the seed spread, as in the matched pairs).\n")
    else:
        body += f"\nStability ({2 * GT_MULTIPLE}x): not run yet.\n"
    write_result("ground_truth", "Ground truth: demo candidates trained long", body)
    TABLE.write_text(json.dumps({
        "space": "demo", "teacher": teacher.hash, "metric": GT_METRIC, "budget": {**b, "multiple": GT_MULTIPLE},
        "precision": precision, "seeds": list(SEEDS), "downstream_steps": DOWNSTREAM_STEPS,
        "seed_std": std, "candidates": {n: {**d, "candidate": space.build(**CANDIDATES[n]).to_dict()}
                                        for n, d in gt.items()},
        "norm_pairs": NORM_PAIRS, "act_pairs": ACT_PAIRS}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
