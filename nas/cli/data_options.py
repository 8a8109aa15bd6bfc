"""``--corpus`` and ``--task-csv``: the user's own data, with one meaning in every command."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_corpus(p: argparse.ArgumentParser, used_for: str) -> None:
    p.add_argument("--corpus", nargs="+", type=Path, metavar="PATH",
                   help=f"your own text files (UTF-8; blank lines separate documents) instead of the built-in "
                        f"corpus: {used_for}")


def add_task_csv(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task-csv", type=Path, metavar="CSV",
                   help="your own text,label CSV instead of Rotten Tomatoes: the task of --objective downstream")


def data_settings(args) -> dict:
    """``DistillSettings`` fields for the options given, as absolute paths (search workers and Ray
    trials may run in another directory)."""
    out: dict = {}
    if args.corpus:
        out["corpus"] = tuple(str(Path(p).resolve()) for p in args.corpus)
    if args.task_csv:
        out["task_csv"] = str(Path(args.task_csv).resolve())
    return out
