"""``mbnas space show|validate|sample``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.cli.numbers import seed
from nas.distill import DistillSettings
from nas.table import markdown_table
from search_spaces import load_space
from search_spaces.errors import UserError
from search_spaces.files import check_output_folder
from search_spaces.ops import count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("space", help="inspect, validate and sample search spaces")
    ssub = p.add_subparsers(dest="space_command", metavar="ACTION")
    ssub.required = True

    show = ssub.add_parser("show", help="print a space: fixed shape, teacher, dimensions, constraints")
    show.add_argument("space", metavar="NAME|FILE")
    fmt = show.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the parsed space as JSON")
    fmt.add_argument("--yaml", action="store_true",
                     help="print the space as a YAML space file: a start for your own (--space FILE)")
    show.set_defaults(func=cmd_show)

    val = ssub.add_parser("validate", help="check a space file; exit 2 with one line naming the problem")
    val.add_argument("space", metavar="FILE")
    val.set_defaults(func=cmd_validate)

    samp = ssub.add_parser("sample", help="sample random candidates (params, FLOPs, realised MHA/FFN ratio)")
    samp.add_argument("space", metavar="NAME|FILE")
    samp.add_argument("-n", type=int, default=5, help="number of candidates (default 5)")
    samp.add_argument("--seed", type=seed, default=0)
    samp.add_argument("--out", type=Path, help="write each candidate as DIR/<label>.json (usable as ARCH)")
    samp.set_defaults(func=cmd_sample)


def cmd_show(args) -> int:
    from nas.teacher import recipe_for

    space = load_space(args.space)
    if args.json:
        print(json.dumps(space.to_dict(), indent=2))
        return 0
    if args.yaml:
        print(space_yaml(space.to_dict()), end="")
        return 0
    t = space.teacher
    k = count(t)
    print(f"space {space.name}  ({space.source})")
    if space.description:
        print(f"  {space.description.strip()}")
    print("fixed by the teacher: " + ", ".join(f"{k_}={v}" for k_, v in space.fixed.items()))
    print(f"vocabulary: {space.vocab}")
    print(f"teacher: {t.label}  {k.params_m:.2f}M params, {k.gflops:.2f} GFLOPs at seq {t.seq_len}")
    print("searched:")
    for d in space.dimensions:
        desc = ", ".join(map(str, d.choices)) if d.choices is not None else f"{d.low} .. {d.high} step {d.step}"
        print(f"  {d.name:<14} {desc}")
    print(f"  FFN inner width derived from mha_ffn_ratio, rounded to a multiple of {space.ffn_multiple}")
    print(f"constraints: {space.constraints}")
    print(f"distinct combinations: {space.size:,}")
    d, r = DistillSettings.for_space(space), recipe_for(space)
    given = lambda part: "from the file" if part else "defaults: the file has no budget"  # noqa: E731
    print(f"budget per candidate ({given(space.distill_budget)}): {d.layer_steps} steps per layer, {d.pd_steps} "
          f"distillation steps, batch {d.batch_size}, peak lr {d.lr:g} (warm-up {d.warmup:.0%} of each stage, then "
          f"linear decay), {'a fresh transfer batch every step' if not d.transfer_batches else f'{d.transfer_batches} fixed transfer batches'}, "
          f"{d.eval_batches} held-out batches; downstream: {d.downstream_steps} fine-tune steps, "
          f"{d.downstream_eval} dev sentences")
    print(f"teacher pre-training ({given(space.teacher_budget)}): {r.steps} steps x batch {r.batch_size}, lr "
          f"{r.lr:g}, warm-up {r.warmup}, precision {r.precision}, {r.eval_batches} held-out batches; "
          f"{r.masking.shown}")
    return 0


def space_yaml(d: dict) -> str:
    """A space as the built-in files write it: block mappings, one flow-style line per searched
    dimension (``intra_size: {choices: [16, 32]}``); ``load_space`` reads it back to the same space."""
    import yaml

    def dump(x, flow: bool) -> str:
        return yaml.safe_dump(x, sort_keys=False, default_flow_style=flow, width=100)

    parts = []
    for key, value in d.items():
        if key == "search":
            parts.append("search:\n" + "".join(f"  {dim}: {dump(spec, True)}" for dim, spec in value.items()))
        elif value not in ({}, None, ""):
            parts.append(dump({key: value}, False))
    return "".join(parts)


def cmd_validate(args) -> int:
    space = load_space(args.space)
    print(f"ok: {args.space} (space '{space.name}', {len(space.dimensions)} dimensions, "
          f"{space.size:,} combinations)")
    return 0


def cmd_sample(args) -> int:
    if args.n < 1:
        raise UserError(f"-n must be >= 1, got {args.n}")
    space = load_space(args.space)
    cands = space.sample(args.n, seed=args.seed)
    rows = []
    if args.out:
        check_output_folder(args.out, "--out").mkdir(parents=True, exist_ok=True)
    for c in cands:
        k = count(c)
        path = c.save(args.out / f"{c.label}.json") if args.out else None
        rows.append([c.label, c.intra_size, c.num_ffn, c.intermediate_size, c.norm, c.act, c.attention,
                     round(k.params_m, 3), round(k.gflops, 3), round(c.mha_ffn_ratio, 3), round(k.mha_ffn_ratio, 3),
                     str(path) if path else ""])
    print(markdown_table(["label", "intra", "ffns", "ffn_width", "norm", "act", "attention", "params_m", "gflops",
                          "ratio_target", "ratio_realised", "file"], rows))
    return 0
