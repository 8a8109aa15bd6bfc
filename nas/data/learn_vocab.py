"""Learn a WordPiece vocabulary on the training split of a corpus, laid out like BERT's.

The demo's ``news-wiki-4k`` (``search_spaces/vocabs/news-wiki-4k.txt``) was made with::

    python -m nas.data.learn_vocab --size 4096 --out search_spaces/vocabs/news-wiki-4k.txt

Only training documents are read (the held-out split, by the same hash as ``load_corpus``), so no
held-out text shapes the pieces the scores are measured in. The layout keeps BERT's special ids:
[PAD] 0, [unused0-98], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then the learnt pieces.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from tokenizers import BertWordPieceTokenizer

from nas.data.corpus import BUILTIN_SOURCES, is_heldout, news_documents, wiki_documents

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
UNUSED = 99  # [unused0..98] fill ids 1-99, so [UNK] is 100 as in BERT


def learn_vocab(texts: Iterable[str], size: int) -> list[str]:
    """``size`` lines: the BERT layout above, then the pieces the WordPiece trainer learns from ``texts``
    (lower-cased, BERT's pre-tokenisation, at most 1,000 initial characters, pieces seen twice or more),
    in sorted order."""
    if size <= len(SPECIALS) + UNUSED:
        raise ValueError(f"a vocabulary of {size} has no room for word pieces after the {len(SPECIALS) + UNUSED} special ids")
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(list(texts), vocab_size=size - UNUSED, min_frequency=2, special_tokens=list(SPECIALS),
                            limit_alphabet=1000, wordpieces_prefix="##", show_progress=False)
    # sorted: the trainer orders pieces of equal count differently from run to run (the same set),
    # and a vocabulary made twice by the same command must be the same file
    pieces = sorted(t for t in tok.get_vocab() if t not in SPECIALS)
    lines = ["[PAD]", *(f"[unused{i}]" for i in range(UNUSED)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces]
    return lines[:size]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=4096, help="lines of the vocabulary (default 4096)")
    p.add_argument("--heldout-fraction", type=float, default=0.05, help="as load_corpus's (default 0.05)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    docs = (d for src in BUILTIN_SOURCES for d in (news_documents() if src == "news" else wiki_documents()))
    lines = learn_vocab((d.text for d in docs if not is_heldout(d.doc_id, args.heldout_fraction)), args.size)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(lines)} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
