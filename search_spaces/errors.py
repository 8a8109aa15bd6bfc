"""Errors the CLI turns into one clear line and a non-zero exit code.

The library never calls ``sys.exit``: it raises :class:`UserError` (bad input: exit 2) and lets
everything else propagate as a bug (exit 1 with a traceback).
"""

from __future__ import annotations

import importlib


class UserError(Exception):
    """Bad input from the user. ``str(err)`` is the single line shown: what, where, what to do."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised where Ctrl-C would be, so a command
    stops the same way: running trials are marked interrupted and ``--jobs`` workers are stopped,
    instead of the process vanishing mid-trial and leaving its workers running."""

    exit_code = 128 + 15

    def __init__(self) -> None:
        super().__init__("stopped by SIGTERM")


class MissingExtraError(UserError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"optional dependency '{module}' is not installed: "
            f"pip install 'mobilebert-nas[{extra}]' (or run 'make install')"
        )


def check_choice(what: str, value, choices) -> None:
    """Refuse a value outside ``choices`` in one line: ``what`` names where it came from (a flag,
    a field), the line names the value and every allowed one."""
    if value not in choices:
        raise UserError(f"{what} is {value!r}; choose one of {', '.join(map(str, choices))}")


def require(module: str, extra: str):
    """Import an optional backend lazily, raising an install hint when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only where the extra is absent
        raise MissingExtraError(module, extra) from exc
