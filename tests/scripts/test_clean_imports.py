"""What a user's own script meets when it loads an export in the project's environment."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_importing_transformers_loads_no_kernel_that_cannot_load():
    # scripts/drop_cuda_only_kernels.py (make install) removes torchao's CUDA-only kernels on a CPU
    # build of torch; before it, this import printed two "Failed to load ..." lines
    torch_cuda = subprocess.run([sys.executable, "-c", "import torch; print(torch.version.cuda or '')"],
                                capture_output=True, text=True).stdout.strip()
    if torch_cuda:
        pytest.skip("a CUDA build of torch loads torchao's kernels")
    proc = subprocess.run([sys.executable, "-c", "from transformers import MobileBertForMaskedLM"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stderr + proc.stdout
