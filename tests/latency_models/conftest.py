"""Fixtures of the latency-model tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def cli(capsys):
    """The real ``mbnas`` entry point, in-process (a subprocess per call costs seconds of imports)."""
    from nas.cli import main

    def run(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
