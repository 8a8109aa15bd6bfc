"""Knowledge transfer from the fixed teacher: MobileBERT's progressive / joint / auxiliary schemes,
BERT-of-Theseus module replacing, and the no-teacher baseline."""

from nas.distill.settings import OBJECTIVES, SCORES, STRATEGIES, DistillSettings, TransferWeights
from nas.distill.train import DistillResult, Diverged, EarlyStop, distill_candidate

__all__ = ["OBJECTIVES", "SCORES", "STRATEGIES", "DistillResult", "DistillSettings", "Diverged", "EarlyStop",
           "TransferWeights", "distill_candidate"]
