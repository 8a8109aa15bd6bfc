"""mobilebert-nas: search the MobileBERT design space for compact, fast BERT models."""

import logging as _logging

# transformers imports torchao (pulled in by litert-torch) for its quantizers; torchao then warns
# that its CUDA-only kernels do not load on a CPU build of torch, and torch warns about an Enum
# that torchao registers with pytree. Neither matters here and both drown the one-line messages
# this tool gives, so they are lowered to errors before anything imports transformers.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

from search_spaces.candidate import Candidate  # noqa: E402

__all__ = ["Candidate"]
__version__ = "0.4.0"
