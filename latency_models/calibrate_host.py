"""``mbnas latency calibrate-host``: this machine's own latency profile in one command, in a time budget.

Plan, export, time, fit (the steps of ``calibrate_host``):

* **plan** (``design``): a fixed, designed set of architectures in priority order. MobileBERT at the
  paper shape first (every ratio is taken to it), then the fit rows and the held-out rows spread
  evenly (the mobilebert and demo spaces at 2-4 blocks, BERT- and IB-BERT-like shapes, norm x
  activation quartets, a few deep models), then the paper-shape held-out models. Held-out rows are
  never fitted; they are what the reported error is measured on.
* **export** (``export_all``): litert-torch, ``jobs`` processes at once, each file written under a
  temporary name and renamed when whole, kept in ``keep_dir`` (default ``$MBNAS_CACHE/tflite/...``)
  and reused by the next run. A model whose export would not end before the export deadline is
  skipped (its time is estimated from the blocks per second seen so far), so a short budget fits
  on fewer models rather than overrunning.
* **time** (``measure.measure_round_robin``): every exported model together, interleaved over
  rounds, as many as the budget left allows (up to ``rounds``), after the exports have stopped (a
  neighbour's load drifts over all models alike). The noise floor of the same run is the difference
  between the medians of the even and the odd rounds of each model.
* **fit**: one cost per op feature (``fit.fit_op_profile``) when there are at least two fit rows a
  feature; fewer (a short ``--minutes``) scale the built-in host profile's op classes instead
  (``calibrate.calibrate_scaled``). Reported: held-out error, held-out latency ratios to MobileBERT
  timed in the same rounds, and the noise floor, against the aim (``AIM_SHARE``).

The timings are kept as a measurement CSV beside the profile (``latency calibrate`` refits from it).
"""

from __future__ import annotations

import multiprocessing
import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from latency_models.calibrate import calibrate_scaled, conditions_from_rows, data_entry, scale_groups, transfer_shape
from latency_models.dataset import (COLUMNS, MEASURE_COLUMNS, RETIME_COLUMNS, append_row, bert_like, block_like,
                                    row_dict, spread, tflite_name, with_layers)
from latency_models.features import FEATURES
from latency_models.fit import error_stats, fit_op_profile, row_label
from latency_models.host import fingerprint_key, this_cpu
from latency_models.measure import measure_round_robin, runtime_versions
from latency_models.profile import BUILTIN_HOST, DeviceProfile, load_profile
from search_spaces import load_space
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.files import cache_dir
from search_spaces.references import REFERENCES

if TYPE_CHECKING:
    from latency_models.measure import Exporter, Measurement

ANCHOR = "mobilebert"  # ratios are taken to the paper's MobileBERT, timed in the same rounds
# the aim: >= 90% of held-out architectures within 10% of their measured latency, and >= 90% of
# their latency ratios to MobileBERT within 10% (``ErrorStats.within_10``)
AIM_SHARE = 0.90
# kept from the export phase for timing and fitting: 10 rounds of the 76 models of ``design`` took 60 s
# on an AMD EPYC core; timing then goes on, round after round, until FIT_RESERVE_S before the end
TIMING_RESERVE_S = 90.0
FIT_RESERVE_S = 15.0
# export seconds ~ EXPORT_BASE_S + EXPORT_S_PER_BLOCK x blocks until exports here say otherwise
# (litert-torch on a 2-core machine next to other work: 2-4 blocks 10-12 s, MobileBERT's 24 blocks 67 s)
EXPORT_BASE_S, EXPORT_S_PER_BLOCK = 6.0, 2.5


@dataclass(frozen=True)
class DesignPoint:
    """One architecture of the plan: ``role`` is ``fit`` or ``heldout``; ``source`` says where it came from."""

    candidate: Candidate
    source: str
    role: str


@dataclass(frozen=True)
class HostCalibrationConfig:
    """minutes: the whole run, exports included; threads: interpreter threads timed; jobs: export
    processes; rounds x runs: interleaved timing (rounds: the most, as many as the time left
    allows); keep_dir: exported models (reused across runs)."""

    minutes: float = 15.0
    threads: int = 1
    jobs: int = 2
    rounds: int = 40  # the most; fewer when the budget runs out (2 at least)
    runs: int = 10
    keep_dir: Path | None = None
    name: str = ""


@dataclass
class HostCalibration:
    """What a run did and measured (``calibrate_host``'s named output).

    profile: the fitted profile (``error`` holds held-out, ratio and noise figures); csv: its timings;
    exported / reused / skipped / failed: labels of models exported now, found in ``keep_dir``, left
    out for the time budget, failed to export; rounds: interleaved timing rounds run; heldout / ratio /
    noise: error statistics (dicts of ``fit.ErrorStats``; ``noise``: the noise floor); seconds: per
    phase; aim_met: both aims at once.
    """

    profile: DeviceProfile
    csv: Path
    exported: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    heldout: dict[str, Any] | None = None
    ratio: dict[str, Any] | None = None
    noise: dict[str, Any] | None = None
    method: str = ""
    rounds: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    aim_met: bool = False

    def report(self) -> list[str]:
        """The run in a few lines (the CLI prints them)."""
        s = self.seconds
        out = [(f"models: {len(self.exported)} exported now, {len(self.reused)} reused, {len(self.skipped)} left out "
                f"for time, {len(self.failed)} failed; {s.get('export', 0):.0f} s export, {s.get('time', 0):.0f} s "
                f"timing ({self.rounds} interleaved rounds), {s.get('total', 0):.0f} s in all"),
               f"fit: {self.method}"]
        if self.heldout:
            h = self.heldout
            out.append(f"held-out latency: {100 * h['within_10']:.0f}% within 10% ({h['n']} architectures never "
                       f"fitted), median |error| {h['median_abs']:.1f}%, worst {h['worst']:+.1f}% ({h['worst_label']})")
        if self.ratio:
            r = self.ratio
            out.append(f"held-out ratio to {r['anchor']}: {100 * r['within_10']:.0f}% within 10% ({r['n']} "
                       f"architectures), median |error| {r['median_abs']:.1f}%, worst {r['worst']:+.1f}% "
                       f"({r['worst_label']})")
        else:
            out.append(f"held-out ratios: not measured ({ANCHOR}, the plan's first model, was not timed in this run)")
        if self.noise:
            n = self.noise
            out.append(f"noise floor (even vs odd rounds of the same models): median {n['median_abs_pct']:.1f}%, "
                       f"p90 {n['p90_abs_pct']:.1f}% over {n['models']} models")
        out.append(f"aim ({100 * AIM_SHARE:.0f}% of held-out latencies and of their ratios within 10%): "
                   + ("met" if self.aim_met else "NOT met"))
        return out


# ------------------------------------------------------------------------------------------------
def design(seed: int = 0) -> list[DesignPoint]:
    """The designed architectures, in the order they are exported (see the module doc)."""
    mb, demo = load_space("mobilebert"), load_space("demo")
    rng = random.Random(1000 + seed)
    fit: list[tuple[Candidate, str]] = []
    fit += [(c, "space:mobilebert layers 2-4") for c in with_layers(mb.sample(24, 301 + seed), [2, 3, 4], 301 + seed)]
    fit += [(c, "space:demo layers 2-4") for c in with_layers(demo.sample(12, 302 + seed), [2, 3, 4], 302 + seed)]
    # 10 and 7 (4 and 3 at first: a fresh run's worst held-out row, +20%, was a BERT-like shape)
    fit += [(bert_like(rng), "bert-like") for _ in range(10)]
    fit += [(block_like(rng), "block-like") for _ in range(7)]
    for space, layers, s in ((mb, [3], 303 + seed), (demo, [3], 304 + seed)):  # LayerNorm and GELU apart
        c = with_layers(space.sample(1, s), layers, s)[0]
        fit += [(c.replace(norm=nm, act=a), f"space:{space.name} norm x act quartet")
                for nm in ("no_norm", "layer_norm") for a in ("relu", "gelu")]
    fit += [(c, "space:mobilebert layers 8-12") for c in with_layers(mb.sample(2, 305 + seed), [8, 12], 305 + seed)]
    held: list[tuple[Candidate, str]] = []
    held += [(c, "space:mobilebert layers 2-4") for c in with_layers(mb.sample(8, 311 + seed), [2, 3, 4], 311 + seed)]
    held += [(c, "space:demo") for c in demo.sample(8, 312 + seed)]
    held += [(bert_like(rng), "bert-like"), (block_like(rng), "block-like")]
    small = spread([DesignPoint(c, s, "fit") for c, s in fit] + [DesignPoint(c, s, "heldout") for c, s in held],
                   key=lambda p: (p.source, p.role))
    deep = [DesignPoint(REFERENCES["mobilebert-tiny"].candidate, "reference:mobilebert-tiny", "heldout"),
            DesignPoint(REFERENCES["mobilebert-no-opt"].candidate, "reference:mobilebert-no-opt", "fit")]
    deep += [DesignPoint(c, "space:mobilebert paper shape", "heldout") for c in mb.sample(2, 313 + seed)]
    points = [DesignPoint(REFERENCES[ANCHOR].candidate, f"reference:{ANCHOR}", "heldout")]
    seen = {tflite_name(points[0].candidate)}
    for p in small + deep:
        if tflite_name(p.candidate) not in seen:  # a shape drawn twice is timed once, in its first role
            seen.add(tflite_name(p.candidate))
            points.append(p)
    return points


def default_keep_dir() -> Path:
    """Exported models are the same on every CPU: kept per litert-torch version, reused by every run."""
    return cache_dir() / "tflite" / f"litert-torch-{runtime_versions()['litert-torch']}"


# ------------------------------------------------------------------------------------------------
def _export_one(export: Exporter, c: Candidate, path: Path) -> float:
    """Runs in an export process: write ``path`` whole or not at all; seconds taken."""
    t0 = time.perf_counter()
    part = path.with_name(path.name + ".part")
    export(c, part, None)
    part.replace(path)
    return time.perf_counter() - t0


@dataclass
class _ExportRate:
    """Export seconds ~ base + per_block x blocks, the per-block cost re-estimated from finished exports."""

    base: float = EXPORT_BASE_S
    per_block: float = EXPORT_S_PER_BLOCK
    seen: list[tuple[int, float]] = field(default_factory=list)

    def add(self, blocks: int, seconds: float) -> None:
        self.seen.append((blocks, seconds))
        self.per_block = max(0.5, float(np.median([max(s - self.base, 0.5) / b for b, s in self.seen])))

    def estimate(self, c: Candidate) -> float:
        return self.base + self.per_block * c.num_layers


def export_all(points: Sequence[DesignPoint], keep_dir: Path, export: Exporter, deadline: float, jobs: int = 2,
               log: Callable[[str], None] = print) -> tuple[list[str], list[str], list[str], list[str]]:
    """Export every point's model not yet in ``keep_dir``, ``jobs`` at a time, in order, starting only
    exports that the estimate says end before ``deadline`` (``time.monotonic``). Returns the
    labels exported, reused, skipped for time and failed (with the reason)."""
    keep_dir.mkdir(parents=True, exist_ok=True)
    exported, reused, skipped, failed = [], [], [], []
    todo = []
    for p in points:
        if (keep_dir / tflite_name(p.candidate)).is_file():
            reused.append(row_label(p.candidate))
        else:
            todo.append(p)
    rate = _ExportRate()
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding LiteRT or torch threads
    running: dict[Future, DesignPoint] = {}
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx) as pool:
        queue = list(todo)
        while queue or running:
            while queue and len(running) < max(1, jobs):
                p = queue.pop(0)
                left = deadline - time.monotonic()
                if rate.estimate(p.candidate) > left:
                    skipped.append(row_label(p.candidate))
                    continue
                running[pool.submit(_export_one, export, p.candidate, keep_dir / tflite_name(p.candidate))] = p
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                p = running.pop(fut)
                label = row_label(p.candidate)
                try:
                    s = fut.result()
                except BrokenProcessPool:  # an export process was killed (out of memory?): no more exports
                    failed.append(f"{label}: its export process died (killed, out of memory?)")
                    log(f"export FAILED {label}: its export process died; the models exported so far are timed")
                    skipped += [row_label(q.candidate) for q in queue]
                    queue.clear()
                    continue
                except Exception as exc:  # a conversion failure is data: the model is left out, said
                    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                    failed.append(f"{label}: {type(exc).__name__}: {msg}")
                    log(f"export FAILED {label}: {msg}")
                    continue
                rate.add(p.candidate.num_layers, s)
                exported.append(label)
                log(f"exported {label} in {s:.0f} s ({len(exported) + len(reused)} of {len(points)} ready)")
    return exported, reused, skipped, failed


# ------------------------------------------------------------------------------------------------
def noise_floor(ms: Sequence[Measurement]) -> dict[str, Any] | None:
    """The same run's timing noise: per model, the median of its even rounds against its odd rounds."""
    d = [m.halves_pct for m in ms if m.halves_pct is not None]
    if not d:
        return None
    a = np.abs(np.array(d))
    return {"models": len(d), "median_abs_pct": round(float(np.median(a)), 2),
            "p90_abs_pct": round(float(np.quantile(a, 0.9)), 2), "max_abs_pct": round(float(a.max()), 2),
            "what": "per model, median of the even rounds against the odd rounds of the same run"}


def ratio_errors(prof: DeviceProfile, cands: Sequence[Candidate], y: np.ndarray, anchor: int) -> dict[str, Any]:
    """Errors of predicted latency ratios to the ``anchor``-th model (predicted / measured ratio - 1)."""
    pred = prof.estimate_many(cands)
    others = [i for i in range(len(cands)) if i != anchor]
    pr = pred[others] / pred[anchor]
    mr = y[others] / y[anchor]
    return error_stats(pr, mr, [row_label(cands[i]) for i in others]).to_dict()


def fit_profile(name: str, fit_c: Sequence[Candidate], fit_y: np.ndarray, held_c: Sequence[Candidate],
                held_y: np.ndarray, conditions: dict[str, Any], data: list[dict[str, Any]],
                method: str = "auto") -> tuple[DeviceProfile, str]:
    """``op-level`` (a cost per feature) or ``scaled`` (a factor per op class over the built-in host
    profile); ``auto``: op-level from two fit rows a feature on. Held-out error in ``error``."""
    if method == "auto":
        method = "op-level" if len(fit_y) >= 2 * len(FEATURES) else "scaled"
    cpu = this_cpu()
    device = f"host CPU ({cpu.model}), {conditions.get('threads')} thread(s) ({cpu.arch})"
    if method == "op-level":
        prof = fit_op_profile(fit_c, fit_y, name=name, device=device, conditions=conditions, data=data,
                              heldout=(held_c, held_y) if len(held_c) else None,
                              description=f"mbnas latency calibrate-host: op-level fit on {len(fit_y)} architectures "
                                          f"timed on this CPU, error on {len(held_y)} others")
        return prof, f"op-level, one cost per feature on {len(fit_y)} architectures"
    base = transfer_shape(load_profile(BUILTIN_HOST))
    groups = scale_groups(fit_c)
    prof = calibrate_scaled(base, fit_c, fit_y, name=name, device=device, conditions=conditions, groups=groups,
                            data=data, description=f"mbnas latency calibrate-host: a factor per op class over "
                                                   f"{BUILTIN_HOST}'s shape, {len(fit_y)} architectures timed here")
    if len(held_c):
        h = error_stats(prof.estimate_many(held_c), held_y, [row_label(c) for c in held_c])
        prof.error["heldout"] = h.to_dict()
        prof.error["summary"] = (f"held-out error: {100 * h.within_10:.0f}% within 10%, MAPE {h.mape:.1f}%, worst "
                                 f"{h.worst:+.1f}% on {h.n} architectures (calibrate-host, scaled)")
    return prof, (f"{len(groups)} factor(s) over {BUILTIN_HOST}'s op costs ({', '.join(groups)}) on {len(fit_y)} "
                  f"architectures (too few for a cost per feature: {2 * len(FEATURES)})")


def calibrate_host(out: Path, export: Exporter, config: HostCalibrationConfig = HostCalibrationConfig(),
                   points: Sequence[DesignPoint] | None = None, log: Callable[[str], None] = print,
                   method: str = "auto") -> HostCalibration:
    """Plan, export, time and fit (module doc); writes ``out`` (the profile) and ``out`` with the
    suffix ``.csv`` (the timings). ``points``: another plan (tests use a small one)."""
    t0 = time.monotonic()
    deadline = t0 + 60 * config.minutes
    points = list(points or design())
    keep = Path(config.keep_dir) if config.keep_dir else default_keep_dir()
    reserve = min(TIMING_RESERVE_S, 0.3 * 60 * config.minutes)
    exported, reused, skipped, failed = export_all(points, keep, export, deadline - reserve, jobs=config.jobs, log=log)
    t_export = time.monotonic() - t0
    ready = [p for p in points if (keep / tflite_name(p.candidate)).is_file()]
    if not any(p.role == "fit" for p in ready):
        raise UserError(f"calibrate-host: no model to fit was exported within --minutes {config.minutes:g}; give more "
                        f"minutes (exports are kept in {keep} and reused)")
    log(f"timing {len(ready)} models together, up to {config.rounds} interleaved rounds in the time left")
    t1 = time.monotonic()
    # the budget left after the exports goes to more rounds (less noise), keeping FIT_RESERVE_S to fit
    ms = measure_round_robin([keep / tflite_name(p.candidate) for p in ready], threads=config.threads,
                             rounds=config.rounds, runs=config.runs,
                             vocab_sizes=[p.candidate.vocab_size for p in ready], log=None,
                             until=deadline - FIT_RESERVE_S)
    t_time = time.monotonic() - t1
    csv = out.with_suffix(".csv")
    if csv.exists():
        csv.unlink()  # this run's timings only (the caller refused an existing file without --force)
    for p, m in zip(ready, ms):
        d = row_dict(p.candidate, config.threads, f"calibrate-host {p.role}: {p.source}")
        d.update(status="ok", **{k: v for k, v in m.to_dict().items() if k in MEASURE_COLUMNS + RETIME_COLUMNS})
        append_row(csv, d, columns=COLUMNS + RETIME_COLUMNS)
    fit_i = [i for i, p in enumerate(ready) if p.role == "fit"]
    held_i = [i for i, p in enumerate(ready) if p.role == "heldout"]
    y = np.array([m.latency_ms for m in ms])
    cands = [p.candidate for p in ready]
    cond = conditions_from_rows([csv])
    cond["cpu"] = this_cpu().to_dict()
    name = config.name or f"host-{fingerprint_key(this_cpu())}"
    prof, how = fit_profile(name, [cands[i] for i in fit_i], y[fit_i], [cands[i] for i in held_i], y[held_i], cond,
                            [data_entry(csv, len(ready))], method=method)
    res = HostCalibration(profile=prof, csv=csv, exported=exported, reused=reused, skipped=skipped, failed=failed,
                          method=how, noise=noise_floor(ms), heldout=prof.error.get("heldout"), rounds=ms[0].rounds)
    # ratios are to the plan's first model (MobileBERT in ``design``), when it was timed and held out
    anchor = next((j for j, i in enumerate(held_i) if ready[i] is points[0]), None)
    if anchor is not None and len(held_i) > 1:
        res.ratio = {"anchor": row_label(points[0].candidate),
                     **ratio_errors(prof, [cands[i] for i in held_i], y[held_i], anchor)}
        prof.error["ratio_to_anchor"] = res.ratio
        prof.error["summary"] += (f"; ratios to {res.ratio['anchor']}: {100 * res.ratio['within_10']:.0f}% within 10% "
                                  f"({res.ratio['n']} held-out)")
    if res.noise:
        prof.error["measurement_noise"] = res.noise
    res.aim_met = bool(res.heldout and res.ratio and res.heldout["within_10"] >= AIM_SHARE
                       and res.ratio["within_10"] >= AIM_SHARE)
    prof.fit["calibrate_host"] = {"minutes": config.minutes, "rounds": ms[0].rounds, "runs": config.runs,
                                  "skipped_for_time": len(skipped), "failed": failed}
    prof.save(out)
    res.seconds = {"export": round(t_export, 1), "time": round(t_time, 1),
                   "total": round(time.monotonic() - t0, 1)}
    return res

