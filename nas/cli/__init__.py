"""``mbnas``: the command-line interface.

Each command group lives in its own module with a ``register(subparsers)`` function; registration
imports only argparse, and each handler imports the heavy stack (torch, optuna, ray, streamlit)
when it runs, so ``mbnas --help`` is instant. The library raises ``UserError``; only this module
turns errors into one line on stderr and an exit code (2 for bad input).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from nas import __version__
from nas.cli.numbers import OneLineParser
from nas.runtime import keep_freed_memory
from search_spaces.errors import Terminated, UserError

# command group -> module under nas.cli
GROUPS = ("space", "arch", "teacher", "distill", "latency", "search", "export", "dashboard")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mbnas",
        description="Search the MobileBERT design space for compact BERT models that are accurate and fast on a phone.",
    )
    parser.add_argument("--version", action="version", version=f"mbnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in GROUPS:
        try:
            module = importlib.import_module(f"nas.cli.{group}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nas.cli.{group}":
                raise
            continue  # a command group not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keep_freed_memory()  # nas.runtime: large training temporaries are reused, not re-faulted
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: ``search --jobs`` repeats it
    restore_sigterm = _stop_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except Terminated as exc:
        _say_stopped(args, str(exc))
        return exc.exit_code
    except UserError as exc:
        print(f"mbnas: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `mbnas ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave (a socket, ...): a bug
            raise
        where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        print(f"mbnas: error: {where}: {exc.strerror or exc}; check the path (and, for an output, that you "
              f"may write there)", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        _say_stopped(args, "interrupted")
        return 130
    finally:
        restore_sigterm()


def _say_stopped(args, what: str) -> None:
    """One line for a stopped command; a signal reaches every ``search --jobs`` worker too (index >= 1),
    and only the search the user started says it."""
    if getattr(args, "worker_index", 0):
        return
    resume = "; completed trials are kept: rerun the same command to resume" if args.command == "search" else ""
    print(f"mbnas: {what}{resume}", file=sys.stderr)


def _stop_on_sigterm():
    """Make SIGTERM raise ``Terminated`` (see there) while a command runs; returns what undoes it
    (a no-op off the main thread, where Python cannot set a handler)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
