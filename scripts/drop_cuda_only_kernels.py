"""Remove torchao's CUDA-only kernels where torch is a CPU build (run by ``make install``).

litert-torch (the ``litert`` extra: ``.tflite`` export) requires torchao, and transformers imports
torchao whenever it is installed, so ``from transformers import MobileBertForMaskedLM`` in a user's
own script printed "Failed to load .../torchao/_C_mxfp8...so" and "..._C_cutlass_90a.abi3.so": the
wheel's compiled kernels are for NVIDIA GPUs (MX-FP8 on Blackwell, CUTLASS for Hopper), which a CPU
build of torch cannot load. Nothing on a CPU uses them, so they are removed there. On a CUDA build of
torch nothing is touched.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main() -> int:
    import torch

    if torch.version.cuda:  # a GPU build: the kernels may be used
        return 0
    spec = importlib.util.find_spec("torchao")
    if spec is None or spec.origin is None:
        return 0
    for so in sorted(Path(spec.origin).parent.glob("_C*.so")):
        so.unlink()
        print(f"removed {so.name} from torchao: a CUDA-only kernel that a CPU build of torch cannot load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
