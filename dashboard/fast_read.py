"""Read the trials of an Optuna RDB study fast enough for a 5,000-trial dashboard.

Optuna's public ``get_all_trials`` builds each trial through the SQLAlchemy ORM: an mbnas trial has
about 15 attribute rows, so 5,000 trials are ~85,000 ORM objects and ~3.5 s of CPU before the first
frame. ``read_trials_sql`` reads the same rows with four SQLAlchemy Core SELECTs on Optuna's own
table definitions and value conversions (~0.5 s), and ``read_trials_api`` reads them through the
public API; both return the same ``TrialRow`` list (a test compares them on a real study).

The fast path runs only on a database at a schema revision it was written for
(``KNOWN_REVISIONS``, checked with the public ``RDBStorage.get_current_version``); any other
revision, storage kind or error falls back to the public API.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from optuna.storages._rdb import models as optuna_tables  # Optuna's table definitions and conversions

# Optuna's alembic revision of the RDB schema this reader knows (Optuna 3.2 to 5.x)
KNOWN_REVISIONS = frozenset({"v3.2.0.a"})
_CONSTRAINTS_PREFIX = "constraints"  # optuna.study._constrained_optimization._CONSTRAINTS_KEY


@dataclass(frozen=True)
class TrialRow:
    """What the dashboard needs of one trial."""

    number: int
    state: str  # TrialState name
    values: tuple[float, ...] | None
    user_attrs: dict[str, Any]
    constraints: dict[str, float] = field(default_factory=dict)
    datetime_complete: dt.datetime | None = None  # naive local time, as Optuna's FrozenTrial gives it


def read_trials_api(storage, study_id: int) -> list[TrialRow]:
    """Through Optuna's public storage API (any storage kind)."""
    return [TrialRow(t.number, t.state.name, None if t.values is None else tuple(t.values), dict(t.user_attrs),
                     dict(t.constraints), t.datetime_complete)
            for t in storage.get_all_trials(study_id, deepcopy=False)]


def fast_path_available(rdb) -> bool:
    if rdb is None:
        return False
    try:
        return rdb.get_current_version() in KNOWN_REVISIONS
    except Exception:  # an old schema without alembic, a lost connection ...
        return False


def read_trials_sql(rdb, study_id: int) -> list[TrialRow]:
    """Four Core SELECTs on Optuna's tables of ``rdb`` (an ``optuna.storages.RDBStorage``)."""
    trials_t = optuna_tables.TrialModel.__table__
    values_t = optuna_tables.TrialValueModel.__table__
    user_t = optuna_tables.TrialUserAttributeModel.__table__
    system_t = optuna_tables.TrialSystemAttributeModel.__table__
    in_study = sa.select(trials_t.c.trial_id).where(trials_t.c.study_id == study_id)
    with rdb.engine.connect() as conn:
        trials = conn.execute(sa.select(trials_t.c.trial_id, trials_t.c.number, trials_t.c.state,
                                        trials_t.c.datetime_complete)
                              .where(trials_t.c.study_id == study_id)).all()
        values = conn.execute(sa.select(values_t.c.trial_id, values_t.c.objective, values_t.c.value,
                                        values_t.c.value_type).where(values_t.c.trial_id.in_(in_study))).all()
        users = conn.execute(sa.select(user_t.c.trial_id, user_t.c.key, user_t.c.value_json)
                             .where(user_t.c.trial_id.in_(in_study))).all()
        constraints = conn.execute(sa.select(system_t.c.trial_id, system_t.c.key, system_t.c.value_json)
                                   .where(system_t.c.trial_id.in_(in_study))
                                   .where(system_t.c.key.like(_CONSTRAINTS_PREFIX + "%"))).all()

    vals: dict[int, dict[int, float]] = {}
    for tid, objective, value, vtype in values:
        vals.setdefault(tid, {})[objective] = optuna_tables.TrialValueModel.stored_repr_to_value(value, vtype)
    attrs: dict[int, dict[str, Any]] = {}
    for tid, key, value_json in users:
        attrs.setdefault(tid, {})[key] = json.loads(value_json)
    cons: dict[int, dict[str, float]] = {}
    for tid, key, value_json in constraints:
        value = json.loads(value_json)
        if key == _CONSTRAINTS_PREFIX:  # old format: one list
            cons.setdefault(tid, {}).update({str(i): c for i, c in enumerate(value)})
        elif key.startswith(_CONSTRAINTS_PREFIX + ":"):
            cons.setdefault(tid, {})[key[len(_CONSTRAINTS_PREFIX) + 1:]] = value
    rows = []
    for tid, number, state, complete in sorted(trials, key=lambda r: r[1]):
        v = vals.get(tid)
        rows.append(TrialRow(number, state.name, None if not v else tuple(v[i] for i in sorted(v)),
                             attrs.get(tid, {}), cons.get(tid, {}), _local(complete)))
    return rows


def trial_states(rdb, study_id: int) -> list[tuple[int, str]]:
    """(trial id, state) of every trial: the cheap fingerprint the dashboard refreshes on."""
    t = optuna_tables.TrialModel.__table__
    with rdb.engine.connect() as conn:
        return [(tid, s.name) for tid, s in conn.execute(sa.select(t.c.trial_id, t.c.state)
                                                          .where(t.c.study_id == study_id))]


def _local(utc: dt.datetime | None) -> dt.datetime | None:
    """Optuna stores naive UTC and hands out naive local time (``TrialModel.datetime_complete``)."""
    if utc is None:
        return None
    return utc.replace(tzinfo=dt.timezone.utc).astimezone().replace(tzinfo=None)
