"""Naming a built-in file (a search space, a device profile) or the user's own by path; checking a
folder to write into."""

from __future__ import annotations

from pathlib import Path

from nas.errors import UserError


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
    files = f"a {'/'.join(suffixes)} file" if suffixes else "an existing file"
    raise UserError(f"'{name_or_path}' is neither a built-in {kind} ({', '.join(names)}) nor {files}")


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
