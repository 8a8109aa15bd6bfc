"""How much would fusing a student block's element-wise work into its matrix products give on a CPU?

A probe, not a feature: one FFN sub-block of the demo's mid candidate (NoNorm + ReLU, 64 -> 208 ->
64, plus residual), forward and backward at the demo batch (32 x 64 tokens), timed

- as transformers runs it (eager PyTorch ops, autograd), and
- in C++ (benchmarks/kernels/ffn_tiles.cpp, built on first use with torch's cpp_extension: needs a
  C++ compiler and ninja): the same matrix products (ATen/BLAS), but each element-wise step a loop
  over a tile of tokens right after the product that made it, and no autograd tape.

Both compute the same values (checked: max differences printed). The rounds alternate, so drift of
the host hits both alike. Ceiling: as in train_throughput.py (best of 9 fp32 2048^3 matmuls).

    python benchmarks/fused_ffn.py [--rounds 5] [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import median_spread, write_result  # noqa: E402
from benchmarks.train_throughput import matmul_ceiling, timed  # noqa: E402

N, D, F = 32 * 64, 64, 208  # tokens, bottleneck width, FFN width of the mid candidate
TILES = (64, 128, 256, N)


def build():
    from torch.utils.cpp_extension import load

    src = Path(__file__).with_name("kernels") / "ffn_tiles.cpp"
    return load("mbnas_ffn_tiles", [str(src)], extra_cflags=["-O3", "-march=native"], verbose=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    from nas.runtime import keep_freed_memory

    keep_freed_memory()
    import torch
    import torch.nn.functional as Fn

    from nas.table import markdown_table

    torch.set_num_threads(1)
    ext = build()
    torch.manual_seed(0)
    x0, dz = torch.randn(N, D), torch.randn(N, D)
    w1, b1 = torch.randn(F, D) * 0.1, torch.randn(F) * 0.1
    w2, b2 = torch.randn(D, F) * 0.1, torch.randn(D) * 0.1
    g, be = torch.rand(D) + 0.5, torch.randn(D) * 0.1

    def eager():
        ps = [t.clone().requires_grad_() for t in (x0, w1, b1, w2, b2, g, be)]
        x, W1, B1, W2, B2, G, BE = ps
        z = (Fn.linear(torch.relu(Fn.linear(x, W1, B1)), W2, B2) + x) * G + BE  # as MobileBERT: NoNorm(y + x)
        z.backward(dz)
        return [z.detach()] + [p.grad for p in ps]

    def fused(tile):
        def run():
            z, h, s = ext.fwd(x0, w1, b1, w2, b2, g, be, tile)
            return [z] + list(ext.bwd(dz, x0, h, s, w1, w2, g, tile))
        return run

    ref = eager()
    cases = {"eager PyTorch + autograd": eager}
    cases.update({(f"C++, tiles of {t} tokens" if t < N else "C++, untiled (one pass per step)"): fused(t)
                  for t in TILES})
    diff = {k: max((a - b).abs().max().item() for a, b in zip(ref, f())) for k, f in cases.items()}
    times: dict[str, list[float]] = {k: [] for k in cases}
    ceiling = matmul_ceiling(1)
    for r in range(args.rounds):
        for k in (list(cases) if r % 2 == 0 else list(reversed(cases))):
            times[k] += timed(cases[k], args.repeats)
    ceiling = max(ceiling, matmul_ceiling(1))
    flops = 3 * 2 * N * D * F * 2  # two linears; forward, input and weight gradients
    base = median_spread(times["eager PyTorch + autograd"])[0]
    rows = []
    for k, ts in times.items():
        med, lo, hi = median_spread(ts)
        rows.append([k, f"{med * 1e3:.2f} ({lo * 1e3:.2f}-{hi * 1e3:.2f})", f"{base / med:.2f}x",
                     f"{flops / med / 1e9:.1f}", f"{flops / med / 1e9 / ceiling:.0%}", f"{diff[k]:.1e}"])
        print(rows[-1], flush=True)
    body = (f"One thread; {N} tokens; the sub-block's matmuls are {flops / 1e9:.3f} GFLOP forward + backward. "
            f"Median of {args.rounds} alternating rounds x {args.repeats} repeats (min-max); ceiling "
            f"{ceiling:.0f} GFLOP/s.\n\n" + markdown_table(
                ["version", "ms", "vs eager", "GFLOP/s", "of ceiling", "max abs. difference from eager"], rows))
    write_result("fused_ffn", "Fusing a student FFN sub-block's element-wise work (probe)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
