"""The long runs behind the recipe and quality-axis results, in one queue on both cores:

    MBNAS_TEACHER_SPILL_DIR=... python benchmarks/quality_runs.py [--jobs 2] [--gt-precision bf16]

ground_truth.py's runs interleaved with proxy_validity.py's cheap-score runs of the same candidates,
in blocks of 8 (the norm-pair candidates' seed 0, then their seed 1, then the rest), the ground
truth's stability runs, then transfer_strategies.py's runs (3 seeds) and recipe.py's data and
release parts. Each run lands in its own benchmark's runs file as it finishes;
afterwards (or at any time) each script's ``--report`` (recipe.py: ``report``) writes its table.
Kill it at any time: a rerun does only the missing runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import ground_truth, proxy_validity, recipe, transfer_strategies  # noqa: E402
from benchmarks._report import RunsFile  # noqa: E402
from benchmarks._train import run_queue, teacher_of  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--gt-precision", choices=("fp32", "bf16"), default=ground_truth.GT_PRECISION)
    ap.add_argument("--proxy-precision", choices=("fp32", "bf16"), default="fp32")
    args = ap.parse_args()
    space, _ = teacher_of("demo")
    gs, ps = RunsFile(ground_truth.RUNS, "ground-truth"), RunsFile(proxy_validity.RUNS, "proxy-validity")
    gt = [(gs, k, s) for k, s in ground_truth.plan(space, ("main",), args.gt_precision) if k not in gs.done]
    cheap = [(ps, k, s) for k, s in proxy_validity.plan(space, args.proxy_precision) if k not in ps.done]
    # first the quality axis, in blocks of the norm pairs' 8 candidates: ground truth of a seed, then the
    # same candidates' cheap scores, so that a queue cut short still yields a comparison (one seed
    # first), then the rest; then the stability check, then the strategy and recipe reruns
    todo: list[tuple] = []
    block = 2 * len(ground_truth.NORM_PAIRS)
    for i in range(0, max(len(gt), len(cheap)), block):
        todo += gt[i:i + block] + cheap[i:i + block]
    todo += [(gs, k, s) for k, s in ground_truth.plan(space, ("stability",), args.gt_precision) if k not in gs.done]
    ts = transfer_strategies.store_of()
    todo += [(ts, k, s) for k, s in transfer_strategies.plan(3) if k not in ts.done]
    rs = recipe.store_of()
    todo += sorted([(rs, k, s) for part in ("data", "release") for k, s in recipe.todo(part, rs)],
                   key=lambda t: -t[2]["overrides"].get("layer_steps", 0))  # the longest first
    print(f"{len(todo)} runs queued", flush=True)
    run_queue(todo, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
