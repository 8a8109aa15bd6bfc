"""Make the installed torchao fit the pinned torch (run by ``make install``).

litert-torch (the ``litert`` extra: ``.tflite`` export) requires torchao, and transformers imports
torchao whenever it is installed, so ``from transformers import MobileBertForMaskedLM`` in a user's
own script met two mismatches between torchao 0.18.0 (the newest on the index) and torch 2.13:

- "Failed to load .../torchao/_C_mxfp8...so" and "..._C_cutlass_90a.abi3.so": the wheel's compiled
  kernels are for NVIDIA GPUs (MX-FP8 on Blackwell, CUTLASS for Hopper), which a CPU build of torch
  cannot load. Nothing on a CPU uses them, so they are removed there (on a CUDA build, kept).
- Two "<enum 'KernelPreference'> / <enum 'ScaleCalculationMode'> is an Enum subclass and is now
  natively supported by torch.compile as an opaque value type. Calling register_constant() on Enum
  subclasses is deprecated" lines: torchao's ``register_as_pytree_constant`` registers two Enums,
  which torch 2.13 treats natively (torch/utils/_pytree.py says they "don't need pytree
  registration"). The decorator is changed to skip exactly the classes torch warns about (an Enum
  that torch already takes as an opaque value type) and to register everything else as before.

Each change is made only where the installed file still has the text it replaces, and says so;
running it again changes nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MARK = "# mobilebert-nas scripts/fit_torchao.py"
REGISTER = '''def register_as_pytree_constant(cls):
    """Decorator to register a class as a pytree constant for dynamo non-strict trace mode."""
    torch.utils._pytree.register_constant(cls)
    return cls
'''
REGISTER_FIT = f'''def register_as_pytree_constant(cls):
    """Decorator to register a class as a pytree constant for dynamo non-strict trace mode."""
    {MARK}: torch takes an Enum as an opaque value type natively
    # and deprecates registering it (torch/utils/_pytree.py), so such a class is left as it is
    import enum

    from torch._library.opaque_object import is_opaque_type

    if isinstance(cls, type) and issubclass(cls, enum.Enum) and is_opaque_type(cls):
        return cls
    torch.utils._pytree.register_constant(cls)
    return cls
'''


def torchao_dir() -> Path | None:
    spec = importlib.util.find_spec("torchao")
    return None if spec is None or spec.origin is None else Path(spec.origin).parent


def drop_cuda_only_kernels(root: Path, cuda: bool) -> None:
    if cuda:  # a GPU build: the kernels may be used
        return
    for so in sorted(root.glob("_C*.so")):
        so.unlink()
        print(f"removed {so.name} from torchao: a CUDA-only kernel that a CPU build of torch cannot load")


def skip_native_enums(root: Path, opaque_enums: bool) -> None:
    if not opaque_enums:  # an older torch: registering Enums is still how it traces them
        return
    utils = root / "utils.py"
    text = utils.read_text(encoding="utf-8")
    if MARK in text or REGISTER not in text:  # done already, or a torchao that does not need it
        return
    utils.write_text(text.replace(REGISTER, REGISTER_FIT), encoding="utf-8")
    print("torchao.utils.register_as_pytree_constant: skips the Enums torch supports natively "
          "(torch deprecates registering them)")


def main() -> int:
    import torch

    root = torchao_dir()
    if root is None:
        return 0
    drop_cuda_only_kernels(root, cuda=bool(torch.version.cuda))
    skip_native_enums(root, opaque_enums=importlib.util.find_spec("torch._library.opaque_object") is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
