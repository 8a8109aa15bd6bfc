"""The sampler behind ``--sampler`` (choices and help in ``nas.search.defaults``), the GP with its TPE
fallback, and each process's sampler seed."""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

# Optuna is imported at the top: this module is imported only where a sampler is made (the backends),
# never by the CLI's argument parser, which reads its choices from nas.search.defaults
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from nas.search.defaults import GP_STARTUP_TRIALS, SAMPLERS
from nas.search.liveness import worker_identity
from search_spaces.errors import check_choice


def make_sampler(name: str, seed: int | None, n_objectives: int = 2):
    """The sampler for ``--sampler`` (``SAMPLER_HELP``; benchmarks/results/search_efficiency.md for why gp
    is the default)."""
    check_choice("--sampler", name, SAMPLERS)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        # multivariate: the dimensions interact (FFN width is derived from intra size and ratio);
        # constant_liar: running trials of other workers count as bad, so workers spread out;
        # 4 start-up trials: a 12-trial search must start modelling early (benchmarks/search_efficiency.py)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True, group=False,
                                          constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return gp_with_fallback(seed)
    return optuna.samplers.RandomSampler(seed=seed)  # "random"


class GPWithFallback(BaseSampler):
    """``--sampler gp``: Optuna's GPSampler, with TPE (as ``--sampler tpe``) proposing where the GP cannot.

    Optuna 5's GPSampler (optuna/samplers/_gp/sampler.py) fits only COMPLETE trials: a rejected (over the
    latency budget, a repeat), early-stopped or failed trial never enters its model, so with the same data
    it proposes the same candidate again, which is rejected again: a search that never ends (on the demo
    space with a latency budget it got stuck at 200 rejections in a row in every seed tried). So TPE,
    which learns from pruned and infeasible trials, proposes

    - every trial once the study holds an infeasible one (the budget or the space's constraints rejected
      a candidate): the GP's constraint model only ever sees feasible, trained trials;
    - the next trial after one that ended other than complete (rejected, stopped early, failed).

    Otherwise the GP proposes: expected hypervolume improvement, and, while other workers' trials are
    RUNNING, its batch version (qLogEHVI) over their parameters, so parallel workers spread out. Not
    ``deterministic_objective``: the real score is noisy.
    """

    def __init__(self, seed: int | None) -> None:
        self.gp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=GP_STARTUP_TRIALS)
        # its own seed: with the GP's, TPE's random start-up would redraw the GP's first candidates
        self.tpe = make_sampler("tpe", None if seed is None else (seed + 1) % 2**32)
        self.last_pick = ""  # "gp" | "tpe": who proposed the latest trial's parameters
        self._picks: dict[int, Any] = {}  # trial number -> the sampler proposing it

    def _tpe_now(self, study) -> bool:
        done = study._get_trials(deepcopy=False, use_cache=False,
                                 states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        if any(v > 0 for t in done for v in t.constraints.values()):
            return True
        return bool(done) and max(done, key=lambda t: t.number).state != TrialState.COMPLETE

    def infer_relative_search_space(self, study, trial):
        return self.gp.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        use = self.tpe if self._tpe_now(study) else self.gp
        self.last_pick = "tpe" if use is self.tpe else "gp"
        self._picks = {trial.number: use}  # this process's current trial (one at a time)
        return use.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        use = self._picks.get(trial.number, self.gp)
        return use.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.gp.before_trial(study, trial)
        self.tpe.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.gp.after_trial(study, trial, state, values)
        self.tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.gp.reseed_rng()
        self.tpe.reseed_rng()


def gp_with_fallback(seed: int | None) -> GPWithFallback:
    """``--sampler gp`` (``GPWithFallback``)."""
    return GPWithFallback(seed)


def process_seed(seed: int, study, shared: bool) -> int:
    """The sampler seed of this process: ``seed`` for a fresh study, shifted by the trials already in
    it (a resumed run does not replay the first run's proposals), and by this process's identity on
    a shared database (two workers started at once must not propose the same candidates)."""
    salt = f"{seed}/{len(study.get_trials(deepcopy=False))}"
    if shared:
        salt += f"/{worker_identity()['key']}/{os.getpid()}"
    if salt == f"{seed}/0":
        return seed
    return int.from_bytes(hashlib.sha256(salt.encode()).digest()[:4], "big")
