"""How fast the dashboard renders a large study (issue 6: 5,000 trials in under 3 s).

    python benchmarks/dashboard_scale.py [--trials 5000] [--db PATH] [--no-browser]

Writes a study of N trials the way a search does (``dashboard.synthetic``: real demo-space
candidates and counts, synthetic scores; writing it is not timed), then times, each on a cold and a
warm cache:

- the data layer: reading the storage, Pareto set, hypervolume and its history, best under budget;
- the Pareto figure: building it and serialising it to JSON (what Streamlit sends);
- the whole app script under ``streamlit.testing.v1.AppTest`` (first run = first visitor of a fresh
  server: reads the storage; second run = any later rerun or visitor: cached);
- the browser (Debian Chromium, headless, via Playwright): from navigation until the Pareto set's
  points are drawn, on a fresh server and then on a warm one; checks that the number of points drawn
  equals Optuna's ``study.best_trials``.

Prints a markdown table and writes it to ``benchmarks/results/dashboard_scale.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.table import markdown_table  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
STUDY = "scale"


def timed(fn, repeat: int = 1):
    """(result, median wall seconds, median CPU seconds of this process)."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return out, statistics.median(walls), statistics.median(cpus)


def ensure_study(db: Path, n: int) -> str:
    url = f"sqlite:///{db}"
    if db.exists():
        import optuna

        s = optuna.load_study(study_name=STUDY, storage=url)
        if len(s.get_trials(deepcopy=False)) >= n:
            return url
        db.unlink()
    from dashboard.synthetic import first_installed_profile, write_synthetic_study

    t = time.perf_counter()
    write_synthetic_study(url, STUDY, n, n_running=3, n_failed=20, seed=0, profile=first_installed_profile())
    print(f"wrote {n} trials to {db} in {time.perf_counter() - t:.0f} s (not part of the timings)", flush=True)
    return url


def bench_data(url: str) -> list[list]:
    import numpy as np

    from dashboard import data, figures

    rows = []
    storage, w, c = timed(lambda: data.open_storage(url))
    view, w2, c2 = timed(lambda: data.load_study(storage, STUDY, fast=True))
    rows.append(["read storage + records, cold (dashboard.fast_read)", w + w2, c + c2])
    api = data.open_storage(url)
    _, w, c = timed(lambda: data.load_study(api, STUDY, fast=False))
    rows.append(["same through Optuna's get_all_trials, cold (for comparison)", w, c])
    _, w, c = timed(lambda: data.study_fingerprint(storage, STUDY), repeat=5)
    rows.append(["auto-refresh check, nothing changed (fingerprint)", w, c])
    f = view.frame
    s, lat = f["score"].to_numpy(), f["latency_ms"].to_numpy()
    _, w, c = timed(lambda: data.pareto_mask(s, lat), repeat=5)
    rows.append(["Pareto set", w, c])
    _, w, c = timed(lambda: data.hypervolume(s, lat, view.meta.reference_point), repeat=5)
    rows.append(["hypervolume", w, c])
    _, w, c = timed(lambda: data.study_hypervolume_history(view), repeat=5)
    rows.append(["hypervolume history", w, c])
    _, w, c = timed(lambda: data.best_under_budget(f, data.default_budget(view)), repeat=5)
    rows.append(["best under budget", w, c])
    for col in ("params_m", "norm_act"):
        fig, w, c = timed(lambda: figures.pareto_figure(
            f, colour_col=col, colour_label=col, score_label="score", latency=data.recorded_source(view),
            budget_ms=data.default_budget(view), best_number=int(f["number"].iloc[0])), repeat=3)
        js, w2, c2 = timed(fig.to_json, repeat=3)
        rows.append([f"Pareto figure, colour {col} (+ JSON, {len(js) / 1e6:.1f} MB)", w + w2, c + c2])
    rng = np.random.default_rng(0)
    for n in (5_000, 50_000, 500_000):
        a, b = rng.random(n), rng.random(n)
        _, w, c = timed(lambda: data.pareto_mask(a, b), repeat=3)
        rows.append([f"Pareto set of {n:,} random points (O(n log n) check)", w, c])
    return rows


def bench_app(url: str) -> list[list]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.session_state["storage_url"] = url
    _, w, c = timed(at.run)
    assert not at.exception, at.exception
    rows = [["app script, first run (fresh server: reads the storage)", w, c]]
    _, w, c = timed(at.run, repeat=3)
    rows.append(["app script, rerun (cached)", w, c])
    return rows


def bench_browser(url: str, expected: int, screenshot: Path | None) -> list[list]:
    from dashboard.browser import chromium_page, serve, wait_for_pareto

    tmp = Path(tempfile.mkdtemp(prefix="mbnas-bench-"))
    loads = []
    with serve(url, STUDY, tmp) as base, chromium_page(tmp) as page:
        for _ in range(4):  # the first on a fresh server, then warm
            t = time.perf_counter()
            page.goto(base)
            page.wait_for_selector("h1", timeout=300_000)
            t_title = time.perf_counter() - t
            drawn = wait_for_pareto(page, expected, timeout_s=300)
            loads.append((t_title, time.perf_counter() - t))
            assert drawn == expected, (drawn, expected)
        if screenshot is not None:
            page.mouse.move(0, 0)
            page.wait_for_timeout(500)
            page.screenshot(path=str(screenshot))
    warm = loads[1:]
    return [
        ["browser: page title (fresh server)", loads[0][0], None],
        [f"browser: Pareto points drawn, {expected} = study.best_trials (fresh server)", loads[0][1], None],
        ["browser: page title (warm, median of 3)", statistics.median(x[0] for x in warm), None],
        ["browser: Pareto points drawn (warm, median of 3)", statistics.median(x[1] for x in warm), None],
    ]


def versions() -> str:
    from importlib.metadata import version

    chromium = "absent"
    if Path(CHROMIUM).exists():
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    pk = ", ".join(f"{p} {version(p)}" for p in ("streamlit", "plotly", "optuna", "pandas"))
    return f"Python {platform.python_version()}, {pk}; {chromium}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "mbnas-dashboard-scale.db",
                    help="study file, reused when it already holds the trials")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dashboard_scale.md")
    args = ap.parse_args()

    url = ensure_study(args.db, args.trials)
    # the same steps on a 20-trial study: what any study costs (imports, page and plotly bundles)
    small_db = args.db.with_name(args.db.stem + "-20.db")
    small = ensure_study(small_db, 20)
    load_before = os.getloadavg()
    rows = bench_data(url)
    for u, n in ((url, args.trials), (small, 20)):
        rows += [[f"{r[0]} [{n:,} trials]", *r[1:]] for r in bench_app(u)]
    if not args.no_browser and Path(CHROMIUM).exists():
        import optuna

        for u, n in ((url, args.trials), (small, 20)):
            expected = len(optuna.load_study(study_name=STUDY, storage=u).best_trials)
            rows += [[f"{r[0]} [{n:,} trials]", *r[1:]]
                     for r in bench_browser(u, expected, args.screenshot if n == args.trials else None)]
    load_after = os.getloadavg()

    table = markdown_table(["step", "wall s", "CPU s"],
                           [[r[0], round(r[1], 4), "" if r[2] is None else round(r[2], 4)] for r in rows])
    header = (f"# Dashboard at scale: {args.trials:,} trials\n\n"
              f"`python benchmarks/dashboard_scale.py --trials {args.trials}` on {os.cpu_count()} cores "
              f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after: the machine is shared, so "
              f"wall times include waiting for the CPU; CPU s is this process only). {versions()}.\n\n"
              f"Study: {args.trials:,} complete trials (+20 failed, 3 running) of the demo space with real candidates "
              f"and counts and synthetic scores (dashboard.synthetic); the `[20 trials]` rows repeat the app and "
              f"browser steps on a 20-trial study, i.e. what any study costs.\n\n"
              f"Reading: *app script* is the server's work per page (first run = first visitor of a fresh server, "
              f"which reads the storage; rerun = later visits, widget changes and auto-refresh ticks). *browser* is "
              f"Chromium from navigation until the Pareto points are drawn; *fresh server* also pays the server's "
              f"Python imports and Chromium's first load of the Streamlit and plotly bundles (fresh profile).\n\n")
    text = header + table + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
