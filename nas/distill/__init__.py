"""Knowledge transfer from the fixed teacher: MobileBERT's progressive / joint / auxiliary schemes,
BERT-of-Theseus module replacing, and the no-teacher baseline.

The training symbols are imported lazily (PEP 562), so ``from nas.distill import STRATEGIES`` —
as the CLI does to build its parser — does not import torch.
"""

from nas.distill.settings import OBJECTIVES, SCORES, STRATEGIES, DistillSettings, TransferWeights

_TRAIN = ("DistillResult", "Diverged", "EarlyStop", "distill_candidate")
__all__ = ["OBJECTIVES", "SCORES", "STRATEGIES", "DistillSettings", "TransferWeights", *_TRAIN]


def __getattr__(name: str):
    if name in _TRAIN:
        from nas.distill import train

        return getattr(train, name)
    raise AttributeError(f"module 'nas.distill' has no attribute {name!r}")
