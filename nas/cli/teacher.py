"""``mbnas teacher train|import|info``: the fixed IB-BERT teacher of a space."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from nas.cli.data_options import add_corpus
from nas.cli.numbers import nonnegative_int, positive_float, positive_int, seed
from nas.device import PRECISIONS, TRAIN_DEVICE_HELP, check_device
from search_spaces import load_space
from search_spaces.errors import UserError
from search_spaces.files import check_output_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="pre-train, inspect the fixed IB-BERT teacher of a space")
    tsub = p.add_subparsers(dest="teacher_command", metavar="ACTION")
    tsub.required = True
    tr = tsub.add_parser("train", help="pre-train the space's teacher with masked-LM; reused if it exists")
    tr.add_argument("--space", default="demo", help="built-in space name or YAML file (default demo)")
    tr.add_argument("--steps", type=positive_int, help="optimiser steps (default: the space's recipe)")
    tr.add_argument("--batch-size", type=positive_int)
    tr.add_argument("--lr", type=positive_float, help="AdamW peak learning rate")
    tr.add_argument("--warmup", type=nonnegative_int)
    tr.add_argument("--seed", type=seed)
    tr.add_argument("--precision", choices=PRECISIONS,
                    help="arithmetic of the training steps: auto (bf16 on a GPU that has it, else fp32), fp32 or "
                         "bf16 (default: the space's recipe; the held-out score is always fp32)")
    tr.add_argument("--device", default="cpu", help=TRAIN_DEVICE_HELP)
    tr.add_argument("--threads", type=positive_int, help="torch CPU threads (default: all cores)")
    add_corpus(tr, "pre-training text and the held-out score")
    tr.add_argument("--out", type=Path, help="folder to store teachers in (default: $MBNAS_CACHE/teachers)")
    tr.add_argument("--force", action="store_true", help="train even if a teacher for this space exists")
    tr.set_defaults(func=cmd_train)
    im = tsub.add_parser("import", help="pin a teacher trained elsewhere (a transformers MobileBertForMaskedLM "
                                        "folder with model.safetensors) for a space",
                         description="Checks that the checkpoint's shape fits the space's teacher and that its "
                                     "weights load, scores it on the held-out text and stores it, named by its "
                                     "hash, where 'teacher train' stores teachers; the space then uses it (the "
                                     "newest teacher wins). Safetensors only: pickled weights are never loaded.")
    im.add_argument("checkpoint", type=Path, metavar="DIR", help="folder with config.json and model.safetensors")
    im.add_argument("--space", default="demo", help="built-in space name or YAML file (default demo)")
    add_corpus(im, "the held-out text it is scored on")
    im.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where it is scored")
    im.add_argument("--out", type=Path, help="folder to store teachers in (default: $MBNAS_CACHE/teachers)")
    im.set_defaults(func=cmd_import)
    info = tsub.add_parser("info", help="show the teacher a space would use (or a teacher folder)")
    info.add_argument("--space", default="demo")
    info.add_argument("--teacher", type=Path, help="a teacher folder")
    info.set_defaults(func=cmd_info)


def cmd_train(args) -> int:
    from nas.teacher import describe, find_teacher, load_teacher, recipe_for, train_teacher

    check_device(args.device)
    if args.out is not None:  # before the training, not after it
        check_output_folder(args.out, "--out")
    space = load_space(args.space)
    changes = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "warmup", "seed", "precision")
               if getattr(args, k) is not None}
    if not args.force and args.out is None and find_teacher(space) is not None:
        t = load_teacher(space)
        differs = _not_as_asked(t, changes, args.corpus)
        if differs is None:
            print(f"reusing {describe(t)}\n(use --force to train another)")
            return 0
        print(f"not reusing {describe(t)}: {differs}; training a new one")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    recipe = dataclasses.replace(recipe_for(space), **changes)
    if recipe.warmup >= recipe.steps:
        if "warmup" in changes:
            raise UserError(f"--warmup {recipe.warmup} must be below the {recipe.steps} training steps")
        short = max(1, recipe.steps // 10)  # the space's warm-up would take the whole (shortened) run
        print(f"note: a warm-up of {recipe.warmup} steps is not below the {recipe.steps} training steps: warming up "
              f"for {short} (--warmup sets it)", file=sys.stderr)
        recipe = dataclasses.replace(recipe, warmup=short)
    t = train_teacher(space, recipe, device=args.device, out=args.out, corpus_files=args.corpus)
    print(f"saved {describe(t)}")
    return 0


def _not_as_asked(t, changes: dict, corpus) -> str | None:
    """Why the existing teacher ``t`` is not the one asked for (recipe options or --corpus given and
    different), or None: a bare ``teacher train`` reuses whatever teacher the space has."""
    recipe = t.meta.get("recipe", {})
    for k, v in changes.items():
        if recipe.get(k) != v:
            return f"it was trained with {k} {recipe.get(k)} (asked {v})"
    if corpus:
        from nas.data.corpus import corpus_for

        if corpus_for(corpus, vocab=t.vocab).data_hash != t.meta.get("data_hash"):
            return f"it was pre-trained on {t.meta.get('data', 'other text')}, not on the --corpus files"
    return None


def cmd_import(args) -> int:
    from nas.teacher import describe, import_teacher

    check_device(args.device)
    if args.out is not None:  # before the scoring, not after it
        check_output_folder(args.out, "--out")
    t = import_teacher(load_space(args.space), args.checkpoint, corpus_files=args.corpus, device=args.device,
                       out=args.out)
    print(f"saved {describe(t)}")
    return 0


def cmd_info(args) -> int:
    from nas.teacher import describe, load_teacher

    space = load_space(args.space)
    print(describe(load_teacher(space, path=args.teacher)))
    return 0
