"""Drive the dashboard in headless Debian Chromium (docs/FACTS.md section 5): the end-to-end test, the
scale benchmark and the README screenshot share this.

    python -m dashboard.browser --storage URL [--study S] --out docs/dashboard.png

``serve`` runs ``mbnas dashboard`` on a free loopback port; ``chromium_page`` opens a page in
Chromium with a fresh user-data dir through Playwright (the ``test`` extra); ``COUNT_PARETO_POINTS``
counts the points the browser actually drew in the Pareto trace: the SVG ``path.point`` elements of
the trace plotly bound to the name ``Pareto set (N)`` (``dashboard.figures.PARETO_TRACE``).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
_PARETO_TRACE = """
  const paretoTrace = () => {
    for (const g of document.querySelectorAll('.js-plotly-plot .scatterlayer g.trace')) {
      const cd = g.__data__;
      if (cd && cd[0] && cd[0].trace && String(cd[0].trace.name).startsWith('Pareto set')) return g;
    }
    return null;
  };"""
COUNT_PARETO_POINTS = "() => {" + _PARETO_TRACE + """
  const g = paretoTrace();
  return g ? g.querySelectorAll('path.point').length : 0;
}"""
FIRST_PARETO_POINT_BOX = "() => {" + _PARETO_TRACE + """
  const r = paretoTrace().querySelector('path.point').getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def absolute_sqlite(url: str) -> str:
    """``sqlite:///runs/x.db`` (relative to this directory) -> ``sqlite:////abs/runs/x.db``; others unchanged."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url[len("sqlite:///"):]).resolve())
    return url


@contextlib.contextmanager
def serve(storage: str, study: str | None, workdir: Path, refresh: float = 15, timeout: float = 120) -> Iterator[str]:
    """``mbnas dashboard`` on a free loopback port; yields its base URL and stops it afterwards."""
    port = free_port()
    storage = absolute_sqlite(storage)  # the server runs in ``workdir``, not here
    exe = Path(sys.executable).with_name("mbnas")
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "nas"]) + [
        "dashboard", "--storage", storage, "--port", str(port), "--refresh", str(refresh)]
    if study:
        cmd += ["--study", study]
    log_path = Path(workdir) / f"dashboard-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the dashboard did not start: " + log_path.read_text()[-2000:])
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()  # mbnas exec'd into the server: this is the server's pid
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def chromium_page(workdir: Path, width: int = 1500, height: int = 1000):
    """A page of headless Debian Chromium with a fresh user-data dir under ``workdir``."""
    from search_spaces.errors import require

    sync_api = require("playwright.sync_api", "test")
    if not Path(CHROMIUM).exists():
        from search_spaces.errors import UserError

        raise UserError(f"no Chromium at {CHROMIUM}: apt-get install chromium (make install does)")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": width, "height": height})
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def wait_for_pareto(page, expected: int | None = None, timeout_s: float = 120) -> int:
    """Wait until the Pareto trace is drawn (with ``expected`` points, if given); return the count."""
    cond = f"({COUNT_PARETO_POINTS})() " + (f"== {expected}" if expected is not None else "> 0")
    page.wait_for_function(cond, timeout=timeout_s * 1000)
    return page.evaluate(COUNT_PARETO_POINTS)


def _check_drawable(storage: str, study: str | None) -> None:
    """The study shown (``study``, else the newest) has points to draw; else one line, not a browser
    waiting two minutes for a Pareto trace that an empty study never gets."""
    from dashboard.data import load_study, open_storage, study_names
    from search_spaces.errors import UserError

    st = open_storage(absolute_sqlite(storage))
    names = study_names(st)
    name = study or (names[0] if names else None)
    if name is None:
        raise UserError(f"no study in {storage} to draw")
    try:
        load_study(st, name)  # no such study, or nothing finished: one line each
    except UserError as exc:
        others = [n for n in names if n != name]
        raise UserError(f"{str(exc).split('; this page')[0]}; nothing to draw" + (
            f" (other studies: {', '.join(others)}; give --study)" if others else "")) from None


def screenshot(storage: str, study: str | None, out: Path, width: int = 1500, height: int = 1000) -> int:
    """Save a screenshot of the Pareto view; returns the number of Pareto points drawn."""
    _check_drawable(storage, study)
    with tempfile.TemporaryDirectory() as tmp, serve(storage, study, Path(tmp)) as base, \
            chromium_page(Path(tmp), width, height) as page:
        page.goto(base)
        n = wait_for_pareto(page)
        page.mouse.move(0, 0)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out))
    return n


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboard.browser", description="screenshot the dashboard")
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", default=None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--width", type=int, default=1500)
    ap.add_argument("--height", type=int, default=1000)
    a = ap.parse_args()
    from search_spaces.errors import UserError

    try:
        n = screenshot(a.storage, a.study, a.out, a.width, a.height)
    except UserError as exc:
        print(f"python -m dashboard.browser: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {a.out} ({n} Pareto points drawn)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
