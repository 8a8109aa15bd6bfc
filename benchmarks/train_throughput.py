"""Tokens/s and achieved GFLOP/s of the teacher's forward pass and of student training, as a
fraction of this machine's measured fp32 matmul ceiling.

Achieved GFLOP/s counts the model's matmul FLOPs (``nas.ops``: 2 x MACs; training = 3 x forward:
forward, input gradients, weight gradients) plus the MLM head at masked positions. Timings are
medians of repeated steps after warm-up.

    python benchmarks/train_throughput.py [--space demo] [--threads 2] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import median_spread, write_result  # noqa: E402


def matmul_ceiling(threads: int, n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="demo")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    import numpy as np
    import torch

    from nas.data.corpus import load_corpus, make_mlm_batches
    from nas.distill import DistillSettings
    from nas.mlm import encode, mlm_loss
    from nas.models import build_masked_lm
    from nas.ops import count
    from nas.table import markdown_table
    from search_spaces import load_space

    space = load_space(args.space)
    settings = DistillSettings.for_space(space)
    corpus = load_corpus()
    rows = []
    head_macs_per_masked = space.fixed["hidden_size"] ** 2 + space.fixed["hidden_size"] * space.fixed["vocab_size"]
    student = space.build(intra_size=64, num_ffn=2, mha_ffn_ratio=0.4, norm="no_norm", act="relu", attention="shared_qk")
    for threads in args.threads:
        torch.set_num_threads(threads)
        ceiling = matmul_ceiling(threads)
        for role, cand, bs in (("teacher forward", space.teacher, 64), ("student train step", student, settings.batch_size)):
            model = build_masked_lm(cand)
            batch = next(make_mlm_batches(corpus.train, cand.seq_len, bs, np.random.default_rng(0)))
            n_masked = int((batch.labels != -100).sum())
            tokens = batch.input_ids.numel()
            enc_flops = count(cand).flops * bs
            if role == "teacher forward":
                model.eval()

                def step():
                    with torch.no_grad():
                        encode(model, batch, output_hidden_states=True, output_attentions=True)
                flops = enc_flops
            else:
                model.train()
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

                def step():
                    loss = mlm_loss(model, batch)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                flops = 3 * (enc_flops + 2 * n_masked * head_macs_per_masked)
            times = timed(step, args.repeats)
            med, lo, hi = median_spread(times)
            gflops = flops / med / 1e9
            rows.append([role, cand.label, threads, f"{bs}x{cand.seq_len}", f"{tokens / med:,.0f}",
                         f"{med * 1e3:.0f} ({lo * 1e3:.0f}-{hi * 1e3:.0f})", f"{gflops:.1f}", f"{ceiling:.0f}",
                         f"{gflops / ceiling:.0%}"])
            print(rows[-1], flush=True)
    body = ("Median of {r} steps after one warm-up (min-max in brackets). Ceiling: fp32 2048^3 matmul on the same "
            "threads, measured in the same run.\n\n").format(r=args.repeats) + markdown_table(
        ["what", "model", "threads", "batch", "tokens/s", "ms/step", "GFLOP/s", "ceiling GFLOP/s", "of ceiling"], rows)
    write_result("train_throughput", "Training throughput", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
