"""Where a study lives: storage URLs (SQLite, PostgreSQL), opening them for writing (a search) or
reading (export, the dashboard), and finding a study in them. Every backend goes through here, so a
study started with ``--backend optuna`` can be resumed with ``--backend ray`` (or by a second worker on
a shared PostgreSQL), and the dashboard and export read one format."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from nas.search.defaults import DEFAULT_STORAGE
from search_spaces.errors import UserError


def _rdb_storage(optuna, url: str, kwargs: dict[str, Any], tries: int = 5, read_only: bool = False):
    """``RDBStorage(url)``, retried when several processes create a fresh database's schema at once.

    Optuna creates its tables on first use. Two workers (or a worker and the dashboard, or a
    ``--jobs 2`` pair) opening an empty database together race on that: on PostgreSQL one gets an
    ``IntegrityError`` (a duplicate ``pg_type`` row), on SQLite an ``OperationalError`` "table
    studies already exists". Once the other process has created the schema, a retry finds it.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=read_only)
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            lost_race = not isinstance(exc, OperationalError) or "already exists" in str(exc)
            if not lost_race or attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other backends or in-memory)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def check_storage_url(url: str) -> None:
    """A URL SQLAlchemy would misread or fail on with its own words ("Can't load plugin ...") is one
    line with the fix: a SQLite URL short of its three slashes, ``postgres://``, an unknown scheme."""
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else url.split(":", 1)[0]
    if url.startswith("sqlite:") and not url.startswith("sqlite://"):
        raise UserError(f"--storage {url}: a SQLite URL needs three slashes before a relative path and four "
                        f"before an absolute one, e.g. {DEFAULT_STORAGE} or sqlite:////data/mbnas.db")
    if scheme == "postgres":
        raise UserError(f"--storage {url}: SQLAlchemy calls it postgresql://, not postgres://")
    if "://" in url and scheme not in ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql"):
        raise UserError(f"--storage {url}: unknown database '{scheme}'; e.g. {DEFAULT_STORAGE} or "
                        f"postgresql://user@host/db")


def require_sqlite_file(url: str) -> None:
    """Readers (export, the dashboard) refuse a SQLite URL whose file is missing instead of creating
    an empty database there: a typo in ``--storage`` gets one line, not a stray file. An in-memory
    URL is refused too: it would open a new, empty database and show "no study"."""
    path = sqlite_path(url)
    if path is None and url.startswith("sqlite:"):
        raise UserError(f"--storage {url} is an in-memory database, which holds no study to read: give the file "
                        f"'mbnas search' wrote, e.g. {DEFAULT_STORAGE}")
    if path is not None and not path.is_file():
        raise UserError(f"no study storage at {url} (file {path.resolve()} does not exist): run 'mbnas search' "
                        f"first, or pass --storage")
    if path is not None:
        require_sqlite_header(url, path)


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def require_sqlite_header(url: str, path: Path) -> None:
    """A ``--storage`` file that exists but is not an SQLite database (a typo naming another file) is one
    line, not SQLAlchemy's "file is not a database" deep in the first query. An empty file is a new database."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError:
        return  # unreadable: the database driver says why
    if head and head != SQLITE_HEADER:
        raise UserError(f"--storage {url}: {path} is not an SQLite database; give the file 'mbnas search' wrote, "
                        f"e.g. {DEFAULT_STORAGE}")


def engine_url(url: str) -> str:
    """``url`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, while the ``postgres`` extra installs
    psycopg2; without this the README's ``postgresql://user@host/db`` would fail with "driver
    missing" on a complete install. A URL that names its driver (``postgresql+psycopg2://``) is kept.
    """
    scheme, sep, rest = url.partition("://")
    if scheme == "postgresql" and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2{sep}{rest}"
    return url


def open_storage(url: str, *, must_exist: bool = False, read_only: bool = False):
    """An Optuna ``RDBStorage`` for ``url``; a SQLite file's folder is created unless ``must_exist``
    (then a missing SQLite file is a ``UserError``: see ``require_sqlite_file``). ``read_only`` (the
    dashboard, export): must exist, and Optuna's tables are never created in a database without them."""
    import optuna

    kwargs: dict[str, Any] = {}
    check_storage_url(url)
    must_exist = must_exist or read_only
    if must_exist:
        require_sqlite_file(url)
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path is None:  # sqlite:/// or :memory: - nothing would outlive the process
            raise UserError(f"--storage {url} keeps the study in memory: it would be lost when the search "
                            f"ends and could not be resumed, exported or shown; give a file, e.g. "
                            f"{DEFAULT_STORAGE}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--storage {url}: cannot create the folder {path.parent} ({exc.strerror}); "
                            f"give a path you can write to") from None
        if not must_exist:  # require_sqlite_file checked it above
            require_sqlite_header(url, path)
        # writes from the heartbeat thread and a second local process wait instead of failing
        kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith(("postgresql", "mysql")):
        kwargs["pool_pre_ping"] = True
    elif "://" not in url:
        raise UserError(f"--storage {url!r} is not a database URL; e.g. {DEFAULT_STORAGE} or "
                        f"postgresql://user@host/db")
    try:
        return _rdb_storage(optuna, engine_url(url), kwargs, read_only=read_only)
    except ImportError as exc:
        fix = ("pip install psycopg, or use postgresql:// (psycopg2, which 'mobilebert-nas[postgres]' installs)"
               if url.startswith("postgresql+psycopg:") else "pip install 'mobilebert-nas[postgres]' for PostgreSQL")
        raise UserError(f"--storage {url}: database driver missing ({exc}); {fix}") from None
    except Exception as exc:  # sqlalchemy.exc.OperationalError, ArgumentError ...
        raise UserError(f"--storage {url}: cannot open ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0]})") from None


def default_run_dir(storage_url: str, study_name: str) -> Path:
    """Where trained students go: next to a SQLite file, else ``runs/<study>`` under the cwd."""
    path = sqlite_path(storage_url)
    if path is not None:
        return (path.parent / study_name).resolve()
    return (Path("runs") / study_name).resolve()


def study_names(storage) -> list[str]:
    """Names of the studies in ``storage`` (an Optuna storage), newest first."""
    studies = storage.get_all_studies()
    return [s.study_name for s in sorted(studies, key=lambda s: s._study_id, reverse=True)]


def load_study(storage, name: str):
    """An existing study, or a UserError listing the studies the storage holds."""
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise UserError(f"no study '{name}' in the storage (studies there: {known})")
    return optuna.load_study(study_name=name, storage=storage)
