"""``mbnas dashboard``: the Streamlit Pareto dashboard on a study storage."""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

from nas.search.defaults import DEFAULT_STORAGE
from nas.search.storage import open_storage, sqlite_path, study_names
from search_spaces.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard", help="browse a search: Pareto front, trials, latency by device profile, export",
        description="Run the Streamlit dashboard on an Optuna study storage (read only). It binds "
                    "127.0.0.1 unless --host says otherwise, runs headless and refreshes while a search runs.")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"Optuna storage the search writes (default {DEFAULT_STORAGE}, relative to the "
                        f"current directory)")
    p.add_argument("--study", default=None, metavar="S", help="study to open first (default: the newest)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the dashboard to the network)")
    p.add_argument("--port", type=int, default=8501, metavar="P", help="port (default 8501)")
    p.add_argument("--refresh", type=float, default=15.0, metavar="SECONDS",
                   help="re-read the storage this often while a page is open, to follow a running search "
                        "(default 15; 0 turns it off)")
    p.set_defaults(func=cmd_dashboard)


def streamlit_command(storage: str, study: str | None, host: str, port: int, refresh: float = 15.0) -> list[str]:
    """The ``streamlit run`` command line for the app (absolute SQLite paths, so cwd does not matter)."""
    path = sqlite_path(storage)
    if path is not None and not path.is_absolute():
        _, sep, query = storage.partition("?")
        storage = f"sqlite:///{path.resolve()}{sep}{query}"
    # the app's file, found without importing the dashboard package (nothing below it imports it);
    # also right from a stale editable install
    app = (Path(importlib.util.find_spec("dashboard").origin).parent / "app.py").resolve()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app),
           "--server.address", host, "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "minimal",
           "--logger.level", "error",  # the server's info lines ("Uvicorn server started on ...") are not news
           "--", "--storage", storage, "--refresh", str(refresh)]
    if study:
        cmd += ["--study", study]
    return cmd


def _missing_study(url: str, study: str) -> str | None:
    """A note when ``--study`` is not (yet) in the storage: a typo, or a search still to start. The
    server starts either way (it follows the storage and shows the study once a search creates it)."""
    try:
        names = study_names(open_storage(url, read_only=True))
    except UserError as exc:
        return f"note: {exc}"
    if study in names:
        return None
    there = f"studies there: {', '.join(names)}; showing '{names[0]}' until it exists" if names else "no studies yet"
    return f"note: no study '{study}' in {url} ({there})"


def _check_port_free(host: str, port: int) -> None:
    """One line before the URL is announced, not Streamlit's "Port N is not available" after it (and
    the announced URL would reach whatever holds the port: another dashboard, say)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            s.bind(addr)
        except OSError as exc:
            raise UserError(f"--port {port}: {host}:{port} is not available ({exc.strerror}; another dashboard?); "
                            f"pass another --port") from None


def cmd_dashboard(args) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.refresh < 0:
        raise UserError(f"--refresh must be >= 0 seconds (0: off), got {args.refresh:g}")

    _check_port_free(args.host, args.port)
    cmd = streamlit_command(args.storage, args.study, args.host, args.port, args.refresh)
    url = cmd[cmd.index("--storage") + 1]  # absolute, as the app gets it
    path = sqlite_path(args.storage)
    if path is not None and not path.is_file():
        print(f"note: {path} does not exist yet; the dashboard shows the study once a search writes it",
              file=sys.stderr)
    elif args.study:
        note = _missing_study(url, args.study)
        if note:
            print(note, file=sys.stderr)
    print(f"mbnas dashboard: http://{args.host}:{args.port}  (storage {url})",
          file=sys.stderr, flush=True)
    if os.name == "posix":  # become the server: signals reach it directly, no orphan on kill
        os.execv(cmd[0], cmd)
    return subprocess.call(cmd)  # pragma: no cover - non-POSIX
