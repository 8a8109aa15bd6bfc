"""Fixtures for search tests: the real ``mbnas`` in a subprocess, a study read back, a smoke search's args."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

STUDY = "smoke-progressive-mlm"


def mbnas_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("mbnas")
    return ([str(exe)] if exe.exists() else [sys.executable, "-m", "nas"]) + list(args)


@pytest.fixture
def run_mbnas(tmp_path):
    """Run ``mbnas ARGS`` in ``tmp_path``; returns the CompletedProcess (text)."""

    def run(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(mbnas_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                              env={**os.environ, **(env or {})})

    return run


@pytest.fixture
def smoke_search(smoke_teacher_dir):
    """``smoke_search(storage, *extra, trials=2)`` -> the argv of a smoke-space ``mbnas search``."""

    def args(storage: str, *extra: str, trials: int = 2) -> list[str]:
        # one torch thread: on a shared 2-core machine it trains smoke candidates ~3x faster than two
        return ["search", "--space", "smoke", "--trials", str(trials), "--storage", storage,
                "--teacher", str(smoke_teacher_dir), "--threads", "1", "--quiet", *extra]

    return args


@pytest.fixture
def load_study():
    """``load_study(storage, name=STUDY)`` -> the Optuna study a search wrote."""

    def load(storage: str, name: str = STUDY):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=name, storage=storage)

    return load


@pytest.fixture
def mbnas_argv():
    """``mbnas_argv(*args)`` -> the command line that runs the real console script."""
    return mbnas_cmd
