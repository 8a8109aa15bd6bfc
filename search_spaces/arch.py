"""Resolve an ARCH argument: a reference name, a candidate JSON file, or a transformers
MobileBERT ``config.json`` (or a directory holding one)."""

from __future__ import annotations

import json
from pathlib import Path

from search_spaces.candidate import SCHEMA, Candidate
from search_spaces.errors import UserError
from search_spaces.files import read_user_text
from search_spaces.references import REFERENCES


def load_json(path: Path) -> object:
    """A user's JSON file; unreadable or malformed is one ``UserError`` line naming where."""
    text = read_user_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # msg is e.g. "Invalid control character at": the place follows
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg.removesuffix(' at')})") from None


def resolve_arch(arch: str, seq_len: int = 128) -> Candidate:
    """``arch`` -> Candidate. ``seq_len`` applies to transformers configs, which do not carry one."""
    if arch in REFERENCES:
        return REFERENCES[arch].candidate
    path = Path(arch)
    if path.is_dir():
        # an export folder: its architecture.json carries the sequence length config.json lacks, so
        # 'arch info' counts FLOPs at the length the export's own numbers were taken at
        found = [path / f for f in ("architecture.json", "config.json") if (path / f).is_file()]
        if not found:
            raise UserError(f"{arch}: a folder without config.json; give a candidate JSON file, or a folder a "
                            f"MobileBERT model was saved to")
        path = found[0]
    if not path.exists():
        raise UserError(
            f"'{arch}' is neither a reference architecture ({', '.join(REFERENCES)}) nor an existing file"
        )
    data = load_json(path)
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        return Candidate.from_dict(data, where=str(path))
    if isinstance(data, dict) and isinstance(data.get("candidate"), dict):  # architecture.json from export
        return Candidate.from_dict(data["candidate"], where=f"{path}: candidate")
    if isinstance(data, dict) and "model_type" in data:
        try:
            return Candidate.from_hf_config(data, seq_len=seq_len, name=path.parent.name or None)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    raise UserError(f"{path}: not a candidate JSON (schema {SCHEMA}) nor a transformers MobileBERT config.json")
