"""Faults under load: a search is sent a random fault every few tens of seconds until it completes.

    python benchmarks/fault_injection.py [--scenarios sqlite postgres] [--space smoke] [--trials 8] [--gap 20 60]

- sqlite: ``mbnas search --jobs 2`` on one SQLite file; faults: kill -9 of a worker, kill -9 of the
  search the user started (its worker runs on), SIGTERM of it. Whenever the search has ended short of
  ``--trials``, the same command is run again, as a user or a scheduler would.
- postgres: two independent ``mbnas search`` processes on a throwaway PostgreSQL server; faults: kill -9
  of a worker, SIGTERM of a worker, an abrupt restart of the server. A worker that ended is started
  again after a few seconds while the study is short of ``--trials``.

Reported per scenario: faults injected, trials asked and delivered (trained: complete, stopped or
failed; a candidate whose worker died twice is failed, "killed its worker twice"), lost (asked -
delivered), stuck RUNNING at the end, duplicated (one candidate trained twice to the end), and the
wall time against the same search without faults. Writes benchmarks/results/fault_injection.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import RESULTS, header, write_result  # noqa: E402

STUDY = "faults"


def _study(storage: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=STUDY, storage=storage)
    except Exception:  # not created yet, or the server is restarting
        return None


def _tally(storage: str) -> dict:
    from nas.records import TrialRecord
    from nas.search import outcome_of

    study = _study(storage)
    trials = study.trials if study is not None else []
    kinds = [outcome_of(t) for t in trials]
    trained = [t for t, k in zip(trials, kinds) if k in ("complete", "stopped", "failed")]
    seen, dup = set(), 0
    for t in trained:
        rec = TrialRecord.from_trial(t)
        key = (rec.strategy, rec.candidate.replace(name=None, mha_ffn_ratio=None)) if rec else t.number
        dup += key in seen
        seen.add(key)
    return {"trained": len(trained), "complete": kinds.count("complete"), "failed": kinds.count("failed"),
            "running": kinds.count("running"), "interrupted": kinds.count("interrupted"),
            "duplicated": dup, "retries": sum("mbnas.retry_of" in t.user_attrs for t in trials)}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _worker_pids(storage: str, exclude: set[int]) -> list[int]:
    """pids of processes training a trial now (from their trials' worker records)."""
    from optuna.trial import TrialState

    from nas.search.liveness import WORKER_ATTR

    study = _study(storage)
    if study is None:
        return []
    pids = {t.user_attrs.get(WORKER_ATTR, {}).get("pid") for t in study.get_trials(states=(TrialState.RUNNING,))}
    return [p for p in pids if p and p not in exclude]


def run_scenario(kind: str, args, faults_on: bool, rng: random.Random, log) -> dict:
    from benchmarks._postgres import ThrowawayPostgres

    work = Path(tempfile.mkdtemp(prefix=f"mbnas-faults-{kind}-"))
    server = ThrowawayPostgres().__enter__() if kind == "postgres" else None
    storage = server.url if server else f"sqlite:///{work / 'faults.db'}"
    base = [sys.executable, "-m", "nas", "search", "--space", args.space, "--trials", str(args.trials),
            "--storage", storage, "--study", STUDY, "--threads", "1", "--quiet", "--seed", "0",
            "--run-dir", str(work / "runs"), *args.search_arg]
    cmd = base + (["--jobs", "2"] if kind == "sqlite" else [])
    n_procs = 1 if kind == "sqlite" else 2
    procs: list[subprocess.Popen | None] = [None] * n_procs
    groups: set[int] = set()
    faults: dict[str, int] = {}
    restarts = 0
    t0 = time.time()
    next_fault = t0 + rng.uniform(*args.gap)
    ended_at: list[float | None] = [None] * n_procs
    try:
        while True:
            tally = _tally(storage)
            done = tally["trained"] >= args.trials
            for i, p in enumerate(procs):
                if p is not None and p.poll() is not None and ended_at[i] is None:
                    ended_at[i] = time.time()
                if p is not None and p.returncode == 2:  # bad input, not a fault: say what it said
                    raise RuntimeError(f"{kind}: the search refused to run: {(work / 'stderr').read_text()[-800:]}")
                if (p is None or p.poll() is not None) and not done and (
                        ended_at[i] is None or time.time() - ended_at[i] > 3):
                    restarts += p is not None
                    with open(work / "stderr", "w") as err:
                        procs[i] = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=err,
                                                    start_new_session=True)
                    groups.add(procs[i].pid)
                    ended_at[i] = None
            if done and not any(_group_alive(g) for g in groups):
                break
            if time.time() > t0 + args.limit:
                raise RuntimeError(f"{kind}: not finished within {args.limit} s: {tally}")
            if faults_on and not done and time.time() >= next_fault:
                mine = {p.pid for p in procs if p is not None}
                options = ["kill -9 of a worker"] + (["kill -9 of the search", "SIGTERM of the search"]
                                                     if kind == "sqlite" else ["SIGTERM of a worker",
                                                                               "PostgreSQL restart"])
                fault = rng.choice(options)
                if fault == "PostgreSQL restart":
                    server.restart()
                else:
                    if fault == "kill -9 of a worker":
                        cands = _worker_pids(storage, exclude=mine if kind == "sqlite" else set())
                    else:
                        cands = [p.pid for p in procs if p is not None and p.poll() is None]
                    if not cands:
                        time.sleep(1)
                        continue
                    try:
                        os.kill(rng.choice(cands), signal.SIGTERM if fault.startswith("SIGTERM") else signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                faults[fault] = faults.get(fault, 0) + 1
                log(f"  {kind} +{time.time() - t0:.0f} s: {fault} ({tally})")
                next_fault = time.time() + rng.uniform(*args.gap)
            time.sleep(0.5)
        wall = time.time() - t0
        tally = _tally(storage)
    finally:
        for g in groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if server is not None:
            server.__exit__(None, None, None)
    return {**tally, "faults": faults, "wall_s": wall, "restarts": restarts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"])
    ap.add_argument("--space", default="smoke")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--gap", type=float, nargs=2, default=(20.0, 60.0), metavar=("MIN_S", "MAX_S"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=float, default=3600, help="give up on a scenario after this many seconds")
    ap.add_argument("--search-arg", action="append", default=[], metavar="ARG",
                    help="one more argument of every search (repeat), e.g. --search-arg=--distill-option "
                         "--search-arg=layer_steps=60 for longer smoke trials")
    args = ap.parse_args()
    # the space's teacher, trained once (reused if present): a search without one refuses to start
    subprocess.run([sys.executable, "-m", "nas", "teacher", "train", "--space", args.space], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    rows = []
    for kind in args.scenarios:
        clean = run_scenario(kind, args, False, random.Random(args.seed), print)
        print(f"{kind} without faults: {clean}", flush=True)
        hit = run_scenario(kind, args, True, random.Random(args.seed), print)
        print(f"{kind} with faults: {hit}", flush=True)
        n = sum(hit["faults"].values())
        what = ", ".join(f"{v} {k}" for k, v in sorted(hit["faults"].items()))
        rows.append(f"| {kind} | {n} ({what}) | {args.trials} / {hit['trained']} ({hit['complete']} complete, "
                    f"{hit['failed']} failed) | {args.trials - hit['trained']} | "
                    f"{hit['running']} | {hit['duplicated']} | {hit['interrupted']} / {hit['retries']} | "
                    f"{hit['restarts']} | {clean['wall_s']:.0f} -> {hit['wall_s']:.0f} s "
                    f"({hit['wall_s'] / clean['wall_s'] - 1:+.0%}) |")
    extra = f" (search arguments: `{' '.join(args.search_arg)}`)" if args.search_arg else ""
    heading = f"## Space `{args.space}`, a fault every {args.gap[0]:g}-{args.gap[1]:g} s"
    section = (f"{heading}\n\n- {header_lines()}\n\n"
               f"Space `{args.space}`{extra}, {args.trials} trials, a random fault every {args.gap[0]:g}-{args.gap[1]:g} s "
               f"(seed {args.seed}) until the study holds them; a search (sqlite) or worker (postgres) that ended short "
               f"of them is started again. One torch thread a process.\n\n| scenario | faults | trials asked / "
               f"delivered | lost | stuck RUNNING | duplicated | interrupted / retried | restarts | wall: no faults -> "
               f"faults |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    write_result("fault_injection", "Fault injection: searches that lose processes and their database",
                 merge_sections(RESULTS / "fault_injection.md", heading, section))
    return 0


def header_lines() -> str:
    """This run's date, machine and command, on one line (each section of the results file has its own)."""
    return "; ".join(line[2:] for line in header("").splitlines() if line.startswith("- "))


def merge_sections(path: Path, heading: str, section: str) -> str:
    """The body of the results file: its other sections (one per space and fault gap) kept, this one
    replaced or added."""
    kept = []
    if path.exists():
        body = path.read_text().split("\n## ", 1)
        if len(body) == 2:
            kept = ["## " + s.strip() + "\n" for s in body[1].split("\n## ") if not ("## " + s).startswith(heading)]
    return "\n".join(kept + [section])


if __name__ == "__main__":
    sys.exit(main())
