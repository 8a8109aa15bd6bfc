"""``mbnas search``: the multi-objective architecture search (score up, predicted latency down)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from nas.cli.data_options import add_corpus, add_task_csv, data_settings
from nas.cli.numbers import factor, positive_float, seed
from nas.device import CANDIDATE_DEVICE_HELP, PRECISION_HELP, PRECISIONS
from nas.distill.settings import DEFAULT_SCORE, OBJECTIVES, SCORES, STRATEGIES
from nas.search import SearchConfig, run_search
from nas.search.defaults import (
    BACKENDS, DEFAULT_OBJECTIVE, DEFAULT_PROFILE, DEFAULT_SAMPLER, DEFAULT_SPACE, DEFAULT_STORAGE, DEFAULT_STRATEGY,
    DEFAULT_TRIALS, SAMPLER_HELP, SAMPLERS,
)
from nas.search.early_stop import EarlyStopRule
from nas.search.local_workers import WORKER_FLAG, default_threads
from nas.search.progress import outcome_line, pareto_table
from search_spaces.errors import UserError


def _key_value(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)

    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search the space: maximise the score, minimise predicted latency (resumable)",
        description="Multi-objective search: each trial samples a candidate, predicts its latency on the device "
                    "profile (rejecting it before training when over --latency-budget-ms), distils it from the "
                    "space's teacher and scores it. Results go to an Optuna study; rerunning the same command "
                    "resumes it (a trial whose worker was killed is marked interrupted and its candidate retried once).")
    p.add_argument("--space", default=DEFAULT_SPACE, help=f"built-in space name or YAML file (default {DEFAULT_SPACE})")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY,
                   help=f"knowledge transfer: {', '.join(STRATEGIES)} (none: no teacher; default {DEFAULT_STRATEGY}); "
                        f"or 'search' to search over them as one more dimension")
    p.add_argument("--objective", default=DEFAULT_OBJECTIVE, choices=OBJECTIVES,
                   help=f"mlm = a task-agnostic score on held-out text (--score); downstream = held-out accuracy on "
                        f"the labelled sentences after a short fine-tune (default {DEFAULT_OBJECTIVE})")
    p.add_argument("--score", choices=SCORES,
                   help=f"task-agnostic score of --objective mlm (default {DEFAULT_SCORE}; README 'Scores' says how "
                        "well each ranks candidates like a ground truth); part of the study's identity")
    p.add_argument("--device-profile", default=DEFAULT_PROFILE, metavar="PROFILE",
                   help=f"latency predictor (default {DEFAULT_PROFILE}; 'mbnas latency devices' lists them)")
    p.add_argument("--latency-budget-ms", type=float, metavar="MS",
                   help="constraint: candidates predicted slower are rejected before training, with the reason")
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS, help=SAMPLER_HELP)
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"trials that used training the study should hold: complete, stopped early or failed "
                        f"(default {DEFAULT_TRIALS}); a rerun adds only the missing ones. Rejected and interrupted trials cost no "
                        "(finished) training and do not count")
    p.add_argument("--timeout", type=positive_float, metavar="SECONDS", help="start no new trial after this long")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"Optuna storage (default {DEFAULT_STORAGE}, the dashboard's default too); "
                        f"postgresql://... lets several machines share one study")
    p.add_argument("--study", metavar="NAME", help="study name (default <space>-<strategy>-<objective>)")
    p.add_argument("--backend", default=BACKENDS[0], choices=BACKENDS,
                   help="optuna: trials one after another in this process (default); ray: Ray Tune with "
                        "Optuna's searcher, one trial per worker, results in the same storage")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="join a running Ray cluster (e.g. 127.0.0.1:6379); default: start a local one whose temp "
                        "dir lives in the run dir")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per trial (default: all cores; with other jobs on the machine, 1 "
                        "is often faster)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="N", help="Ray: CPUs per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=float, metavar="N",
                   help="Ray: GPUs per trial (default 1 with --device cuda, else 0)")
    p.add_argument("--seed", type=seed, default=0, help="sampler and training seed (default 0)")
    p.add_argument("--device", default="cpu",
                   help=f"where candidates are trained: {CANDIDATE_DEVICE_HELP}; with --jobs N and cuda, worker k "
                        f"trains on GPU k mod the GPU count")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help=PRECISION_HELP.replace("(scores", "(the study records it; scores"))
    p.add_argument("--teacher", metavar="DIR", help="teacher folder (default: the cached teacher of the space)")
    p.add_argument("--run-dir", metavar="DIR",
                   help="where trained students are kept (default: next to the SQLite file, else runs/<study>)")
    p.add_argument("--no-early-stop", action="store_true",
                   help="train every candidate to the end (no per-layer early stopping)")
    p.add_argument("--early-stop-factor", type=factor, default=None, metavar="X",
                   help=f"stop a candidate whose transfer loss at a layer is over X times that of "
                        f">= {EarlyStopRule().min_peers} completed trials that are no slower (default {EarlyStopRule().factor:g})")
    p.add_argument("--distill-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="override a distillation setting (repeatable), e.g. lr=1e-3")
    add_corpus(p, "every candidate's transfer batches and held-out scores (part of the study's identity)")
    add_task_csv(p)
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="optuna backend: N worker processes on this machine share the study, each with "
                        "cores/N torch threads unless --threads says otherwise (default 1). On a CPU, one "
                        "process per core trains more candidates per hour than one process on all cores")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(WORKER_FLAG, type=int, default=0, help=argparse.SUPPRESS)  # set by --jobs for its workers
    p.set_defaults(func=cmd_search)


def cmd_search(args) -> int:
    import optuna

    from transformers.utils import logging as hf_logging

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and the summary say it all
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar per trial

    if args.no_early_stop and args.early_stop_factor is not None:
        raise UserError("--early-stop-factor with --no-early-stop: there is no early stopping to tune; give one of "
                        "them")
    threads, worker_argv = args.threads, None
    if args.jobs > 1:
        threads = threads or default_threads(args.jobs)
        # the same command line; argparse keeps the last of a repeated option
        worker_argv = [sys.executable, "-m", "nas", *args.argv, "--jobs", "1", "--quiet", "--threads", str(threads)]

    cfg = SearchConfig(
        space=args.space, strategy=args.strategy, objective=args.objective, device_profile=args.device_profile,
        latency_budget_ms=args.latency_budget_ms, sampler=args.sampler, trials=args.trials, timeout=args.timeout,
        storage=args.storage, study=args.study, backend=args.backend, ray_address=args.ray_address, seed=args.seed,
        device=args.device, precision=args.precision, teacher=args.teacher, run_dir=args.run_dir,
        early_stop=None if args.no_early_stop else EarlyStopRule(factor=args.early_stop_factor or 1.5),
        distill_options=dict(args.distill_option), data=data_settings(args), score=args.score, threads=threads,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, progress=not args.quiet,
        jobs=args.jobs, worker_argv=worker_argv, worker_index=args.worker_index,
    )
    res = run_search(cfg)
    if args.worker_index:
        return 0  # worker 0 prints the result
    s, meta = res.summary, res.meta
    print(f"\nstudy '{res.study_name}' in {res.storage}: {outcome_line(s)}")
    for line in lost_lines(res):
        print(line)
    print(f"hypervolume {s.hypervolume:.5g} ({meta.score_name} x ms, reference point: {meta.score_name} "
          f"{meta.reference_point[0]:g}, {meta.reference_point[1]:.3g} ms)")
    if s.front:
        print(f"Pareto front ({len(s.front)} of {s.counts.get('complete', 0)} completed trials):")
        print(pareto_table(s, meta))
    else:
        print("no completed trial yet: no Pareto front")
    print("\nopen the dashboard:\n  mbnas dashboard --storage " + shlex.quote(res.storage)
          + " --study " + shlex.quote(res.study_name))
    if s.front:  # nothing to export before a trial completes
        print("export a model:\n  mbnas export --storage " + shlex.quote(res.storage) + " --study "
              + shlex.quote(res.study_name) + " --pick knee --out " + shlex.quote(f"export/{res.study_name}-knee"))
    if res.lost and s.trained < args.trials:  # a fault cost trials (a full space or --timeout is not one)
        print(f"mbnas search: the study holds {s.trained} trained trials of the {args.trials} asked "
              f"({outcome_line(s)}); run the same command again to go on", file=sys.stderr)
        return 1
    return 0


def lost_lines(res) -> list[str]:
    """'1 worker lost (pid 123, signal 9, SIGKILL); its trial 4 retried as 7' for a search's lost workers."""
    if not res.lost:
        return []
    retries = {v.retry_of: v.number for v in res.summary.views if v.retry_of is not None}
    parts = []
    for w in res.lost:
        done = "; ".join(f"its trial {n} " + (f"retried as {retries[n]}" if n in retries else "not retried yet")
                         for n in w.trials) or "no trial of its was found running"
        parts.append(f"pid {w.pid}, {w.how}): {done}")
    return [f"{len(res.lost)} worker{'s' * (len(res.lost) > 1)} lost (" + "; (".join(parts)]
