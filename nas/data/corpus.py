"""Pre-training text: documents, a held-out split by document, a cached token stream, MLM batches.

Documents come from the pinned news and Wikipedia sources (``nas.data.sources``) or from the
user's own text files. Each document goes to train or held-out by a hash of its id, so the split
is the same on every host and no held-out text is ever seen in training. The documents are
tokenised once into one flat stream per split (documents joined by [SEP]) and cached as ``.npy``
under a key that changes whenever anything that shapes the tokens changes.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import html
import io
import json
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas.data.sources import cache_dir, fetch, get_source
from nas.data.tokenizer import BERT_VOCAB, CLS, MASK, SEP, SPECIAL_IDS, Batch, Vocab, get_vocab, load_tokenizer
from search_spaces.errors import UserError
from search_spaces.files import first_few
from search_spaces.masking import BERT_MASKING, Masking

# Bump when cleaning or stream layout changes: it is part of the cache key.
CLEANING_VERSION = 2
BUILTIN_SOURCES = ("news", "wiki")
MIN_WIKI_WORDS = 200  # stubs and disambiguation pages carry little prose
MIN_PARAGRAPH_WORDS = 10  # shorter "paragraphs" left by markup stripping are captions and debris


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable across hosts: "news:17", "wiki:12", "user:<sha256 of the text>"
    text: str


@dataclass(frozen=True, eq=False)
class Corpus:
    """Token streams for masked-LM pre-training and the task-agnostic held-out score."""

    train: np.ndarray  # (N_train,) uint16 token ids, documents separated by [SEP]
    heldout: np.ndarray  # (N_heldout,) uint16
    data_hash: str  # sha256 of train then held-out token bytes: provenance of every score
    description: str  # by content only: a study keeps it (StudyMeta.user_data), so moved or renamed files resume
    vocab: Vocab  # the ids' vocabulary: MLM batches draw random replacements from its word pieces
    file_names: tuple[str, ...] = ()  # the user's files, for display (``shown``)

    @property
    def shown(self) -> str:
        """``description`` with the user's file names, for what a person reads."""
        if not self.file_names:
            return self.description
        return self.description.replace("user file(s)", f"user file(s) {first_few(self.file_names, 3)}", 1)

    def check_windows(self, seq_len: int) -> None:
        """Refuse, before any training, a corpus whose held-out split cannot fill one window of
        ``seq_len`` (the held-out scores need one) or whose train split cannot."""
        for name, tokens in (("held-out", self.heldout), ("train", self.train)):
            if len(tokens) < seq_len - 2:
                raise UserError(f"the {name} split of the corpus ({self.shown}) has {len(tokens)} tokens, "
                                f"fewer than one window of {seq_len}; give more text (documents are split "
                                f"between train and held-out whole, so a few long ones leave one side short)")


# --------------------------------------------------------------------------------------------
# Documents


def _doc_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")


def is_heldout(doc_id: str, fraction: float) -> bool:
    """Deterministic split: the first 8 bytes of sha256(doc_id) as a fraction of 2**64."""
    return _doc_hash(doc_id) < fraction * 2**64


def clean_news(text: str) -> str:
    """Repair the news csv's lost-quote artefacts (``"?`` where a curly quote was) and U+FFFD."""
    text = text.replace("\ufffd", "").replace('"?', '" ')  # in this order: '"\ufffd?' occurs
    return " ".join(text.split())


def news_documents() -> Iterator[Document]:
    """3,824 news articles (title + text); empty texts and exact duplicate texts are dropped."""
    path = fetch("news")
    with zipfile.ZipFile(path) as zf, zf.open("NewsArticles.csv") as raw:
        seen: set[str] = set()
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline="")):
            body = clean_news(row["text"])
            if not body or body in seen:  # duplicates would leak held-out text into train
                continue
            seen.add(body)
            title = clean_news(row["title"])
            yield Document(f"news:{row['article_id']}", f"{title}\n{body}" if title else body)


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_BLOCK = re.compile(
    r"<(math|gallery|timeline|score|syntaxhighlight|source|chem|ce|hiero|imagemap)\b[^>]*>.*?</\1\s*>",
    re.S | re.I,
)
_EMPTY_PARENS = re.compile(r"\(\s*[,;:]?\s*\)")
_DEBRIS = ("[[", "]]", "{{", "}}", "|")  # what is left of a construct the regexes could not unpick
_INNER_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_INNER_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_INNER_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_EXT_LINK = re.compile(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]")
_TAG = re.compile(r"<[^<>]+>")
_DROP_LINK = re.compile(r"^\s*:?\s*(file|image|category|media|[a-z]{2,3}(-[a-z]+)?)\s*:", re.I)


def _link_text(m: re.Match[str]) -> str:
    body = m.group(1)
    if _DROP_LINK.match(body):  # images, categories and interlanguage links are not prose
        return ""
    return body.rsplit("|", 1)[-1]


def _strip_nested(pattern: re.Pattern[str], text: str, repl: str | Callable[[re.Match[str]], str] = "") -> str:
    """Remove innermost matches until none are left: nested templates and tables."""
    while True:
        text, n = pattern.subn(repl, text)
        if not n:
            return text


def strip_wiki(markup: str) -> str:
    """MediaWiki markup to prose paragraphs (good enough for pre-training, not a full parser).

    Drops comments, refs, templates, tables, images, categories, headings, lists and short
    fragments; keeps link labels and the text of ordinary paragraphs.
    """
    text = html.unescape(_COMMENT.sub("", markup))  # &amp;nbsp; is still &nbsp; after XML decoding
    text = _BLOCK.sub("", _REF.sub("", text))
    text = _strip_nested(_INNER_TEMPLATE, text)
    text = _strip_nested(_INNER_TABLE, text)
    text = _strip_nested(_INNER_LINK, text, _link_text)
    text = _EXT_LINK.sub(r"\1", text)
    text = _TAG.sub("", text).replace("'''", "").replace("''", "")
    paragraphs = []
    for para in re.split(r"\n\s*\n", text):
        lines = [ln for ln in para.splitlines() if ln.strip() and ln.lstrip()[0] not in "=*#:;|!{}"]
        prose = " ".join(_EMPTY_PARENS.sub("", " ".join(lines)).split())
        if len(prose.split()) >= MIN_PARAGRAPH_WORDS and not any(d in prose for d in _DEBRIS):
            paragraphs.append(prose)
    return "\n".join(paragraphs)


def wiki_documents() -> Iterator[Document]:
    """Articles of the gensim test dump (namespace 0, no redirects) with markup stripped."""
    with bz2.open(fetch("wiki")) as f:
        for _, el in ET.iterparse(f):
            if not el.tag.endswith("}page"):
                continue
            ns, redirect = el.findtext("{*}ns"), el.find("{*}redirect") is not None
            if ns == "0" and not redirect:
                text = strip_wiki(el.findtext("{*}revision/{*}text") or "")
                if len(text.split()) >= MIN_WIKI_WORDS:
                    yield Document(f"wiki:{el.findtext('{*}id')}", text)
            el.clear()  # the dump is 6 MB of XML; keep memory flat


def user_documents(paths: Sequence[Path]) -> Iterator[Document]:
    """Each file is a document, or, where it has blank-line-separated paragraphs, each paragraph."""
    for path in map(Path, paths):
        text = _read_user_file(path)
        paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        for para in paras:
            text = " ".join(para.split())
            # id from content, not file name: the split (and the cache key) follow the text only
            yield Document(f"user:{hashlib.sha256(text.encode()).hexdigest()[:16]}", text)


def _read_user_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"corpus file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"corpus file {path} is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise UserError(f"corpus file {path} is empty")
    return text


# --------------------------------------------------------------------------------------------
# Token streams


def load_corpus(
    sources: Sequence[str] = BUILTIN_SOURCES,
    user_files: Sequence[Path] | None = None,
    heldout_fraction: float = 0.05,
    vocab: str | Vocab = BERT_VOCAB,
) -> Corpus:
    """Train and held-out token streams for the named built-in sources plus any user files, in
    ``vocab``'s word pieces.

    The first call tokenises (about 7 s for news + wiki on 2 cores); later calls read the cached
    ``.npy`` files (about 20 ms).
    """
    vocab = vocab if isinstance(vocab, Vocab) else get_vocab(vocab)
    if not 0.0 < heldout_fraction < 1.0:
        raise UserError(f"held-out fraction must be in (0, 1), got {heldout_fraction}")
    srcs = [get_source(s) for s in dict.fromkeys(sources)]
    for s in srcs:
        if s.name not in BUILTIN_SOURCES:
            raise UserError(f"'{s.name}' is not a text corpus: choose from {', '.join(BUILTIN_SOURCES)}")
    files = [Path(p) for p in user_files or ()]
    seen: dict[Path, Path] = {}
    for p in files:  # twice the same text would count twice, in train or in held-out
        if p.resolve() in seen:
            raise UserError(f"--corpus {p}: given twice (as {seen[p.resolve()]} too); give each file once")
        seen[p.resolve()] = p
    if not srcs and not files:
        raise UserError("no corpus: name a built-in source or give text files with --corpus")
    file_hashes = [hashlib.sha256(_read_user_file(p).encode()).hexdigest() for p in files]
    key = hashlib.sha256(
        json.dumps(
            [CLEANING_VERSION, [s.sha256 for s in srcs], file_hashes, heldout_fraction, vocab.sha256]
        ).encode()
    ).hexdigest()[:16]
    folder = cache_dir() / "corpus"
    train_path, heldout_path = folder / f"{key}-train.npy", folder / f"{key}-heldout.npy"

    if not (train_path.exists() and heldout_path.exists()):
        docs: list[Iterable[Document]] = [news_documents() if s.name == "news" else wiki_documents() for s in srcs]
        if files:
            docs.append(user_documents(files))
        train, heldout = _tokenise_split((d for it in docs for d in it), heldout_fraction, vocab)
        folder.mkdir(parents=True, exist_ok=True)
        for arr, path in ((heldout, heldout_path), (train, train_path)):  # train last: it marks done
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)

    train, heldout = np.load(train_path), np.load(heldout_path)
    data_hash = hashlib.sha256(train.tobytes() + heldout.tobytes()).hexdigest()
    names = [s.label for s in srcs] + [f"{len(files)} user file(s)"] * bool(files)
    description = (
        f"{' + '.join(names)}, held-out {heldout_fraction:.0%} of documents by hash, "
        f"{len(train) + len(heldout):,} tokens ({len(train):,} train / {len(heldout):,} held-out)"
    ) + ("" if vocab.name == BERT_VOCAB else f" of {vocab.label}")
    return Corpus(train=train, heldout=heldout, data_hash=data_hash, description=description, vocab=vocab,
                  file_names=tuple(p.name for p in files))


def corpus_for(user_files: Sequence[str | Path] | None = None, vocab: str | Vocab = BERT_VOCAB) -> Corpus:
    """What ``--corpus`` means everywhere (teacher pre-training, transfer, held-out scores): the
    user's text files alone when given, else the built-in corpus; tokenised with the teacher's ``vocab``."""
    if user_files:
        return load_corpus(sources=(), user_files=[Path(p) for p in user_files], vocab=vocab)
    return load_corpus(vocab=vocab)


def _tokenise_split(docs: Iterable[Document], fraction: float, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise documents into two flat uint16 streams; each document is followed by [SEP]."""
    if vocab.size > 2**16:
        raise UserError(f"vocab {vocab.path}: {vocab.size:,} pieces; token streams are stored as uint16, so at most 65,536")
    tok = load_tokenizer(vocab)
    splits: dict[bool, list[Document]] = {False: [], True: []}
    for doc in docs:
        splits[is_heldout(doc.doc_id, fraction)].append(doc)
    if not splits[True] and len(splits[False]) > 1:
        # A small user corpus can miss the held-out fraction entirely: hold out the document
        # closest to it (the smallest hash), still a pure function of the documents.
        first = min(splits[False], key=lambda d: _doc_hash(d.doc_id))
        splits[True].append(first)
        splits[False] = [d for d in splits[False] if d is not first]
    if not splits[True] or not splits[False]:
        n = len(splits[True]) + len(splits[False])
        raise UserError(f"corpus too small to split: {n} document(s), and train and held-out need at least one "
                        f"each; in a text file a blank line separates documents (a file without blank lines "
                        f"is one document), so give more text or separate it into paragraphs")
    out = []
    for held in (False, True):
        encs = tok.encode_batch([d.text for d in splits[held]], add_special_tokens=False)
        parts = [np.array([*e.ids, SEP], dtype=np.uint16) for e in encs]  # vocab.size <= 2**16
        out.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# Masked-LM batches


def mask_tokens(body: np.ndarray, rng: np.random.Generator, masking: Masking = BERT_MASKING, *, vocab: Vocab) -> Batch:
    """Wrap windows ``body`` (B, T-2) in [CLS] ... [SEP] and mask them by ``masking``."""
    b = body.shape[0]
    ids = np.concatenate(
        [np.full((b, 1), CLS), body.astype(np.int64), np.full((b, 1), SEP)], axis=1
    )  # (B, T)
    maskable = ~np.isin(ids, SPECIAL_IDS)  # (B, T); document [SEP]s are never targets
    if masking.mean_span == 1:
        chosen = maskable & (rng.random(ids.shape) < masking.rate)
        for row in np.flatnonzero(~chosen.any(axis=1) & maskable.any(axis=1)):
            chosen[row, rng.choice(np.flatnonzero(maskable[row]))] = True
        roll = rng.random(ids.shape)  # (B, T): one draw per token
    else:
        chosen, roll = _choose_spans(maskable, rng, masking)
    labels = np.where(chosen, ids, -100)
    random_ids = rng.integers(vocab.first_wordpiece, vocab.size, size=ids.shape)
    ids = np.where(chosen & (roll < 0.8), MASK, ids)
    ids = np.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, ids)
    input_ids = torch.from_numpy(ids)
    return Batch(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=torch.from_numpy(labels))


def _choose_spans(maskable: np.ndarray, rng: np.random.Generator, masking: Masking) -> tuple[np.ndarray, np.ndarray]:
    """SpanBERT's choice, row by row: maskable (B, T) -> chosen (B, T) and roll (B, T), one draw per
    span (a span is replaced, randomised or kept whole). A span's length is cut to the budget left,
    and a span over special tokens covers only its maskable ones."""
    chosen = np.zeros_like(maskable)
    roll = np.ones(maskable.shape)
    p = 1.0 / masking.mean_span
    for row in range(maskable.shape[0]):
        can = np.flatnonzero(maskable[row])
        if not len(can):
            continue
        budget = max(1, round(masking.rate * len(can)))
        n = 0
        for _ in range(50 * budget):  # each try adds a token or more unless it lands on chosen ones
            length = min(int(rng.geometric(p)), masking.max_span, budget - n)
            start = can[rng.integers(len(can))]
            span = np.arange(start, min(start + length, maskable.shape[1]))
            span = span[maskable[row, span] & ~chosen[row, span]]
            chosen[row, span] = True
            roll[row, span] = rng.random()
            n += len(span)
            if n >= budget:
                break
    return chosen, roll


def make_mlm_batches(
    tokens: np.ndarray, seq_len: int, batch_size: int, rng: np.random.Generator, masking: Masking = BERT_MASKING, *,
    vocab: Vocab,
) -> Iterator[Batch]:
    """Endless training batches: windows of ``seq_len`` (with [CLS]/[SEP]) at random offsets."""
    body_len = _body_len(tokens, seq_len)
    while True:
        starts = rng.integers(0, len(tokens) - body_len + 1, size=batch_size)  # (B,)
        body = tokens[starts[:, None] + np.arange(body_len)]  # (B, T-2)
        yield mask_tokens(body, rng, masking, vocab=vocab)


def heldout_batches(
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int,
    max_batches: int | None = None,
    seed: int = 0,
    masking: Masking = BERT_MASKING,
    *,
    vocab: Vocab,
) -> list[Batch]:
    """The fixed evaluation set: same windows and same masked positions for every candidate.

    Non-overlapping windows; when ``max_batches`` caps them, windows are spread evenly over the
    whole stream so every source is represented.
    """
    body_len = _body_len(tokens, seq_len)
    n_windows = len(tokens) // body_len
    if max_batches is not None:
        n_windows = min(n_windows, max_batches * batch_size)
    starts = np.linspace(0, len(tokens) // body_len - 1, n_windows).round().astype(np.int64) * body_len
    rng = np.random.default_rng(seed)
    return [
        mask_tokens(tokens[starts[i : i + batch_size, None] + np.arange(body_len)], rng, masking, vocab=vocab)
        for i in range(0, n_windows, batch_size)
    ]


def _body_len(tokens: np.ndarray, seq_len: int) -> int:
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 ([CLS] token [SEP]), got {seq_len}")
    if len(tokens) < seq_len - 2:
        raise UserError(f"the text has {len(tokens)} tokens, fewer than one window of {seq_len}; give a larger corpus")
    return seq_len - 2
