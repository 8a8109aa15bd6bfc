"""``mbnas export``: a searched architecture (or a reference) as a stock transformers folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli.numbers import positive_float
from nas.export import export_reference, export_trial
from nas.search.defaults import DEFAULT_STORAGE
from nas.search.storage import load_study, open_storage
from search_spaces.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a trial's student (or a reference's config) for stock transformers",
        description="Writes config.json (stock MobileBertConfig), model.safetensors, vocab.txt and architecture.json "
                    "(candidate, scores with their data, predicted latency with profile and error, teacher hash, "
                    "strategy), then checks that MobileBertForMaskedLM.from_pretrained(OUT) reproduces the student.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", metavar="NAME", help="the search study to export from")
    src.add_argument("--reference", metavar="NAME", help="a reference architecture (config only), e.g. mobilebert-tiny")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"Optuna storage (default {DEFAULT_STORAGE})")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, metavar="N", help="this trial number")
    which.add_argument("--pick", choices=("knee", "fastest", "most-accurate"),
                       help="a point of the Pareto front (default knee: the best trade-off)")
    which.add_argument("--under-ms", type=positive_float, metavar="X",
                       help="the most accurate trial predicted under X ms")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--tflite", action="store_true", help="also write model.tflite (needs the litert extra)")
    p.add_argument("--force", action="store_true",
                   help="export into a folder that is not empty: replaces the files an export writes (an earlier "
                        "export's model.tflite included) and leaves any other file there")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    if args.reference:
        if args.trial is not None or args.pick or args.under_ms is not None or args.tflite:
            raise UserError("--reference exports a config only: --trial/--pick/--under-ms/--tflite need --study")
        res = export_reference(args.reference, args.out, force=args.force)
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = load_study(open_storage(args.storage, must_exist=True), args.study)
        res = export_trial(study, args.out, trial=args.trial, pick=args.pick, under_ms=args.under_ms,
                           tflite=args.tflite, storage_url=args.storage, force=args.force)
    print(f"exported {res.description}")
    print(f"  to {res.out}: {', '.join(res.files)}")
    if res.max_abs_diff is not None:
        print(f"  MobileBertForMaskedLM.from_pretrained({str(res.out)!r}) reproduces the student "
              f"(max |logit difference| {res.max_abs_diff:.2g})")
    return 0
