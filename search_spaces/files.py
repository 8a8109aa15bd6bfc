"""Naming a built-in file (a search space, a device profile) or the user's own by path; reading a
user's text file; checking a folder or file to write into; where this package caches things."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from search_spaces.errors import UserError

CACHE_ENV = "MBNAS_CACHE"


def cache_dir() -> Path:
    """Root of everything this package caches (fetched data, teachers, this machine's host profile):
    ``$MBNAS_CACHE`` or ``~/.cache/mbnas``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "mbnas"


def read_user_text(path: str | Path) -> str:
    """A user's text file (CSV, JSON, YAML, a log) as UTF-8; a byte-order mark, as spreadsheet programs
    write, is dropped. Missing, unreadable or not UTF-8 (a UTF-16 or Latin-1 export, a binary file
    given by mistake) is one ``UserError`` line naming the file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                        f"save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


def builtin_names(folder: Path, suffix: str) -> list[str]:
    """Stems of the built-in ``*suffix`` files of ``folder``, sorted."""
    return sorted(p.stem for p in folder.glob(f"*{suffix}"))


def builtin_or_file(name_or_path: str | Path, folder: Path, suffix: str, kind: str,
                    suffixes: tuple[str, ...] = ()) -> Path:
    """The built-in ``folder/<name><suffix>`` when ``name_or_path`` names one, else the user's file
    (with one of ``suffixes``, when given); anything else is one line listing the built-ins."""
    names = builtin_names(folder, suffix)
    if str(name_or_path) in names:
        return folder / f"{name_or_path}{suffix}"
    p = Path(name_or_path)
    if p.is_file() and (not suffixes or p.suffix in suffixes):
        return p
    if not p.exists() and (p.suffix in suffixes or len(p.parts) > 1):  # meant as a file: say that it is missing
        raise UserError(f"{p}: no such file (built-in {kind}s: {', '.join(names)})")
    if p.is_dir():
        raise UserError(f"{p}: a folder; give the {kind} file itself (built-in {kind}s: {', '.join(names)})")
    files = f"a {'/'.join(suffixes)} file" if suffixes else "an existing file"
    raise UserError(f"'{name_or_path}' is neither a built-in {kind} ({', '.join(names)}) nor {files}")


def check_output_file(path: str | Path, flag: str, force: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """``path`` as a file to write, or one line saying why not: it is one of the command's ``inputs``
    (always refused: writing it would lose them), a folder, under a file, or an existing file without
    ``force``."""
    path = Path(path)
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise UserError(f"{flag} {path} is also an input of this command; writing it would lose that input: "
                        f"give another file")
    if path.is_dir():
        raise UserError(f"{flag} {path}: it is a folder; give a file name")
    check_output_folder(path.parent, flag)
    if path.exists() and not force:
        raise UserError(f"{flag} {path} exists; give another file name, or pass --force to replace it")
    return path


def first_few(items: Sequence, n: int, total: int | None = None) -> str:
    """``a, b, c and 4 more``: the first ``n`` of ``items``; ``total``, when ``items`` holds only the
    first few of them."""
    total = len(items) if total is None else total
    return ", ".join(map(str, items[:n])) + (f" and {total - n} more" if total > n else "")


def refuse_nonempty(out: Path, flag: str, force: bool, advice: str) -> Path:
    """``out`` (checked by ``check_output_folder``) unless it is a folder that already holds files and
    ``force`` is not given: then one line listing a few of them, followed by ``advice``."""
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not force:
        raise UserError(f"{flag} {out}: the folder is not empty ({first_few(held, 4)}); {advice}")
    return out


def check_output_folder(path: str | Path, flag: str) -> Path:
    """``path`` as a folder to write into, or one line saying why it cannot be: it, or a folder on the
    way to it, is a file (the OS says "File exists" or "Not a directory", about another path)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "it" if p == path else f"{p}"
                raise UserError(f"{flag} {path}: {where} is a file, not a folder; give a folder")
            break
    return path
