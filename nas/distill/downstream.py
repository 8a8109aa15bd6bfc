"""The downstream score: accuracy after a short fine-tune on a sentence-classification task
(default: Rotten Tomatoes fresh/rotten, split by movie; or the user's CSV)."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import MobileBertForSequenceClassification

from nas.distill.stage import Diverged, Stage


@lru_cache(maxsize=4)
def _encoded(seq_len: int, csv_path: str | None, vocab):
    from nas.data.downstream import encode_split, load_downstream
    from nas.data.tokenizer import load_tokenizer

    data = load_downstream(Path(csv_path) if csv_path else None)
    tok = load_tokenizer(vocab)
    return data, encode_split(data.train, tok, seq_len), encode_split(data.dev, tok, seq_len)


def evaluate_downstream(student, c, s, vocab, csv_path: str | None = None) -> tuple[float, str]:
    """Fine-tune a classifier on the student's encoder for ``s.downstream_steps`` steps, on text
    tokenised with ``vocab`` (the teacher's, ``nas.data.tokenizer.Vocab``); returns
    (dev accuracy, description of the data). The student itself is not changed (its config neither:
    it is what gets exported). A fine-tune whose loss or dev logits stop being finite raises
    ``Diverged``, as pre-training does: argmax over NaN logits is class 0, a fake accuracy."""
    data, train, dev = _encoded(c.seq_len, csv_path, vocab)
    cfg = copy.deepcopy(student.config)
    cfg.num_labels = data.num_labels
    clf = MobileBertForSequenceClassification(cfg)
    clf.mobilebert.load_state_dict(student.mobilebert.state_dict(), strict=False)  # pooler stays fresh
    clf.to(s.device).train()
    stage = Stage([{"params": list(clf.parameters()), "weight_decay": 0.01}], s.downstream_lr, s.downstream_steps,
                  s.warmup)
    rng = np.random.default_rng(s.seed)
    for _ in range(s.downstream_steps):
        idx = torch.from_numpy(rng.integers(0, len(train), s.batch_size))
        out = clf(input_ids=train.input_ids[idx].to(s.device), attention_mask=train.attention_mask[idx].to(s.device))
        stage.step(F.cross_entropy(out.logits.float(), train.labels[idx].to(s.device)), "downstream fine-tuning")
    clf.eval()
    n = min(len(dev), s.downstream_eval)
    # the same n sentences for every candidate, drawn across the split: the split is ordered (by text
    # hash), and its first 64 were 77% rotten against 42% overall, so a majority-class model looked
    # like a score
    pick = torch.from_numpy(np.random.default_rng(0).permutation(len(dev))[:n])
    correct = 0
    with torch.no_grad():
        for i in range(0, n, 64):
            idx = pick[i:i + 64]
            logits = clf(input_ids=dev.input_ids[idx].to(s.device),
                         attention_mask=dev.attention_mask[idx].to(s.device)).logits
            if not torch.isfinite(logits).all():
                raise Diverged("downstream fine-tuning: the dev logits are not finite")
            correct += (logits.argmax(-1).cpu() == dev.labels[idx]).sum().item()
    which = "all its" if n == len(dev) else f"a fixed random {n} of its {len(dev)}"
    # the score a model that always says the commonest class would get on these very sentences: a
    # short fine-tune of a small student often lands exactly there, and the number alone hides it
    majority = torch.bincount(dev.labels[pick]).max().item() / n
    return correct / n, (f"{data.description}: dev split, {which} sentences, after {s.downstream_steps} "
                         f"fine-tuning steps; always predicting the commonest class scores {majority:.4f} there")
