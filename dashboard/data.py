"""What the dashboard shows, computed apart from plotting so that it can be tested.

Reads the Optuna storage a search writes (``nas.records``: ``StudyMeta`` per study, ``TrialRecord``
per trial; objectives ``(score maximise, latency_ms minimise)``) into one pandas frame, and
computes on it:

- the Pareto set of (score, latency) and the exact 2-D hypervolume, both O(n log n), by ``nas.pareto``
  (as the search and export compute them), and the hypervolume's history trial by trial (incremental);
- the best candidate under a latency budget;
- latency re-scored under another device profile (``latency_models``), without retraining.

Every function takes and returns plain data; ``dashboard.app`` only draws. Problems a user can cause
(missing file, unknown study, a study not written by ``mbnas search``) raise ``UserError`` with the
one line the dashboard shows instead of a traceback.
"""

from __future__ import annotations

import bisect
import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import optuna
import pandas as pd

from latency_models import load_profile
from nas.export import architecture_record
from nas.pareto import hypervolume as hv, pareto_front
from nas.records import StudyMeta, TrialRecord
from nas.search.defaults import DEFAULT_STORAGE
from nas.search.storage import open_storage as storage_of, study_names as names_in
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.ops import OP_CLASSES, count
from search_spaces.references import REFERENCES

# study profile option in the device-profile switch: the latencies recorded by the search itself
RECORDED = "recorded"
# the reference architectures drawn on the Pareto plot (search_spaces.references names); the study's own
# teacher is added from its space
REFERENCE_NAMES = ("mobilebert", "mobilebert-tiny", "ib-bert-large", "bert-base")

# colour-by choices: label -> frame column
COLOUR_BY = {
    "parameters (M)": "params_m",
    "norm / activation": "norm_act",
    "strategy": "strategy",
    "attention": "attention",
    "stacked FFNs": "num_ffn",
    "intra-block width": "intra_size",
}


# ------------------------------------------------------------------------------------------------
# storage
@dataclass(frozen=True)
class Storage:
    """An opened study storage.

    optuna: Optuna's storage (with its in-memory cache of finished trials).
    rdb: the ``RDBStorage`` under it, for the fast read (``dashboard.fast_read``); ``None`` if unusable.
    """

    url: str
    optuna: Any
    rdb: Any = None


def open_storage(url: str) -> Storage:
    """Open ``url`` for reading (``nas.search.storage.open_storage``, read only: it never creates a
    missing SQLite file or Optuna's tables).

    Keep the result for the life of the app: Optuna caches finished trials in it, and the fast
    reader reuses its engine.
    """
    from dashboard import fast_read

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = storage_of(url, read_only=True)
    return Storage(url, optuna.storages.get_storage(rdb), rdb if fast_read.fast_path_available(rdb) else None)


def study_names(storage: Storage) -> list[str]:
    """Names of the studies in ``storage``, newest first."""
    return names_in(storage.optuna)


def _study_id(storage: Storage, study_name: str) -> int:
    try:
        return storage.optuna.get_study_id_from_name(study_name)
    except KeyError:
        known = study_names(storage)
        raise UserError(f"no study named '{study_name}' in this storage; studies: "
                        f"{', '.join(known) if known else 'none yet (run mbnas search)'}") from None


def study_fingerprint(storage: Storage, study_name: str) -> tuple:
    """Changes whenever a trial is added or changes state: what the dashboard refreshes on."""
    from dashboard import fast_read

    try:
        study_id = storage.optuna.get_study_id_from_name(study_name)
    except KeyError:
        return ()
    if storage.rdb is not None:
        states = fast_read.trial_states(storage.rdb, study_id)
    else:
        states = [(t._trial_id, t.state.name) for t in storage.optuna.get_all_trials(study_id, deepcopy=False)]
    return len(states), hash(tuple(sorted(states)))


@dataclass(frozen=True)
class StudyView:
    """One study as the dashboard sees it.

    frame: one row per complete trial that carries a ``TrialRecord`` (columns: ``FRAME_COLUMNS``),
        in trial-number order; ``pareto`` marks the feasible Pareto set on the recorded latency.
    records: trial number -> ``TrialRecord`` (complete trials only).
    states: Optuna trial state name -> count, over all trials; ``without_record`` counts complete
        trials that hold no record.
    """

    name: str
    meta: StudyMeta
    frame: pd.DataFrame
    records: dict[int, TrialRecord]
    states: dict[str, int] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return self.states.get("RUNNING", 0) + self.states.get("WAITING", 0)

    @property
    def seq_len(self) -> int:
        return int(self.meta.space.get("fixed", {}).get("seq_len", 128))

    @property
    def score_label(self) -> str:
        return f"{self.meta.score_name} ({self.meta.score_data})"


FRAME_COLUMNS = ("number", "score", "latency_ms", "params", "params_m", "flops", "gflops", "strategy", "norm", "act",
                 "norm_act", "attention", "intra_size", "num_ffn", "intermediate_size", "mha_ffn_ratio", "label",
                 "seconds", "datetime_complete", "feasible", "pareto")


def load_study(storage: Storage, study_name: str, fast: bool = True) -> StudyView:
    """Read ``study_name`` into a ``StudyView``; ``UserError`` with a clear line when there is nothing to show.

    ``fast``: read an RDB storage with ``dashboard.fast_read`` (same rows as Optuna's API, ~7x less CPU).
    """
    from dashboard import fast_read

    study_id = _study_id(storage, study_name)
    meta = StudyMeta.from_study(_StudyAttrs(storage.optuna.get_study_user_attrs(study_id)))
    if meta is None:
        raise UserError(f"study '{study_name}' holds no mbnas metadata: it was not written by 'mbnas search'")
    if fast and storage.rdb is not None:
        trials = fast_read.read_trials_sql(storage.rdb, study_id)
    else:
        trials = fast_read.read_trials_api(storage.optuna, study_id)

    states: dict[str, int] = {}
    rows, records = [], {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
        if t.state != "COMPLETE" or t.values is None or len(t.values) != 2:
            continue
        rec = TrialRecord.from_user_attrs(t.user_attrs)
        if rec is None:
            states["without_record"] = states.get("without_record", 0) + 1
            continue
        c = rec.candidate
        records[t.number] = rec
        rows.append((t.number, float(t.values[0]), float(t.values[1]), rec.params, rec.params / 1e6, rec.flops,
                     rec.flops / 1e9, rec.strategy or "unknown", c.norm, c.act, f"{c.norm} / {c.act}", c.attention,
                     c.intra_size, c.num_ffn, c.intermediate_size, c.mha_ffn_ratio, c.label, rec.seconds,
                     t.datetime_complete, all(v <= 0.0 for v in t.constraints.values()), False))
    frame = pd.DataFrame.from_records(rows, columns=FRAME_COLUMNS)
    if frame.empty:
        raise UserError(f"study '{study_name}' has no finished trials yet ({_states_words(states)}); "
                        f"this page refreshes while the search runs")
    frame["datetime_complete"] = pd.to_datetime(frame["datetime_complete"])
    frame = frame.sort_values("number", kind="stable").reset_index(drop=True)
    frame["pareto"] = feasible_pareto(frame)
    return StudyView(name=study_name, meta=meta, frame=frame, records=records, states=states)


class _StudyAttrs:
    """``StudyMeta.from_study`` reads ``.user_attrs``; this lets it read straight from the storage."""

    def __init__(self, user_attrs: dict[str, Any]) -> None:
        self.user_attrs = user_attrs


def _states_words(states: dict[str, int]) -> str:
    if not states:
        return "no trials at all"
    return ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in sorted(states.items()))


# ------------------------------------------------------------------------------------------------
# Pareto set and hypervolume: score maximised, latency minimised
def pareto_mask(score: Sequence[float], latency: Sequence[float]) -> np.ndarray:
    """Non-dominated points as a mask, by ``nas.pareto.pareto_front`` (O(n log n); the search, export
    and the dashboard compute the front the same way). Equal points are all kept, as Optuna does."""
    mask = np.zeros(len(score), dtype=bool)
    mask[[p.index for p in pareto_front(np.asarray(score, dtype=float).tolist(),
                                        np.asarray(latency, dtype=float).tolist())]] = True
    return mask


def feasible_pareto(frame: pd.DataFrame, latency_col: str = "latency_ms") -> np.ndarray:
    """Pareto set among the feasible trials (Optuna's ``study.best_trials``)."""
    mask = np.zeros(len(frame), dtype=bool)
    feas = frame["feasible"].to_numpy(dtype=bool)
    mask[feas] = pareto_mask(frame["score"].to_numpy()[feas], frame[latency_col].to_numpy()[feas])
    return mask


def hypervolume(score: Sequence[float], latency: Sequence[float], reference_point: tuple[float, float]) -> float:
    """Exact area dominated up to ``reference_point`` = (worst score, slowest latency): ``nas.pareto.hypervolume``."""
    return hv(np.asarray(score, dtype=float).tolist(), np.asarray(latency, dtype=float).tolist(), reference_point)


def hypervolume_history(score: Sequence[float], latency: Sequence[float],
                        reference_point: tuple[float, float]) -> np.ndarray:
    """Hypervolume after each point, in the given order; exact and incremental.

    Keeps the front as two ascending lists; a new point adds the area between its score and the
    front's step function from its latency until the front first reaches its score, and removes the
    front points it dominates. Each point is inserted and removed at most once.
    """
    ref_s, ref_l = reference_point
    lat_f: list[float] = []  # front latencies, strictly ascending
    s_f: list[float] = []  # front scores, strictly ascending
    hv, out = 0.0, np.empty(len(score), dtype=float)
    for i, (s, l) in enumerate(zip(map(float, score), map(float, latency))):
        if s > ref_s and l < ref_l:
            j = bisect.bisect_right(lat_f, l)  # front[:j] have latency <= l
            if not (j > 0 and s_f[j - 1] >= s):  # not weakly dominated
                height = s_f[j - 1] if j > 0 else ref_s  # front's score just at l
                start = j - 1 if j > 0 and lat_f[j - 1] == l else j  # equal latency, lower score: dominated
                x, k = l, j
                while k < len(lat_f) and s_f[k] <= s:  # dominated by the new point
                    hv += (lat_f[k] - x) * (s - height)
                    x, height = lat_f[k], s_f[k]
                    k += 1
                hv += ((lat_f[k] if k < len(lat_f) else ref_l) - x) * (s - height)
                lat_f[start:k] = [l]
                s_f[start:k] = [s]
        out[i] = hv
    return out


def study_hypervolume_history(view: StudyView) -> pd.DataFrame:
    """Hypervolume of the feasible trials by trial number, on the study's own profile and reference point."""
    f = view.frame
    feas = f["feasible"].to_numpy(dtype=bool)
    hv = hypervolume_history(np.where(feas, f["score"], -np.inf), f["latency_ms"], view.meta.reference_point)
    return pd.DataFrame({"number": f["number"], "hypervolume": hv, "datetime_complete": f["datetime_complete"]})


# ------------------------------------------------------------------------------------------------
# latency budget
def best_under_budget(frame: pd.DataFrame, budget_ms: float, latency_col: str = "latency_ms") -> pd.Series | None:
    """The feasible trial with the best score whose latency fits ``budget_ms`` (ties: the faster)."""
    fits = frame[frame["feasible"] & (frame[latency_col] <= budget_ms)]
    if fits.empty:
        return None
    return fits.sort_values(["score", latency_col], ascending=[False, True], kind="stable").iloc[0]


def default_budget(view: StudyView) -> float:
    """The study's own budget when it has one, else the median latency of its Pareto set."""
    if view.meta.latency_budget_ms is not None:
        return float(view.meta.latency_budget_ms)
    front = view.frame.loc[view.frame["pareto"], "latency_ms"]
    return float(front.median() if len(front) else view.frame["latency_ms"].median())


# ------------------------------------------------------------------------------------------------
# device profiles (latency_models): optional; without it the recorded latencies are still shown
def profiles_available() -> tuple[list[str], str | None]:
    """(profile names, None) or ([], why the device-profile switch is unavailable)."""
    try:
        from latency_models import list_profiles
    except ImportError as exc:
        return [], f"the latency predictor package 'latency_models' is not available ({exc})"
    return list(list_profiles()), None


def load_latency_profile(name: str):
    return load_profile(name)


@dataclass(frozen=True)
class LatencySource:
    """Where the latency numbers on screen come from, for labels: always a prediction."""

    profile: str
    error: str
    recorded: bool  # True: as the search stored them; False: re-scored by the dashboard

    @property
    def axis_label(self) -> str:
        """Two lines: the profile, then its error (a plotly title; the error summary can be long)."""
        return f"latency, ms: predicted ({self.profile})<br><sup>predictor error: {self.error}</sup>"


def recorded_source(view: StudyView) -> LatencySource:
    return LatencySource(view.meta.latency_profile, view.meta.latency_error, recorded=True)


def rescore(view: StudyView, profile) -> tuple[pd.DataFrame, LatencySource]:
    """The study's frame with ``latency_ms`` predicted by ``profile`` (no retraining: the scores are the
    trained students', only latency changes) and the Pareto set recomputed on it. Feasibility stays as
    the search recorded it (its constraints were checked on its own profile)."""
    numbers = view.frame["number"].to_numpy()
    cands = [view.records[int(n)].candidate for n in numbers]
    lat = np.asarray(profile.estimate_many(cands), dtype=float)
    frame = view.frame.copy()
    frame["latency_ms"] = lat
    frame["pareto"] = feasible_pareto(frame)
    probe = profile.estimate(cands[0])
    error = profile.error_over(cands)  # with how many of them it extrapolates to
    return frame, LatencySource(str(getattr(probe, "profile", "")) or _profile_name(profile), error, recorded=False)


def _profile_name(profile) -> str:
    return str(getattr(profile, "name", profile))


def reference_architectures(view: StudyView) -> list:
    """(label, Candidate) of the references drawn next to the trials: the study's own teacher and
    ``REFERENCE_NAMES``, each at the study's sequence length so that latencies compare like for like."""
    out = []
    try:  # the teacher alone: a stored space that today's rules refuse elsewhere still names it
        space = view.meta.space
        out.append((f"teacher ({space.get('name', 'space')})", Candidate(**space["fixed"], **space["teacher"])))
    except (KeyError, TypeError, UserError):
        pass  # a space without a readable teacher: draw the named references only
    for name in REFERENCE_NAMES:
        out.append((name, REFERENCES[name].candidate.replace(seq_len=view.seq_len)))
    return out


def reference_latencies(view: StudyView, profile) -> pd.DataFrame:
    """Predicted latency of ``reference_architectures`` on ``profile``. Their score on this study's
    data is not known (they were not trained here), so they have a latency and no score."""
    rows = []
    for label, c in reference_architectures(view):
        est = profile.estimate(c)
        k = count(c)
        rows.append({"name": label, "latency_ms": float(est.latency_ms), "params_m": k.params_m,
                     "gflops": k.gflops, "num_layers": c.num_layers, "seq_len": c.seq_len})
    return pd.DataFrame(rows)


def breakdown_table(trial: dict[str, float], mobilebert: dict[str, float] | None) -> pd.DataFrame:
    """Latency by op class (ms) of a trial, next to MobileBERT's when known; op classes of ``search_spaces.ops``."""
    classes = list(OP_CLASSES) + sorted(set(trial) - set(OP_CLASSES))
    out = pd.DataFrame({"op class": classes, "trial": [float(trial.get(k, 0.0)) for k in classes]})
    if mobilebert is not None:
        out["mobilebert"] = [float(mobilebert.get(k, 0.0)) for k in classes]
    return out


# ------------------------------------------------------------------------------------------------
# trial view and export
def architecture_table(rec: TrialRecord) -> pd.DataFrame:
    """The architecture as (field, value) rows, with the realised MHA/FFN ratio next to the target."""
    c, k = rec.candidate, count(rec.candidate)
    rows = [
        ("blocks", c.num_layers), ("inter-block width (hidden)", c.hidden_size),
        ("embedding width", c.embedding_size), ("attention heads", c.num_heads), ("sequence length", c.seq_len),
        ("intra-block width", c.intra_size), ("stacked FFNs", c.num_ffn), ("FFN inner width", c.intermediate_size),
        ("normalisation", c.norm), ("activation", c.act), ("attention", c.attention),
        ("MHA/FFN ratio (target)", "" if c.mha_ffn_ratio is None else f"{c.mha_ffn_ratio:.2f}"),
        ("MHA/FFN ratio (realised)", f"{k.mha_ffn_ratio:.3f}"), ("3-gram embedding", c.trigram_input),
        ("parameters", f"{rec.params:,}"), ("FLOPs", f"{rec.flops:,} (seq {c.seq_len}, batch 1)"),
        ("strategy", rec.strategy or ""), ("teacher hash", rec.teacher_hash or ""),
    ]
    return pd.DataFrame([(a, str(b)) for a, b in rows], columns=["field", "value"])


def architecture_json(view: StudyView, number: int, storage_url: str | None = None) -> str:
    """``architecture.json`` in ``mbnas export``'s format (schema ``mbnas.export/1``) without weights; every
    ``mbnas`` command accepts it as ARCH (``search_spaces.arch.resolve_arch`` reads its ``candidate``)."""
    rec, meta = view.records[number], view.meta
    row = view.frame.set_index("number").loc[number]
    arch = architecture_record(rec, meta, row["score"], row["latency_ms"], view.name, int(number), storage_url)
    arch["weights"] = None
    arch["note"] = ("downloaded from the dashboard: architecture only; "
                    + export_command(storage_url or DEFAULT_STORAGE, view.name, int(number)) + " writes the weights too")
    return json.dumps(arch, indent=2) + "\n"


def config_json(rec: TrialRecord) -> str:
    """``config.json``: the stock transformers ``MobileBertConfig`` of the trial (imports transformers)."""
    return rec.candidate.to_hf_config().to_json_string()


def export_command(storage_url: str, study_name: str, number: int) -> str:
    """The CLI line that exports the trial with its trained weights."""
    return (f"mbnas export --study {shlex.quote(study_name)} --storage {shlex.quote(storage_url)} "
            f"--trial {number} --out {shlex.quote(f'export/{study_name}-trial{number}')}")


def hover_text(frame: pd.DataFrame) -> list[str]:
    """One hover line block per trial: what the architecture is, its size and numbers."""
    f = frame
    return (
        "trial " + f["number"].astype(str) + ": " + f["label"] + "<br>"
        + "intra " + f["intra_size"].astype(str) + ", " + f["num_ffn"].astype(str) + " FFN x "
        + f["intermediate_size"].astype(str) + ", " + f["norm_act"] + ", " + f["attention"] + "<br>"
        + f["params_m"].map("{:.2f}M params".format) + ", " + f["gflops"].map("{:.4g} GFLOPs".format) + "<br>"
        + "score " + f["score"].map("{:.4g}".format) + ", latency " + f["latency_ms"].map("{:.4g} ms".format)
        + " (predicted)<br>strategy " + f["strategy"]
    ).tolist()
