"""The embedded backend: trials run one after another in this process, through Optuna's ask/tell.

Ask/tell rather than ``study.optimize``: a trial rejected over the latency budget costs no training
and must not use up one of ``--trials``; a trial that fails must be told with its reason; and the
loop re-reads the study before each trial, so several processes on one shared database (PostgreSQL)
together stop at ``--trials`` and each one marks trials of dead workers as interrupted.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from optuna.trial import TrialState

from nas.records import settle_score_meta
from nas.search.liveness import Liveness, fresh_session, next_retry, recover_interrupted
from nas.search.objective import (
    ErrorStreak, Outcome, completed_curves, finish_trial, plan_trial, space_exhausted, train_plan,
)
from nas.search.outcomes import INTERRUPTED, REJECTED, RETRY_OF_ATTR, counts_toward_budget
from nas.search.progress import ProgressBar, record_hypervolume, summarize
from nas.search.samplers import make_sampler, process_seed
from search_spaces.errors import UserError

MAX_REJECTED_IN_A_ROW = 200  # over budget or repeats: a search that can't proceed (tiny space, tight budget)


def _slot(study, number: int) -> int:
    """1-based position of trial ``number`` among the trials that use a training slot. Workers that
    ask at the same moment agree on it, so exactly the ones within ``--trials`` go on."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number <= number and (t.number == number or counts_toward_budget(t)))


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while a stopping process marks its trial interrupted: a second
    signal (a terminal's Ctrl-C reaches every ``--jobs`` worker, and the search then stops them
    too) must not cut that write short and leave the trial RUNNING. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, handler)


def run_optuna(prep, log: Callable[[str], None] = print) -> None:
    cfg, study, ctx = prep.config, prep.study, prep.ctx
    meta = prep.meta
    study.sampler = make_sampler(cfg.sampler, process_seed(cfg.seed, study, cfg.shared))
    deadline = time.time() + cfg.timeout if cfg.timeout else None
    summary = summarize(study, meta)
    bar = ProgressBar(cfg.trials, summary.trained, enabled=cfg.progress)
    liveness = Liveness(recover=lambda: recover_interrupted(study, prep.storage))
    rejected_in_row, errors = 0, ErrorStreak()
    threads = torch.get_num_threads()  # train_plan sets ctx.threads; give the caller's setting back
    try:
        while True:
            recover_interrupted(study, prep.storage)
            summary = summarize(study, meta)
            bar.update(summary)
            if summary.trained + summary.counts.get("running", 0) >= cfg.trials:
                break
            if deadline is not None and time.time() >= deadline:
                log(f"--timeout {cfg.timeout:g} s reached: no new trials")
                break
            exhausted = space_exhausted(study, ctx)
            if exhausted:
                log(exhausted)
                break
            retry = next_retry(study)
            if retry is not None:  # trial N was interrupted: its candidate is tried again
                study.enqueue_trial(retry.params, user_attrs=retry.user_attrs)
            trial = study.ask()
            liveness.claim(trial)
            if RETRY_OF_ATTR in trial.user_attrs:
                log(f"trial {trial.number} retries trial {trial.user_attrs[RETRY_OF_ATTR]}, which was interrupted")
            if _slot(study, trial.number) > cfg.trials:
                # another worker took the last slot between our count and our ask
                liveness.release(trial)
                trial.set_user_attr("mbnas.failure", f"{REJECTED}not needed: the study already holds {cfg.trials} "
                                                     f"trials (another worker took the last one)")
                study.tell(trial, state=TrialState.PRUNED)
                break
            try:
                plan = plan_trial(trial, ctx)
                if plan.rejected:
                    liveness.release(trial)
                    finish_trial(study, trial, plan, None)
                    rejected_in_row += 1
                    if rejected_in_row >= MAX_REJECTED_IN_A_ROW:
                        raise UserError(f"{rejected_in_row} candidates in a row were rejected, the last: "
                                        f"{plan.rejected}; raise --latency-budget-ms or widen the space "
                                        f"(it may hold fewer candidates than --trials)")
                    continue
                rejected_in_row = 0
                bar.update(summary, f"trial {trial.number} {plan.candidate.label}")

                so_far: list[float] = []

                def on_layer(layer: int, loss: float, t=trial, s=summary, so_far=so_far) -> None:
                    so_far.append(float(loss))
                    t.set_user_attr("mbnas.layer_losses", list(so_far))  # live, for the dashboard
                    bar.update(s, f"trial {t.number} layer {layer} loss {loss:.4g}")

                outcome: Outcome = train_plan(plan, ctx, completed_curves(study), on_layer=on_layer)
            except BaseException as exc:
                # Ctrl-C or a bug outside training: leave the trial marked, never RUNNING forever
                liveness.release(trial)
                why = (str(exc) or "stopped by the user") if isinstance(exc, KeyboardInterrupt) \
                    else f"{type(exc).__name__}: {exc}"
                with signals_held():
                    for _ in range(3):  # a signal that landed inside a storage write can leave its session unusable
                        try:
                            if trial.number not in [t.number for t in study.get_trials(
                                    deepcopy=False, states=(TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE))]:
                                trial.set_user_attr("mbnas.failure", f"{INTERRUPTED}{why}")
                                study.tell(trial, state=TrialState.FAIL)
                            break
                        except Exception:
                            fresh_session(prep.storage)
                raise
            liveness.release(trial)
            finish_trial(study, trial, plan, outcome)
            if outcome.kind == "complete":
                meta = settle_score_meta(study, meta, outcome)
            if outcome.kind == "failed":
                log(f"trial {trial.number} ({plan.candidate.label}) failed: {outcome.failure}")
            if errors.add(outcome):
                raise errors.error()
            record_hypervolume(study, summarize(study, meta))
    finally:
        torch.set_num_threads(threads)
        liveness.close()
        bar.update(summarize(study, meta))
        bar.close()
