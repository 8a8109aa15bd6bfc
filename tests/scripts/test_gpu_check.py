"""scripts/gpu_check.py, the GPU path's one command, as its CPU dry run: every step runs on the
smoke space and the report says so (the GPU run itself needs a GPU machine: issue 'The GPU path')."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    report = tmp_path / "report.md"
    r = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device", "cpu", "--space", "smoke",
                        "--teacher-steps", "20", "--out", str(report), "--work", str(tmp_path / "work")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    text = report.read_text()
    assert r.returncode == 0, text[-3000:]
    assert "**every step passed**" in text
    for step in ("## Teacher pre-training", "## Distillation", "## Search, kill -9, resume",
                 "## Export and load in stock transformers"):
        assert step in text
    assert "trials now: " in text and "'COMPLETE': 4" in text
    assert "| cpu | bf16 |" in text and "| cpu | fp32 |" in text
