"""Shared by the training benchmarks (recipe, ground truth, proxy validity, strategies): train one
demo candidate in a worker process, and run a list of such runs on several processes, each
finished run appended to a ``RunsFile`` at once (a killed benchmark loses only the runs in flight).

Workers share the teacher's outputs on the transfer stream through files (``run_all``).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_TEACHERS: dict = {}


def teacher_of(space_name: str):
    """(space, teacher), loaded once per process."""
    from nas.teacher import load_teacher
    from search_spaces import load_space

    if space_name not in _TEACHERS:
        space = load_space(space_name)
        _TEACHERS[space_name] = (space, load_teacher(space))
    return _TEACHERS[space_name]


def train_run(spec: dict) -> dict:
    """spec: space, candidate (``Candidate.to_dict``), strategy, seed, overrides (DistillSettings
    fields), threads, and optionally ``downstream`` (fine-tune steps on Rotten Tomatoes). Returns the spec with scores, timings and teacher passes."""
    import torch

    from nas.distill import DistillSettings, distill_candidate
    from nas.distill.teacher_cache import teacher_cache
    from nas.runtime import keep_freed_memory
    from search_spaces.candidate import Candidate
    from search_spaces.ops import count

    keep_freed_memory()  # as mbnas does
    torch.set_num_threads(spec.get("threads", 1))
    space, teacher = teacher_of(spec["space"])
    c = Candidate.from_dict(spec["candidate"])
    s = DistillSettings.for_space(space, strategy=spec["strategy"], seed=spec["seed"], **spec.get("overrides", {}))
    passes0 = teacher_cache(teacher, s).outputs.passes
    cpu0 = time.process_time()
    r = distill_candidate(c, teacher, s)
    out = {**spec, "label": c.label, "scores": dict(r.scores), "data": r.score_data, "precision": r.precision,
           "train_s": r.timings["train"], "seconds": r.seconds, "cpu_s": time.process_time() - cpu0,
           "teacher_passes": teacher_cache(teacher, s).outputs.passes - passes0, "teacher": teacher.hash,
           "params_m": count(c).params_m}
    if spec.get("downstream"):
        from nas.distill.downstream import evaluate_downstream

        t0 = time.time()
        ds = s.replace(objective="downstream", downstream_steps=spec["downstream"])
        out["scores"]["downstream_accuracy"], out["downstream_data"] = evaluate_downstream(r.student, c, ds, teacher.vocab)
        out["downstream_s"] = time.time() - t0
    return out


def _worker(queue) -> None:
    from benchmarks._report import RunsFile
    from nas.distill.stage import Diverged

    while (item := queue.get()) is not None:
        runs_path, code, key, spec = item
        store = RunsFile.appender(runs_path, code)
        t0 = time.time()
        try:
            rec = train_run(spec)
        except Diverged as exc:  # a result (that recipe does not train this candidate), recorded
            rec = {**spec, "failure": f"{type(exc).__name__}: {exc}"}
        store.add(key, rec, lock=True)
        print(f"[{time.strftime('%H:%M:%S')}] {key}: {rec.get('failure') or _brief(rec)} "
              f"({time.time() - t0:.0f} s)", flush=True)


def _brief(rec: dict) -> str:
    s = rec["scores"]
    extra = f", downstream {s['downstream_accuracy']:.4f}" if "downstream_accuracy" in s else ""
    return f"mlm_accuracy {s['mlm_accuracy']:.4f}, heldout_ce {s['heldout_ce']:.4f}{extra}"


def _commit() -> str:
    """The checkout's commit (with ``+changes`` when its tracked files differ from it): which code made a run."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if dirty else "")


def run_all(todo: list[tuple[str, dict]], store, jobs: int) -> None:
    """Run ``todo`` [(key, spec)] into ``store``: ``run_queue`` of one benchmark."""
    run_queue([(store, k, s) for k, s in todo], jobs)


def run_queue(todo: list[tuple], jobs: int) -> None:
    """Run ``todo`` [(store, key, spec)], in its order, on ``jobs`` spawned processes that each take
    the next run when free, each run appended to its own ``RunsFile`` as it finishes. The teacher's outputs go to files (``MBNAS_TEACHER_SPILL_DIR``, default a
    folder of the mbnas cache), so the workers and later runs share them instead of recomputing."""
    import os

    from nas.data.sources import cache_dir

    if not todo:
        return
    os.environ.setdefault("MBNAS_TEACHER_SPILL_DIR", str(cache_dir() / "teacher-outputs"))
    commit = _commit()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for store, key, spec in todo:
        queue.put((str(store.path), store.code, key, {**spec, "commit": commit}))
    procs = [ctx.Process(target=_worker, args=(queue,)) for _ in range(max(1, jobs))]
    for p in procs:
        queue.put(None)
        p.start()
    for p in procs:
        p.join()
    for store in {id(t[0]): t[0] for t in todo}.values():
        store.reload()
