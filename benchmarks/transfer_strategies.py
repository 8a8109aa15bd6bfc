"""Knowledge-transfer strategies compared on one budget, and which score separates candidates.

Part 1 (strategies): on the demo space, one mid-size candidate trained by progressive, joint,
auxiliary, theseus (curriculum), theseus-constant and the no-teacher baseline, same number of
optimiser steps, several seeds; mean and spread of every held-out score.
Part 2 (scores): candidates of clearly different capacity (progressive, several seeds); for each
score, the gap between the largest and smallest candidate divided by the spread between seeds.
The default search objective is the score with the largest separation.

    python benchmarks/transfer_strategies.py [--seeds 3] [--space demo] [--jobs 2] [--threads 1]

Every finished run is appended to ``--runs-file`` (JSON lines; default
benchmarks/results/transfer_strategies-runs.jsonl, committed with the table as the per-seed record).
A killed benchmark rerun with the same settings reuses the runs made with the same training code
(a fingerprint of nas/ and search_spaces/) and does only the missing ones.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import RESULTS, RunsFile, code_fingerprint, mean_std, write_result  # noqa: E402


SIZES = {  # candidates of clearly different capacity for part 2; "mid" is also part 1's candidate
    "small": dict(intra_size=16, num_ffn=1, mha_ffn_ratio=0.5, norm="no_norm", act="relu", attention="bottleneck"),
    "mid": dict(intra_size=64, num_ffn=2, mha_ffn_ratio=0.4, norm="no_norm", act="relu", attention="shared_qk"),
    "large": dict(intra_size=128, num_ffn=4, mha_ffn_ratio=0.25, norm="layer_norm", act="gelu", attention="shared_qk"),
}


def _teacher(space_name: str):
    """The space's teacher, loaded once per worker process."""
    from nas.teacher import load_teacher
    from search_spaces import load_space

    if space_name not in _TEACHERS:
        space = load_space(space_name)
        _TEACHERS[space_name] = (space, load_teacher(space))
    return _TEACHERS[space_name]


_TEACHERS: dict = {}


def _run(space_name: str, size: str, strategy: str, seed: int, threads: int) -> dict:
    """One training run in a worker process: scores and timings (wall and CPU)."""
    import time

    import torch

    from nas.distill import DistillSettings, distill_candidate
    from nas.runtime import keep_freed_memory

    keep_freed_memory()  # as mbnas does
    torch.set_num_threads(threads)
    space, teacher = _teacher(space_name)
    cpu0 = time.process_time()
    r = distill_candidate(space.build(**SIZES[size]), teacher,
                          DistillSettings.for_space(space, strategy=strategy, seed=seed))
    return {"size": size, "strategy": strategy, "seed": seed, "scores": dict(r.scores), "data": r.score_data,
            "train_s": r.timings["train"], "seconds": r.seconds, "cpu_s": time.process_time() - cpu0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="demo")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--skip-separation", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: one per core), each with --threads torch threads")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs-file", default=str(RESULTS / "transfer_strategies-runs.jsonl"),
                    help="finished runs, reused by a rerun with the same code and settings")
    args = ap.parse_args()

    from nas.distill import SCORES, STRATEGIES, DistillSettings
    from nas.ops import count
    from nas.table import markdown_table
    from nas.teacher import describe
    from search_spaces import load_space

    space = load_space(args.space)
    _, teacher = _teacher(args.space)
    cands = {k: space.build(**v) for k, v in SIZES.items()}
    small, mid, large = cands["small"], cands["mid"], cands["large"]
    strategies = args.strategies or list(STRATEGIES)
    jobs = [("mid", st, seed) for st in strategies for seed in range(args.seeds)]
    if not args.skip_separation:
        jobs += [(size, "progressive", seed) for size in ("small", "large") for seed in range(args.seeds)]
        if "progressive" not in strategies:
            jobs += [("mid", "progressive", seed) for seed in range(args.seeds)]
        # the most capable student without a teacher: is the teacher well above it?
        jobs += [("large", "none", seed) for seed in range(args.seeds)]
    # runs are independent: one process per core keeps both cores busy (a 2-thread run does not)
    store = RunsFile(args.runs_file, code_fingerprint("nas", "search_spaces"))
    keys = [store.key(args.space, teacher.hash, size, st, seed, f"{args.jobs}x{args.threads}")
            for size, st, seed in jobs]
    todo = [(k, j) for k, j in zip(keys, jobs) if k not in store.done]
    reused_keys = set(keys) - {k for k, _ in todo}
    if reused_keys:
        print(f"reusing {len(reused_keys)} finished runs from {args.runs_file}", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_run, args.space, size, st, seed, args.threads): k for k, (size, st, seed) in todo}
        for f in as_completed(futures):  # stored as each finishes: a kill loses only the runs in flight
            r = store.add(futures[f], f.result())
            print(f"{r['size']} {r['strategy']} seed {r['seed']}: {r['scores']} train {r['train_s']:.0f} s, "
                  f"cpu {r['cpu_s']:.0f} s", flush=True)
    runs = [store.done[k] for k in keys]
    # runs recovered from a log carry no data description; every run scores on the same held-out split
    data = next((r["data"] for r in runs if r.get("data")), "held-out split (not recorded by the reused runs)")

    def of(size: str, st: str) -> list[dict]:
        return [r for r in runs if r["size"] == size and r["strategy"] == st]

    score_keys = SCORES
    rows = []
    budget = DistillSettings.for_space(space)
    for strat in strategies:
        sel = of("mid", strat)
        row = [strat]
        for k in score_keys:
            m, s = mean_std([r["scores"][k] for r in sel])
            row.append(f"{m:.4f} ± {s:.4f}")
        row.append(f"{statistics.median(r['train_s'] for r in sel):.0f}")
        rows.append(row)
    body = (f"Teacher: {describe(teacher)}\n\nCandidate: {mid.label} ({count(mid).params_m:.2f}M params). Budget "
            f"per run: {space.fixed['num_layers']} x {budget.layer_steps} layer-wise steps + {budget.pd_steps} "
            f"distillation steps (or the same number of masked-LM steps), batch {budget.batch_size} x "
            f"{space.fixed['seq_len']} tokens, {args.seeds} seeds each; mean ± standard deviation over seeds. "
            f"{args.jobs} runs at a time, {args.threads} torch thread(s) each; train s = wall time of training.\n"
            f"Scores measured on the {data}.\n\n"
            + markdown_table(["strategy", *score_keys, "train s (median)"], rows)
            + "\n\nmlm_likelihood = exp(-held-out cross-entropy); teacher_fidelity = exp(-KL(teacher || student)).")

    if not args.skip_separation:
        res = {c: [r["scores"] for r in of(size, "progressive")] for size, c in cands.items()}
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
        alone = mean_std([r["scores"]["mlm_accuracy"] for r in of("large", "none")])
        body += (f"\nThe large candidate trained without a teacher on the same budget: mlm_accuracy "
                 f"{alone[0]:.4f} ± {alone[1]:.4f}; the teacher: {teacher.meta['heldout']['mlm_accuracy']:.4f}.\n")
    reused = [r for r in runs if r["key"] in reused_keys]
    if reused:
        made = sorted(r["made_at"] for r in reused)
        notes = "".join(sorted({f" ({r['recovered_from']})" for r in reused if r.get("recovered_from")}))
        body += (f"\n{len(reused)} of the {len(runs)} runs were reused from `{os.path.relpath(args.runs_file)}`: made "
                 f"{made[0]} to {made[-1]} with the same code (fingerprint {store.code}) and settings{notes}; their "
                 "train s are from then.\n")
    write_result("transfer_strategies", "Knowledge-transfer strategies and score separation", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
