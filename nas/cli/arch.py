"""``mbnas arch info ARCH``: parameters, FLOPs and layer shapes of any architecture."""

from __future__ import annotations

import argparse
import json

from nas.cli.numbers import positive_int
from nas.table import markdown_table
from search_spaces.arch import resolve_arch
from search_spaces.ops import count, list_ops


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arch", help="inspect an architecture (reference name, candidate JSON or config.json)")
    asub = p.add_subparsers(dest="arch_command", metavar="ACTION")
    asub.required = True
    info = asub.add_parser("info", help="params, FLOPs and layer shapes")
    info.add_argument("arch", metavar="ARCH", help="reference name, candidate JSON file, or MobileBERT config.json")
    info.add_argument("--seq-len", type=positive_int, default=None, help="sequence length (default: the candidate's)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    c = resolve_arch(args.arch, seq_len=args.seq_len or 128)
    seq = args.seq_len or c.seq_len
    k = count(c, seq)
    ops = list_ops(c, seq)
    if args.json:
        print(json.dumps({
            "name": c.name, "label": c.label, "candidate": c.to_dict(),
            "params": k.params, "params_m": round(k.params_m, 4), "macs": k.macs, "flops": k.flops,
            "seq_len": seq, "mha_params_per_block": k.mha_params, "ffn_params_per_block": k.ffn_params,
            "mha_ffn_ratio": k.mha_ffn_ratio,
            "count_scope": "MobileBertModel without pooler or task head; FLOPs = 2 x MACs at batch 1",
            "ops": [{"kind": o.kind, "name": o.name, "batch": o.batch, "m": o.m, "k": o.k, "n": o.n,
                     "elements": o.elements, "params": o.params, "repeat": o.repeat, "detail": o.detail}
                    for o in ops],
        }, indent=2))
        return 0
    print(f"{c.name or c.label}: {c.label}")
    print(f"  params {k.params:,} ({k.params_m:.2f}M; MobileBertModel without pooler or task head)")
    print(f"  FLOPs {k.flops / 1e9:.3f} G = 2 x {k.macs / 1e9:.3f} GMACs at batch 1, seq {seq}")
    print(f"  MHA/FFN parameter ratio {k.mha_ffn_ratio:.3f} (MHA {k.mha_params:,} / FFN {k.ffn_params:,} per block)")
    print(f"  {c.num_layers} blocks: inter-block {c.hidden_size}, intra-block {c.true_hidden_size}, "
          f"{c.num_ffn} FFN(s) of width {c.intermediate_size}, {c.num_heads} heads, {c.norm}, {c.act}, "
          f"attention '{c.attention}'")
    rows = [[o.name, o.kind, o.detail, f"{o.batch}x[{o.m},{o.k}]@[{o.k},{o.n}]" if o.macs else f"{o.elements:,} el",
             f"{o.params:,}", f"{o.macs * o.repeat / 1e6:.2f}", o.repeat] for o in ops]
    print(markdown_table(["op", "class", "detail", "shape", "params", "MMACs (all)", "x"], rows))
    return 0
