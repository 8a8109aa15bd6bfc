"""Shared fixtures. Heavy stacks are imported inside tests, so collection stays fast."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def mbnas(tmp_path):
    """Run the real ``mbnas`` console script in a subprocess; returns (code, stdout, stderr)."""
    import subprocess

    def run(*args: str, timeout: float = 300, env: dict | None = None):
        exe = Path(sys.executable).with_name("mbnas")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nas"]
        proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout,
                              cwd=tmp_path, env={**os.environ, **(env or {})})
        return proc.returncode, proc.stdout, proc.stderr

    return run


@pytest.fixture(scope="session")
def smoke_teacher_dir(tmp_path_factory):
    """A real smoke-space teacher, pre-trained once per test session (seconds) into a temp folder."""
    from nas.teacher import recipe_for, train_teacher
    from search_spaces import load_space

    out = tmp_path_factory.mktemp("teachers")
    t = train_teacher(load_space("smoke"), recipe_for(load_space("smoke")), out=out, log=lambda s: None,
                      command="mbnas teacher train --space smoke")
    return t.path
