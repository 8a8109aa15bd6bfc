"""``mbnas distill``: train one candidate from the space's teacher and print its scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas.cli.data_options import add_corpus, add_task_csv, data_settings
from nas.cli.numbers import positive_int, seed
from nas.device import CANDIDATE_DEVICE_HELP, PRECISION_HELP, PRECISIONS, check_device, precision_note
from nas.distill.settings import LAYERWISE_RELEASES, SCORES, STRATEGIES, user_data_of
from search_spaces import load_space
from search_spaces.arch import resolve_arch
from search_spaces.errors import UserError
from search_spaces.files import check_output_folder, refuse_nonempty


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="train one candidate from the fixed teacher and score it")
    p.add_argument("--space", default="demo", help="built-in space name or YAML file (default demo)")
    p.add_argument("--arch", required=True, metavar="ARCH",
                   help="candidate JSON, reference name or MobileBERT config.json (must fit the space's teacher)")
    p.add_argument("--strategy", default="progressive", choices=STRATEGIES)
    p.add_argument("--objective", default="mlm", choices=("mlm", "downstream"))
    p.add_argument("--score", choices=SCORES, help="task-agnostic score used as the objective")
    p.add_argument("--teacher", type=Path, help="teacher folder (default: the space's cached or shipped teacher)")
    p.add_argument("--layer-steps", type=int, help="steps per layer of the layer-wise stage")
    p.add_argument("--pd-steps", type=int, help="pre-training distillation steps")
    p.add_argument("--lr", type=float, help="peak learning rate of every stage (warm-up, then linear decay)")
    p.add_argument("--layerwise-release", choices=LAYERWISE_RELEASES,
                   help="progressive: follow the TF1 (default) or TF2 release's layer-wise schedule (README 'Strategies')")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", default="cpu", help=CANDIDATE_DEVICE_HELP)
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    add_corpus(p, "the transfer batches and the held-out scores")
    add_task_csv(p)
    p.add_argument("--out", type=Path, help="save the student (model.safetensors + config.json) here: a new or "
                                            "empty folder")
    p.add_argument("--force", action="store_true", help="save into an --out that holds files (an earlier student's "
                                                        "are replaced)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_distill)


def cmd_distill(args) -> int:
    from nas.data.corpus import corpus_for
    from nas.distill import Diverged, DistillSettings, distill_candidate
    from nas.teacher import load_teacher

    check_device(args.device)
    note = precision_note(args.device, args.precision)
    if note:
        print(note, file=sys.stderr)
    if args.force and not args.out:
        raise UserError("--force replaces an earlier student's files in --out; give --out DIR, or leave --force out")
    if args.out:  # before the training, not after it
        refuse_nonempty(check_output_folder(args.out, "--out"), "--out", args.force,
                        "if it holds files of an earlier student, give a new folder, or pass --force to replace "
                        "its model files")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    space = load_space(args.space)
    c = resolve_arch(args.arch, seq_len=space.fixed["seq_len"])
    if not space.contains_teacher_shape(c):
        fixed = ", ".join(f"{k}={v}" for k, v in space.fixed.items())
        raise UserError(f"{args.arch}: architecture does not fit space '{space.name}' (its teacher fixes {fixed})")
    outside = space.outside(c)
    if outside:  # distill trains any shape the teacher fits; a search would never propose this one
        print(f"note: {c.label} is outside space '{space.name}' ({'; '.join(outside)}); it is trained all the "
              f"same, but a search of this space would not propose it", file=sys.stderr)
    teacher = load_teacher(space, device=args.device, path=args.teacher)
    over = {k: v for k, v in {"layer_steps": args.layer_steps, "pd_steps": args.pd_steps, "lr": args.lr,
                              "score_name": args.score, "layerwise_release": args.layerwise_release}.items()
            if v is not None}
    settings = DistillSettings.for_space(space, strategy=args.strategy, objective=args.objective,
                                         device=args.device, seed=args.seed, precision=args.precision, **over,
                                         **data_settings(args))
    corpus = corpus_for(settings.corpus, vocab=teacher.vocab)  # loaded once: checked here, trained on below
    _, note = user_data_of(settings, teacher, corpus)  # checks the files before any training
    if note:
        print(note, file=sys.stderr)
    losses = []
    try:
        r = distill_candidate(c, teacher, settings, on_layer=lambda l, v: losses.append((l, v)), corpus=corpus)
    except Diverged as exc:
        raise UserError(f"candidate {c.label} diverged: {exc}; lower --lr") from None
    if args.out:
        r.save(args.out)
    out = {"candidate": c.label, "strategy": r.strategy, "score_name": r.score_name, "score": r.score,
           "score_data": r.score_data, **r.scores, "data": {k: r.data_of(k) for k in r.scores},
           "layer_losses": r.layer_losses, "precision": r.precision, "seconds": round(r.seconds, 2),
           "timings": {k: round(v, 2) for k, v in r.timings.items()}, "teacher": teacher.hash,
           "saved": str(args.out) if args.out else None}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{c.label} ({args.strategy}, teacher {teacher.hash}, trained in {r.precision}) in {r.seconds:.1f} s")
    by_data: dict[str, list[str]] = {}  # the masked-LM scores share the held-out text; a task score has its own
    for k in r.scores:
        by_data.setdefault(r.data_of(k), []).append(k)
    for data, names in by_data.items():
        for k in names:
            print(f"  {k:<20} {r.scores[k]:.4g}")
        print(f"  measured on {data}")
    if r.layer_losses:
        print("  transfer loss per layer (transfer batches, end of its phase): "
              + ", ".join(f"{v:.3f}" for v in r.layer_losses))
    if args.out:
        print(f"  saved to {args.out}")
    return 0
