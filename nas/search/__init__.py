"""The architecture search: settings in, an Optuna study out.

Public surface:
    SearchConfig, run_search      run a search (``mbnas search``) with the optuna or ray backend
    EarlyStopRule                 the per-layer early-stopping rule (``early_stop``)
    outcome_of, OUTCOMES          what became of a trial: complete/rejected/stopped/failed/interrupted/running
    summarize                     Pareto front and hypervolume of a study (``progress``)
    open_storage, load_study      the storage the dashboard and export read

Modules: ``objective`` (one trial), ``optuna_backend`` / ``ray_backend`` (who runs the trials),
``study`` (storage, samplers, liveness, resume), ``early_stop``, ``progress``, ``runner``.
"""

from nas.search.defaults import SAMPLERS
from nas.search.early_stop import EarlyStopRule
from nas.search.outcomes import OUTCOMES, outcome_of
from nas.search.progress import Summary, summarize
from nas.search.runner import SearchConfig, SearchResult, default_study_name, run_search
from nas.search.storage import load_study, open_storage

__all__ = [
    "EarlyStopRule", "OUTCOMES", "SAMPLERS", "SearchConfig", "SearchResult", "Summary",
    "default_study_name", "load_study", "open_storage", "outcome_of", "run_search", "summarize",
]  # fmt: skip
