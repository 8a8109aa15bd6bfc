"""Argparse types for counts and sizes: a zero, negative or non-numeric value is refused where it
is parsed, in one line, instead of training a zero-step teacher or a torch error minutes later."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def _number(kind: type, low: float, strict: bool, what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or v < low or (strict and v == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, 0, True, "a positive integer")
nonnegative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a positive number")
nonnegative_float = _number(float, 0.0, False, "a number >= 0")
factor = _number(float, 1.0, False, "a number >= 1")

SEED_MAX = 2**32 - 1  # what every RNG here takes (numpy refuses negatives; torch overflows past 2**63)


def seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {SEED_MAX}, got {text!r}")
    return v


class OneLineParser(argparse.ArgumentParser):
    """Argparse errors as one line, as every other bad input is (not the whole usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
