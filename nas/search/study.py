"""Creating a study, or resuming one after checking that this run's settings are the ones it was made
with (the settings that define what its numbers mean)."""

from __future__ import annotations

import warnings
from typing import Any

from nas.distill.settings import RECIPE_MADE_BY
from nas.records import DIRECTIONS, StudyMeta
from search_spaces.errors import UserError

# Settings that define what a study's numbers mean: a rerun must use the same ones.
# what a study measures: resuming it with any of these changed would mix incomparable trials
_DEFINING = ("strategy", "objective", "score_name", "latency_profile", "latency_budget_ms", "teacher_hash",
             "distill_options", "user_data")


def _space_diff(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """How the space a study was made with differs from the one given now, in words (None: same).
    (A study made before budgets lived in space files is a recipe-1 study, refused before this.)"""
    if old == new:
        return None
    if old.get("name") != new.get("name"):
        return f"space {old.get('name')!r} (now {new.get('name')!r})"
    path, a, b = [], old, new
    while isinstance(a, dict) and isinstance(b, dict):  # down to the first field that differs
        key = next(k for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k))
        path.append(str(key))
        a, b = a.get(key), b.get(key)
    return f"space {old.get('name')!r} whose {'.'.join(path)} was {a!r} (now {b!r})"


def create_or_check(storage, name: str, meta: StudyMeta, sampler=None):
    """Create the study with ``meta``, or load it and check that ``meta`` agrees with what it holds.

    Several workers may run this at once on one storage (the same command on two machines): the
    settings go in as one attribute, and every worker checks what the storage holds afterwards, so
    two workers started with different settings cannot both go on.
    """
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS),
                                sampler=sampler, load_if_exists=True)
    old = StudyMeta.from_study(study)
    if old is None:
        meta.save(study)
        old = StudyMeta.from_study(study)  # study user attributes are read from the storage, not cached
    if study.metric_names is None:  # Optuna's own plots and optuna-dashboard label the axes with them

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([old.score_name, f"latency_ms (predicted, {old.latency_profile})"])
    was, now = old.recipe or 1, meta.recipe or 1  # None: made before recipes were versioned (recipe 1)
    if was != now:
        made, this = (RECIPE_MADE_BY.get(v, f"recipe {v}") for v in (was, now))
        raise UserError(f"study '{name}' was trained with training recipe {was} ({made}); this {this} "
                        f"trains with recipe {now} (README 'Strategies'), and the two score candidates "
                        f"differently: resume it with {made}, or pass --study NEW_NAME to start another")
    diffs = [f"{k} {getattr(old, k)!r} (now {getattr(meta, k)!r})" for k in _DEFINING
             if getattr(old, k) != getattr(meta, k)]
    space_diff = _space_diff(old.space, meta.space)
    if space_diff:
        diffs.insert(0, space_diff)
    if old.seed is not None and old.seed != meta.seed:  # None: an older study
        # --seed seeds every candidate's training as well as the sampler: one candidate moved 0.05
        # in block_fidelity between two seeds, more than many candidates differ
        diffs.append(f"seed {old.seed} (now {meta.seed}; the seed also seeds every candidate's training)")
    if old.precision and meta.precision and old.precision != meta.precision:  # None: not known (yet)
        diffs.append(f"training in {old.precision} (this run would train in {meta.precision}; give --precision "
                     f"{old.precision} to resume it: bf16 and fp32 training score candidates differently)")
    if old.latency_profile_hash and old.latency_profile_hash != meta.latency_profile_hash:  # None: an older study
        diffs.append(f"latency profile {old.latency_profile!r} of content {old.latency_profile_hash} (now "
                     f"{meta.latency_profile_hash}: the profile changed since)")
    if diffs:
        raise UserError(f"study '{name}' was created with {diffs[0]}; rerun with its settings to resume it, "
                        f"or pass --study NEW_NAME to start another")
    return study, old
