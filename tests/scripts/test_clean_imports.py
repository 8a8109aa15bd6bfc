"""What a user's own script meets when it loads an export in the project's environment."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_importing_transformers_prints_nothing():
    # scripts/fit_torchao.py (make install) removes torchao's CUDA-only kernels on a CPU build of
    # torch and stops torchao registering the Enums torch 2.13 supports natively; before it, this
    # import printed two "Failed to load ..." lines and two torch/utils/_pytree.py deprecation lines
    torch_cuda = subprocess.run([sys.executable, "-c", "import torch; print(torch.version.cuda or '')"],
                                capture_output=True, text=True).stdout.strip()
    if torch_cuda:
        pytest.skip("a CUDA build of torch loads torchao's kernels")
    proc = subprocess.run([sys.executable, "-c", "from transformers import MobileBertForMaskedLM"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stderr + proc.stdout
    assert "register_constant" not in proc.stderr + proc.stdout
    assert proc.stderr.strip() == "" and proc.stdout.strip() == ""


def _fit_torchao():
    spec = importlib.util.spec_from_file_location("fit_torchao", Path(__file__).parents[2] / "scripts/fit_torchao.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fit_torchao_changes_only_the_text_it_knows(tmp_path, capsys):
    fit = _fit_torchao()
    (tmp_path / "utils.py").write_text("import torch\n\n\n" + fit.REGISTER + "\nX = 1\n")
    fit.skip_native_enums(tmp_path, opaque_enums=True)
    once = (tmp_path / "utils.py").read_text()
    assert fit.MARK in once and once.endswith("\nX = 1\n") and "skips the Enums" in capsys.readouterr().out
    fit.skip_native_enums(tmp_path, opaque_enums=True)  # again: nothing changes, nothing said
    assert (tmp_path / "utils.py").read_text() == once and capsys.readouterr().out == ""
    other = "def register_as_pytree_constant(cls):\n    return cls\n"  # a torchao that changed it
    (tmp_path / "utils.py").write_text(other)
    fit.skip_native_enums(tmp_path, opaque_enums=True)
    assert (tmp_path / "utils.py").read_text() == other


def test_fitted_registration_still_registers_what_is_not_a_native_enum():
    import enum

    import torch.utils._pytree as pytree

    fit = _fit_torchao()
    ns: dict = {"torch": __import__("torch")}
    exec(fit.REGISTER_FIT, ns)

    class Colour(enum.Enum):
        RED = 1

    class Plain:  # what register_constant takes: hashable, with its own equality
        def __eq__(self, other):
            return isinstance(other, Plain)

        def __hash__(self):
            return 0

    ns["register_as_pytree_constant"](Colour)
    ns["register_as_pytree_constant"](Plain)
    assert Plain in pytree.SUPPORTED_NODES and Colour not in pytree.SUPPORTED_NODES
