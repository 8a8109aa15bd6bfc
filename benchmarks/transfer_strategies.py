"""Knowledge-transfer strategies compared on one budget, and which score separates candidates.

Part 1 (strategies): on the demo space, one mid-size candidate trained by progressive, joint,
auxiliary, theseus (curriculum), theseus-constant and the no-teacher baseline, same number of
optimiser steps, several seeds; mean and spread of every held-out score.
Part 2 (scores): candidates of clearly different capacity (progressive, several seeds); for each
score, the gap between the largest and smallest candidate divided by the spread between seeds.
The default search objective is the score with the largest separation.

    python benchmarks/transfer_strategies.py [--seeds 3] [--space demo] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import mean_std, write_result  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="demo")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--skip-separation", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import torch

    from nas.distill import SCORES, STRATEGIES, DistillSettings, distill_candidate
    from nas.ops import count
    from nas.table import markdown_table
    from nas.teacher import describe, load_teacher
    from search_spaces import load_space

    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space(args.space)
    teacher = load_teacher(space)
    mid = space.build(intra_size=64, num_ffn=2, mha_ffn_ratio=0.4, norm="no_norm", act="relu", attention="shared_qk")
    strategies = args.strategies or list(STRATEGIES)
    score_keys = SCORES
    rows, data, progressive_mid = [], "", None
    budget = DistillSettings.for_space(space)
    for strat in strategies:
        runs = []
        for seed in range(args.seeds):
            r = distill_candidate(mid, teacher, DistillSettings.for_space(space, strategy=strat, seed=seed))
            runs.append(r)
            data = r.score_data
            print(f"{strat} seed {seed}: {r.scores} {r.seconds:.0f}s", flush=True)
        if strat == "progressive":
            progressive_mid = [r.scores for r in runs]
        row = [strat]
        for k in score_keys:
            m, s = mean_std([r.scores[k] for r in runs])
            row.append(f"{m:.4f} ± {s:.4f}")
        row.append(f"{statistics.median(r.timings['train'] for r in runs):.0f}")
        rows.append(row)
    body = (f"Teacher: {describe(teacher)}\n\nCandidate: {mid.label} ({count(mid).params_m:.2f}M params). Budget "
            f"per run: {space.fixed['num_layers']} x {budget.layer_steps} layer-wise steps + {budget.pd_steps} "
            f"distillation steps (or the same number of masked-LM steps), batch {budget.batch_size} x "
            f"{space.fixed['seq_len']} tokens, {args.seeds} seeds each; mean ± standard deviation over seeds.\n"
            f"Scores measured on the {data}.\n\n"
            + markdown_table(["strategy", *score_keys, "train s (median)"], rows)
            + "\n\nmlm_likelihood = exp(-held-out cross-entropy); teacher_fidelity = exp(-KL(teacher || student)).")

    if not args.skip_separation:
        small = space.build(intra_size=16, num_ffn=1, mha_ffn_ratio=0.5, norm="no_norm", act="relu", attention="bottleneck")
        large = space.build(intra_size=128, num_ffn=4, mha_ffn_ratio=0.25, norm="layer_norm", act="gelu", attention="shared_qk")
        res = {}
        for c in (small, mid, large):
            if c == mid and progressive_mid is not None:
                res[c] = progressive_mid
                continue
            res[c] = [distill_candidate(c, teacher, DistillSettings.for_space(space, seed=seed)).scores
                      for seed in range(args.seeds)]
            print(c.label, res[c], flush=True)
        srows, best, best_sep = [], None, -1.0
        for k in score_keys:
            means = {c: statistics.fmean(s[k] for s in res[c]) for c in res}
            spread = statistics.fmean((statistics.stdev(s[k] for s in res[c]) if args.seeds > 1 else 0.0) for c in res)
            gap = abs(means[large] - means[small])
            sep = gap / spread if spread > 0 else float("inf")
            ordered = (means[small] < means[mid] < means[large]) or (means[small] > means[mid] > means[large])
            srows.append([k, f"{means[small]:.4f}", f"{means[mid]:.4f}", f"{means[large]:.4f}", f"{spread:.4f}",
                          f"{sep:.1f}", "yes" if ordered else "no"])
            if sep > best_sep:
                best, best_sep = k, sep
        body += ("\n\n## Which score separates candidates\n\nProgressive transfer, same budget; small = "
                 f"{small.label} ({count(small).params_m:.2f}M), mid = {mid.label}, large = {large.label} "
                 f"({count(large).params_m:.2f}M). Separation = |large - small| / mean seed standard deviation.\n\n"
                 + markdown_table(["score", "small", "mid", "large", "seed std", "separation", "monotone"], srows)
                 + f"\n\nLargest separation: **{best}** ({best_sep:.1f}x the seed spread).\n")
    write_result("transfer_strategies", "Knowledge-transfer strategies and score separation", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
