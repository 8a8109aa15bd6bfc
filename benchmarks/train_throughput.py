"""Tokens/s and achieved GFLOP/s of the teacher's forward pass and of the student's training
steps, as a fraction of this machine's measured fp32 matmul ceiling.

The student rows time the steps ``nas.distill.train`` runs for a candidate, on the shipped demo
teacher and its cached outputs: a layer-wise transfer step (the last layer's, so every block runs),
a pre-training-distillation step (hard labels + teacher logits at masked positions: most of a
progressive candidate's FLOPs) and a plain masked-LM step (the no-teacher baseline and Theseus's
fine-tune). Achieved GFLOP/s counts matmul FLOPs only (``search_spaces.ops``: 2 x MACs; training = 3 x
forward: forward, input gradients, weight gradients), plus the MLM heads at masked positions (the
teacher's forward-only in distillation). Timings are medians of repeated steps after warm-up; the
process's allocator is set as ``mbnas`` sets it (``nas.runtime.keep_freed_memory``).

A second table times the same student steps at one thread for candidates of clearly different
width (``benchmarks/transfer_strategies.py``'s small / mid / large; mid is the first table's): how
much of the ceiling a step reaches depends on how wide its matrix products are.

    python benchmarks/train_throughput.py [--space demo] [--threads 1 2] [--repeats 10] [--sizes small mid large]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import median_spread, write_result  # noqa: E402
from benchmarks.transfer_strategies import SIZES  # noqa: E402


def matmul_ceiling(threads: int, n: int = 2048, repeats: int = 9) -> float:
    """GFLOP/s of the best of ``repeats`` fp32 n^3 matmuls on the current threads: on a host whose
    speed drifts, a median under-states what the machine can do (once 107 against 148 GFLOP/s a
    minute later), and every "of ceiling" with it; the best run is the ceiling."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b, repeats)) / 1e9


def gemm_shapes(c, batch: int, n_masked: int, vocab: int, train: bool, heads: tuple[int, ...] = ()) -> list[tuple]:
    """The matmuls of one step as (count, batch, m, k, n): the encoder's (``search_spaces.ops``) at ``batch``
    sequences, then an MLM head of width h at the masked positions for each h in ``heads``; a
    training step adds the two backward products of each (input and weight gradients: same FLOPs).
    The last head is the teacher's in distillation: forward only."""
    from search_spaces.ops import list_ops

    out = []
    for op in list_ops(c):
        if op.kind == "matmul" and op.macs:  # a linear on (batch * seq, k)
            fwd = (op.repeat, 1, batch * op.m, op.k, op.n)
        elif op.kind == "attention" and op.macs:  # (batch * heads) x [m, k] @ [k, n]
            fwd = (op.repeat, batch * op.batch, op.m, op.k, op.n)
        else:
            continue
        r, b, m, k, n = fwd
        out += [fwd] + ([(r, b, m, n, k), (r, b, k, m, n)] if train else [])
    for i, h in enumerate(heads):
        trained = train and i == 0  # the student's head; a second one is the teacher's, forward only
        out += [(1, 1, n_masked, h, vocab)] + ([(1, 1, n_masked, vocab, h), (1, 1, h, n_masked, vocab)]
                                               if trained else [])
    return out


def gemms_alone(shapes: list[tuple], repeats: int = 5) -> tuple[float, float]:
    """(seconds, FLOPs) of running the step's matmuls back to back and nothing else: what a step
    would reach if all its other work cost nothing (medians over repeats, fresh operands)."""
    import torch

    total_s = total_f = 0.0
    for r, b, m, k, n in shapes:
        a, w = torch.randn(b, m, k), torch.randn(b, k, n)
        fn = (lambda: torch.mm(a[0], w[0])) if b == 1 else (lambda: torch.bmm(a, w))
        total_s += r * statistics.median(timed(fn, repeats))
        total_f += r * 2 * b * m * k * n
    return total_s, total_f


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def student_cases(cand, teacher, cache, s, n_masked: int) -> list[tuple]:
    """(role, step, FLOPs, matmul shapes) of the three student steps the search runs for ``cand``,
    on transfer batch 0 of ``cache``; a fresh student and optimiser per call."""
    import torch

    from nas.distill import train as T
    from search_spaces.ops import count

    b = cache.transfer[0]
    bs, L = b.input_ids.shape[0], cand.num_layers
    H, V = cand.hidden_size, cand.vocab_size
    head_macs = H * H + H * V  # MLM head per masked position: transform + vocabulary projection
    torch.manual_seed(0)
    student = T.init_student(cand, teacher, True, 0).train()
    stage = T.Stage([{"params": list(student.parameters())}], s.lr, 10**9, 0.0)

    def layer_step():
        outs = T._forward_upto(student, b.input_ids, L - 1)
        stage.step(T._layer_loss(student, cache, 0, L - 1, outs, s), "layer transfer")

    def pd_step():
        stage.step(T._kd_step_loss(student, teacher, cache, 0, s, "cpu"), "pre-training distillation")

    def mlm_step():
        stage.step(T._mlm_step_loss(student, cache, 0, "cpu"), "masked-LM")

    enc = count(cand).flops * bs  # teacher and student share the space's hidden width H (their MLM heads)
    return [("student layer-transfer step", layer_step, 3 * enc, gemm_shapes(cand, bs, n_masked, V, True)),
            ("student distillation step", pd_step, 3 * (enc + 2 * n_masked * head_macs) + 2 * n_masked * head_macs,
             gemm_shapes(cand, bs, n_masked, V, True, heads=(H, H))),
            ("student masked-LM step", mlm_step, 3 * (enc + 2 * n_masked * head_macs),
             gemm_shapes(cand, bs, n_masked, V, True, heads=(H,)))]


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def matmuls_in_step(step, repeats: int) -> tuple[float, float]:
    """(seconds in matrix-product kernels, seconds) per step of a profiled pass after the timed steps
    (torch.profiler, self CPU time of ``MATMUL_OPS``): the same products as ``gemms_alone`` but with
    the step's caches, layouts and transposes. Both from the same pass, so a drift of this host's
    speed between passes does not skew their ratio (the profiler itself adds a few %)."""
    from torch.profiler import ProfilerActivity, profile

    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    wall = (time.perf_counter() - t) / repeats
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in MATMUL_OPS) / 1e6 / repeats, wall


def timed_step(step, flops: float, shapes: list[tuple], repeats: int
               ) -> tuple[list[float], tuple[float, float], tuple[float, float]]:
    """(step times, (seconds, FLOPs) of the step's matmuls alone, ``matmuls_in_step``)."""
    return timed(step, repeats), gemms_alone(shapes), matmuls_in_step(step, max(3, repeats // 2))


def reached(times: list[float], flops: float, alone: tuple[float, float], in_step: tuple[float, float],
            ceiling: float) -> dict:
    """Median step time and the share of ``ceiling`` it reaches, with the step's matmuls alone and
    within the step (their time there, its share of the step, and the share of the ceiling they run at)."""
    med, lo, hi = median_spread(times)
    gflops = flops / med / 1e9
    alone_s, alone_f = alone
    mm_s, profiled_s = in_step
    return {"ms": f"{med * 1e3:.0f} ({lo * 1e3:.0f}-{hi * 1e3:.0f})", "gflops": f"{gflops:.1f}",
            "of": f"{gflops / ceiling:.0%}", "alone_ms": f"{alone_s * 1e3:.0f}",
            "alone_of": f"{alone_f / alone_s / 1e9 / ceiling:.0%}", "in_ms": f"{mm_s * 1e3:.0f}",
            "in_share": f"{mm_s / profiled_s:.0%}", "in_of": f"{alone_f / mm_s / 1e9 / ceiling:.0%}", "med": med}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="demo")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES),
                    help="candidates of the second table (one thread); none to skip it")
    args = ap.parse_args()

    from nas.runtime import keep_freed_memory

    allocator = "heap kept (nas.runtime)" if keep_freed_memory() else "C library default"

    import torch

    from nas.distill import DistillSettings
    from nas.distill.teacher_cache import teacher_cache
    from nas.mlm import encode
    from nas.table import markdown_table
    from nas.teacher import load_teacher
    from search_spaces import load_space
    from search_spaces.ops import count

    space = load_space(args.space)
    s = DistillSettings.for_space(space, transfer_batches=2)
    teacher = load_teacher(space)
    cache = teacher_cache(teacher, s)
    V = space.fixed["vocab_size"]
    cand = space.build(**SIZES["mid"])
    b = cache.transfer[0]
    bs, n_masked = b.input_ids.shape[0], int((b.labels != -100).sum())
    rows, size_rows = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        ceiling = matmul_ceiling(threads)
        tmodel = teacher.model.eval()

        def teacher_forward():
            with torch.no_grad():
                encode(tmodel, b, output_hidden_states=True, output_attentions=True)

        cases = [("teacher forward", teacher.candidate, teacher_forward, count(teacher.candidate).flops * bs,
                  gemm_shapes(teacher.candidate, bs, n_masked, V, train=False))]
        cases += [(role, cand, step, flops, shapes) for role, step, flops, shapes in student_cases(cand, teacher, cache,
                                                                                                s, n_masked)]
        measured = [(role, c, step, flops, shapes, *timed_step(step, flops, shapes, args.repeats))
                    for role, c, step, flops, shapes in cases]
        ceiling = max(ceiling, matmul_ceiling(threads))  # before and after the rows: the best of both
        for role, c, _, flops, _, times, alone, in_step in measured:
            m = reached(times, flops, alone, in_step, ceiling)
            rows.append([role, c.label, threads, f"{bs}x{c.seq_len}", f"{bs * c.seq_len / m['med']:,.0f}", m["ms"],
                         m["gflops"], f"{ceiling:.0f}", m["of"], m["alone_ms"], m["alone_of"], m["in_ms"],
                         m["in_share"], m["in_of"]])
            print(rows[-1], flush=True)
    if args.sizes:
        torch.set_num_threads(1)
        ceiling = matmul_ceiling(1)
        measured = []
        for size in args.sizes:
            c = space.build(**SIZES[size])
            measured += [(size, c, role, flops, *timed_step(step, flops, shapes, args.repeats))
                         for role, step, flops, shapes in student_cases(c, teacher, cache, s, n_masked)]
        ceiling = max(ceiling, matmul_ceiling(1))
        for size, c, role, flops, times, alone, in_step in measured:
            m = reached(times, flops, alone, in_step, ceiling)
            size_rows.append([size, c.label, f"{count(c).params / 1e6:.2f}", role.removeprefix("student "),
                              m["ms"], m["gflops"], f"{ceiling:.0f}", m["of"], m["alone_of"], m["in_share"],
                              m["in_of"]])
            print(size_rows[-1], flush=True)
    body = ("Median of {r} steps after one warm-up (min-max in brackets); {m} masked positions per batch. "
            "Ceiling: the best of 9 fp32 2048^3 matmuls on the same threads, measured before and after the rows "
            "it divides (the higher of the two). Allocator: {a}.\n\n"
            ).format(r=args.repeats, m=n_masked, a=allocator) + markdown_table(
        ["what", "model", "threads", "batch", "tokens/s", "ms/step", "GFLOP/s", "ceiling GFLOP/s", "of ceiling",
         "matmuls alone ms", "matmuls alone, of ceiling", "matmuls in step ms", "share of step",
         "matmuls in step, of ceiling"], rows) + (
        "\n\nmatmuls alone: the same step's matrix products (the encoder's linears and attention products at "
        "this batch, the MLM heads at the masked positions; forward, input- and weight-gradient products of each "
        "trained one) timed back to back with nothing else, so the share of the ceiling those shapes allow at "
        "best; the gap to \"of ceiling\" is everything that is not a matrix product. matmuls in step: the time "
        "the step itself spends in matrix-product kernels (torch.profiler, a pass of its own after the timed "
        "steps), its share of that pass's step time, and the share of the ceiling those kernels run at there. "
        "Their product is what the step reaches; 40% of the ceiling needs (share of step) x (in step, of "
        "ceiling) >= 40%.")
    if size_rows:
        body += ("\n\n## By candidate width (one thread, batch {b}x{t})\n\n".format(b=bs, t=cand.seq_len)
                 + markdown_table(["size", "model", "params M", "step", "ms/step", "GFLOP/s", "ceiling GFLOP/s",
                                   "of ceiling", "matmuls alone, of ceiling", "matmuls: share of step",
                                   "matmuls in step, of ceiling"], size_rows))
    write_result("train_throughput", "Training throughput", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
