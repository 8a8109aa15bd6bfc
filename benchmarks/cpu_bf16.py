"""bf16 autocast for candidate training on a CPU (``--precision bf16``): how much faster, and do
the scores stay those of fp32 training?

``--precision auto`` (the default) trains candidates in fp32 on a CPU and in bf16 autocast on a CUDA
GPU of compute capability 8.0+ (``nas.device``). CPUs with AVX512-BF16 or AMX (AMD Zen 4, Intel
Sapphire Rapids) multiply bf16 matrices several times as fast as fp32 ones. For the demo space's
candidates of ``benchmarks/transfer_strategies.py`` this script measures:

1. speed: the three student steps of ``benchmarks/train_throughput.py`` (layer transfer,
   pre-training distillation, masked LM), fp32 against ``nas.device.autocast_for(cpu, bf16)``;
2. scores: whole progressive distillations at the space's budget, ``precision`` fp32 against
   bf16 (the student is scored in fp32 either way), over seeds.

    python benchmarks/cpu_bf16.py [--space demo] [--sizes small mid] [--seeds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import mean_std, write_result  # noqa: E402
from benchmarks.train_throughput import student_cases, timed  # noqa: E402
from benchmarks.transfer_strategies import SIZES  # noqa: E402
from nas.device import autocast_for  # noqa: E402

SHOWN = ("block_fidelity", "teacher_kl", "top1_agreement", "mlm_accuracy", "heldout_ce")


def speed_rows(space, teacher, sizes: list[str], repeats: int) -> list[list]:
    """Median ms of each student step, fp32 and bf16 autocast, on transfer batch 0."""
    from nas.distill import DistillSettings
    from nas.distill.teacher_cache import teacher_cache

    s = DistillSettings.for_space(space, transfer_batches=2)
    cache = teacher_cache(teacher, s)
    b = cache.transfer[0]
    n_masked = int((b.labels != -100).sum())
    rows = []
    for size in sizes:
        c = space.build(**SIZES[size])
        ms = {}
        for bf16 in (False, True):
            for role, step, _, _ in student_cases(c, teacher, cache, s, n_masked):
                def run(step=step, bf16=bf16):
                    with autocast_for("cpu", "bf16" if bf16 else "fp32"):
                        step()
                ms[role, bf16] = statistics.median(timed(run, repeats)) * 1e3
        for role in dict.fromkeys(r for r, _ in ms):
            fp, bf = ms[role, False], ms[role, True]
            rows.append([size, c.label, role.removeprefix("student "), f"{fp:.0f}", f"{bf:.0f}", f"{fp / bf:.2f}x"])
            print(rows[-1], flush=True)
    return rows


def score_rows(space, teacher, sizes: list[str], seeds: int) -> list[list]:
    """Scores of whole progressive distillations, fp32 against bf16-autocast training steps."""
    from nas.distill import DistillSettings, distill_candidate

    runs: dict[tuple[str, bool], list[dict]] = {}
    for size in sizes:
        for seed in range(seeds):
            for bf16 in (False, True):
                r = distill_candidate(space.build(**SIZES[size]), teacher,
                                      DistillSettings.for_space(space, seed=seed, precision="bf16" if bf16 else "fp32"))
                runs.setdefault((size, bf16), []).append({**r.scores, "train_s": r.timings["train"]})
                print(size, seed, "bf16" if bf16 else "fp32", {k: round(r.scores[k], 4) for k in SHOWN},
                      f"train {r.timings['train']:.0f} s", flush=True)
    rows = []
    for (size, bf16), rs in runs.items():
        cells = []
        for k in SHOWN + ("train_s",):
            m, sd = mean_std([r[k] for r in rs])
            cells.append(f"{m:.0f} ± {sd:.0f}" if k == "train_s" else f"{m:.4f} ± {sd:.4f}")
        rows.append([size, "bf16 autocast" if bf16 else "fp32", len(rs), *cells])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="demo")
    ap.add_argument("--sizes", nargs="+", default=["small", "mid"], choices=list(SIZES))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a --jobs 2 search trains on one each)")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    import torch

    from nas.device import cpu_bf16_native
    from nas.runtime import keep_freed_memory
    from nas.table import markdown_table
    from nas.teacher import load_teacher
    from search_spaces import load_space

    keep_freed_memory()  # as mbnas does
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    teacher = load_teacher(space)
    native = cpu_bf16_native()
    speed = speed_rows(space, teacher, args.sizes, args.repeats)
    scores = score_rows(space, teacher, args.sizes, args.seeds)
    body = (f"{args.threads} torch thread(s). This CPU {'has' if native else 'has no'} bf16 matrix instructions "
            f"(avx512_bf16 / amx_bf16 in /proc/cpuinfo).\n\n## Speed of one student step (median of "
            f"{args.repeats}, ms)\n\n"
            + markdown_table(["size", "model", "step", "fp32", "bf16 autocast", "speed-up"], speed)
            + f"\n\n## Scores after progressive distillation at space '{space.name}''s budget (mean ± sd over "
              f"{args.seeds} seeds; held-out text, scored in fp32)\n\n"
            + markdown_table(["size", "training", "runs", *SHOWN, "train s"], scores))
    write_result("cpu_bf16", "bf16 autocast for candidate training on a CPU", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
