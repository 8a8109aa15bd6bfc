"""Cheap scores of a candidate trained at the search budget, to be checked against the ground truth
(benchmarks/proxy_validity.py): which one ranks candidates as longer training does.

Each is "higher is better" and measured on the search's fixed held-out batches (``TeacherCache``):

- ``block_fidelity_raw``: ``nas.mlm.block_fidelity`` without rescaling (the default score of mbnas
  <= 0.2.0): it also reads each output token's scale and shift, which the feature-map loss ignores.
- ``heldout_transfer``: minus the layer-wise transfer loss (feature-map terms of
  ``nas.distill.losses.feature_map_loss``, MobileBERT's weights) of the student's own stack against
  the teacher's, on held-out text, averaged over blocks.
- ``hybrid_likelihood``: exp(-CE) of the masked tokens when one student block replaces its teacher
  block (the rest the teacher's), averaged over blocks: a block judged by what the teacher's MLM
  head makes of it.
The naive baseline, parameter count, is not a score here (the search's other axis is latency): the
benchmark takes it from ``search_spaces.ops.count``. The masked-LM scores of ``nas.mlm.evaluate_mlm`` (block_fidelity, mlm_accuracy, mlm_likelihood,
teacher_fidelity, top1_agreement) are measured by every run already.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nas.distill.losses import feature_map_loss
from nas.distill.settings import TransferWeights
from nas.mlm import block_fidelity, masked_logits

PROXIES = ("block_fidelity_raw", "heldout_transfer", "hybrid_likelihood")


@torch.no_grad()
def evaluate_proxies(student, teacher, cache, device: str = "cpu") -> dict[str, float]:
    """The scores of ``PROXIES`` for ``student`` (a trained ``MobileBertForMaskedLM``); {} when its
    blocks cannot stand in for the teacher's (another block count or width)."""
    cfg, t_cfg = student.config, teacher.model.config
    if (cfg.num_hidden_layers, cfg.hidden_size) != (t_cfg.num_hidden_layers, t_cfg.hidden_size):
        return {}

    was = student.training
    student.eval()
    w, t_blocks, s_blocks = TransferWeights(), teacher.model.mobilebert.encoder.layer, student.mobilebert.encoder.layer
    raw = transfer = ce = 0.0
    n_tokens = 0
    for i, b in enumerate(cache.heldout):
        b = b.to(device)
        th = (cache.heldout_hidden[i].to(device).float() if cache.heldout_hidden is not None else
              torch.stack(teacher.model.mobilebert(input_ids=b.input_ids, attention_mask=b.attention_mask,
                                                   output_hidden_states=True).hidden_states))  # (L+1, B, T, H)
        raw += block_fidelity(student, th, rescale=False)
        sh = student.mobilebert(input_ids=b.input_ids, output_hidden_states=True).hidden_states  # L+1 x (B, T, H)
        transfer += sum(feature_map_loss(sh[l + 1], th[l + 1], w).item() for l in range(len(s_blocks))) / len(s_blocks)
        y = b.labels[b.labels != -100]
        for l in range(len(s_blocks)):  # student block l in the teacher's stack
            h = th[l]
            for j in range(l, len(t_blocks)):
                h = (s_blocks[j] if j == l else t_blocks[j])(h, None)
            logits = masked_logits(teacher.model, h, b.labels).float()
            ce += F.cross_entropy(logits, y, reduction="sum").item() / len(s_blocks)
        n_tokens += y.numel()
    student.train(was)
    n = len(cache.heldout)
    return {"block_fidelity_raw": raw / n, "heldout_transfer": -transfer / n,
            "hybrid_likelihood": math.exp(-ce / n_tokens)}
