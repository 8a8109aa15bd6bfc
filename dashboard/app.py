"""The mobilebert-nas dashboard (Streamlit). Run it with ``mbnas dashboard``, which calls

    streamlit run dashboard/app.py -- --storage URL [--study S] [--refresh SECONDS]

with ``--server.address 127.0.0.1``. Started by hand from the repository root, ``.streamlit/config.toml``
binds it to 127.0.0.1 too (Streamlit's own default is every interface).

It reads the Optuna storage a search writes, and nothing else. The numbers come from
``dashboard.data`` and the figures from ``dashboard.figures``; this script only lays them out.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import data, figures
from nas.records import describe_score
from search_spaces.errors import UserError
from search_spaces.references import REFERENCES

REFRESH_S = 15  # default seconds between re-reads of the storage (``--refresh``)
TABS = ("Pareto front", "Trial", "History")
PERSISTENT = ("colour", "log_x", "show_refs", "trial", "breakdown_unit")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--storage", default=data.DEFAULT_STORAGE)
    p.add_argument("--study", default=None)
    p.add_argument("--refresh", type=float, default=REFRESH_S)
    args, _ = p.parse_known_args(sys.argv[1:])
    return args


# ------------------------------------------------------------------------------------------------
# caches: the storage object lives as long as the server (Optuna caches finished trials in it); a
# study view is rebuilt only when its trials change (state fingerprint)
@st.cache_resource(show_spinner=False)
def _storage(url: str):
    return data.open_storage(url)


@st.cache_resource(show_spinner=False, max_entries=8)
def _view(url: str, study: str, fingerprint: tuple) -> data.StudyView:
    return data.load_study(_storage(url), study)


@st.cache_resource(show_spinner=False, max_entries=16)
def _profile(name: str):
    return data.load_latency_profile(name)


@st.cache_resource(show_spinner="re-scoring latency ...", max_entries=8)
def _rescored(url: str, study: str, fingerprint: tuple, profile: str):
    return data.rescore(_view(url, study, fingerprint), _profile(profile))


@st.cache_resource(show_spinner=False, max_entries=16)
def _references(url: str, study: str, fingerprint: tuple, profile: str):
    return data.reference_latencies(_view(url, study, fingerprint), _profile(profile))


def _slider_format(step: float) -> str:
    """printf format with enough decimals for ``step`` (latencies run from microseconds to seconds)."""
    return f"%.{max(0, -math.floor(math.log10(step))) + 1}f"


def _try_profile(name: str):
    """(profile, None) or (None, why not)."""
    names, why = data.profiles_available()
    if why:
        return None, why
    if name not in names:
        return None, f"profile '{name}' is not among the installed profiles ({', '.join(names) or 'none'})"
    try:
        return _profile(name), None
    except UserError as exc:
        return None, str(exc)


# ------------------------------------------------------------------------------------------------
def sidebar(args: argparse.Namespace):
    """Storage and study pickers; returns (url, storage or None, study name or None)."""
    st.session_state.setdefault("storage_url", args.storage)
    url = st.sidebar.text_input("Optuna storage URL", key="storage_url",
                                help=f"the storage the search wrote (default {data.DEFAULT_STORAGE})").strip()
    try:
        storage = _storage(url)
        names = data.study_names(storage)
    except UserError as exc:
        st.info(str(exc))
        return url, None, None
    if not names:
        st.info(f"the storage {url} holds no studies yet: start one with 'mbnas search --storage {url}'")
        return url, storage, None
    if args.study and args.study not in names:
        st.warning(f"no study named '{args.study}' in {url}; showing '{names[0]}' "
                   f"(studies: {', '.join(names)})")
    # --study is shown as soon as it exists (a dashboard started before its search), until the
    # user picks another study; a study deleted meanwhile falls back to the newest
    if args.study in names and not st.session_state.get("study_picked"):
        st.session_state["study"] = args.study
    if st.session_state.get("study") not in names:
        st.session_state.pop("study", None)
    study = st.sidebar.selectbox("Study", names, key="study",
                                 on_change=lambda: st.session_state.update(study_picked=True))
    return url, storage, study


def body(url: str, storage, study: str) -> None:
    """Everything that reloads while a search runs (the auto-refresh fragment)."""
    for key in list(st.session_state):  # keep the state of widgets in tabs that are closed this run
        if key in PERSISTENT or key.startswith("budget-"):
            st.session_state[key] = st.session_state[key]
    fp = data.study_fingerprint(storage, study)
    try:
        view = _view(url, study, fp)
    except UserError as exc:
        st.info(str(exc))
        return
    meta = view.meta

    # ---- device profile: the recorded latencies, or re-scored on another profile
    names, why = data.profiles_available()
    options = [data.RECORDED] + [n for n in names if n != meta.latency_profile]
    choice = st.sidebar.selectbox(
        "Device profile", options, key="profile",
        format_func=lambda n: f"{meta.latency_profile} (as recorded by the search)" if n == data.RECORDED else n,
        help="switching re-predicts every trial's latency on another device; scores stay (no retraining)")
    if why:
        st.sidebar.caption(f"re-scoring unavailable: {why}")
    if choice == data.RECORDED:
        frame, source = view.frame, data.recorded_source(view)
        profile, profile_why = _try_profile(meta.latency_profile)
    else:
        frame, source = _rescored(url, study, fp, choice)
        profile, profile_why = _try_profile(choice)

    st.title(f"Study {study}")
    st.caption(
        f"**score**: {describe_score(meta.score_name)}, measured on {meta.score_data}. "
        f"**latency**: predicted by profile `{source.profile}` (error: {source.error})"
        + ("" if source.recorded else f"; re-scored here, the search used `{meta.latency_profile}`")
        + f". Space `{meta.space.get('name', '?')}`, strategy `{meta.strategy}`"
        + (f" (trained in {meta.precision})" if meta.precision else "") + f", seq {view.seq_len}."
        + (f" Your data: {meta.user_data}." if meta.user_data else ""))

    n_pareto = int(frame["pareto"].sum())
    hv = data.hypervolume(frame.loc[frame["feasible"], "score"], frame.loc[frame["feasible"], "latency_ms"],
                          meta.reference_point) if source.recorded else None
    cols = st.columns(5)
    cols[0].metric("complete trials", f"{len(frame):,}")
    cols[1].metric("Pareto set", n_pareto, help="feasible trials no other trial beats on both score and latency")
    cols[2].metric("running", view.running)
    cols[3].metric("failed / pruned", view.states.get("FAIL", 0) + view.states.get("PRUNED", 0))
    cols[4].metric("hypervolume", "n/a (re-scored)" if hv is None else f"{hv:.4g}",
                   help=f"area dominated up to the reference point {meta.reference_point} "
                        f"(score, ms) on the recorded profile")

    # lazy tabs: only the open one runs (a 5,000-trial study draws one big figure, not three)
    tab_pareto, tab_trial, tab_history = st.tabs(list(TABS), key="view", on_change="rerun")
    ctx = Context(url, study, fp, view, frame, source, choice, profile, profile_why)
    if tab_pareto.open:
        with tab_pareto:
            pareto_view(ctx)
    if tab_trial.open:
        with tab_trial:
            trial_view(ctx)
    if tab_history.open:
        with tab_history:
            history_view(view)


@dataclass(frozen=True)
class Context:
    """What the three views share for one run."""

    url: str
    study: str
    fp: tuple
    view: data.StudyView
    frame: pd.DataFrame  # recorded or re-scored latencies
    source: data.LatencySource
    choice: str  # data.RECORDED or a profile name
    profile: object | None  # the latency_models profile of ``source`` when installed
    profile_why: str | None  # why not

    @property
    def budget_key(self) -> str:
        return f"budget-{self.choice}"

    def budget(self) -> float:
        """The slider's value, or its default: the study's budget, else the Pareto set's median latency."""
        if self.budget_key in st.session_state:
            return float(st.session_state[self.budget_key])
        f = self.frame
        lo, hi = float(f["latency_ms"].min()), float(f["latency_ms"].max())
        default = data.default_budget(self.view) if self.source.recorded else float(
            f.loc[f["pareto"], "latency_ms"].median())
        return min(max(default, lo), hi)


def _open_clicked_trial() -> None:
    """plotly_chart callback: a click on a point opens that trial in the Trial tab."""
    points = st.session_state["pareto_chart"].selection.points
    if points:
        cd = points[0]["customdata"]
        st.session_state["trial"] = int(cd[0] if isinstance(cd, list) else cd)
        st.session_state["view"] = TABS[1]


def pareto_view(ctx: Context) -> None:
    view, frame, source, meta = ctx.view, ctx.frame, ctx.source, ctx.view.meta
    c1, c2, c3 = st.columns([2, 3, 2])
    colour_label = c1.selectbox("Colour by", list(data.COLOUR_BY), key="colour")
    lat_lo, lat_hi = float(frame["latency_ms"].min()), float(frame["latency_ms"].max())
    step = max((lat_hi - lat_lo) / 200, 1e-4)
    st.session_state[ctx.budget_key] = min(max(ctx.budget(), lat_lo), lat_hi)  # the range moves as trials finish
    budget = c2.slider(f"Latency budget, ms (predicted, {source.profile})", min_value=lat_lo,
                       max_value=max(lat_hi, lat_lo + step), step=step, format=_slider_format(step),
                       key=ctx.budget_key)
    refs = None
    if ctx.profile is not None:
        refs = _references(ctx.url, ctx.study, ctx.fp, ctx.choice if ctx.choice != data.RECORDED
                           else meta.latency_profile)
    far = refs is not None and float(refs["latency_ms"].max()) > 5 * lat_hi
    st.session_state.setdefault("log_x", far)
    st.session_state.setdefault("show_refs", True)
    log_x = c3.checkbox("log latency axis", key="log_x")
    show_refs = c3.checkbox("reference architectures", key="show_refs", disabled=refs is None)

    best = data.best_under_budget(frame, budget)
    fig = figures.pareto_figure(frame, colour_col=data.COLOUR_BY[colour_label], colour_label=colour_label,
                                score_label=f"{meta.score_name} (higher is better)", latency=source,
                                budget_ms=budget, best_number=None if best is None else int(best["number"]),
                                references=refs if show_refs else None, log_x=log_x)
    st.plotly_chart(fig, key="pareto_chart", on_select=_open_clicked_trial, selection_mode="points",
                    width="stretch")
    if best is None:
        st.warning(f"no feasible trial fits a budget of {budget:.4g} ms (predicted, {source.profile})")
    else:
        st.success(f"best under {budget:.4g} ms: **trial {int(best['number'])}** `{best['label']}` - "
                   f"{meta.score_name} {best['score']:.4g}, latency {best['latency_ms']:.4g} ms "
                   f"(predicted, {source.profile}), {best['params_m']:.2f}M params")
    if refs is None:
        st.caption(f"reference architectures not drawn: {ctx.profile_why}")
    elif show_refs:
        st.caption(f"Reference architectures (dotted lines): latency predicted on `{source.profile}` at the study's "
                   f"sequence length {view.seq_len}; their {meta.score_name} on this study's data was not measured, "
                   f"so they have a latency and no score.")
    st.caption("Hover a point for its architecture; click one to open it in the Trial tab.")


def trial_view(ctx: Context) -> None:
    view, frame, source, meta = ctx.view, ctx.frame, ctx.source, ctx.view.meta
    by_number = frame.set_index("number")
    pareto_first = [int(n) for n in frame.loc[frame["pareto"]].sort_values("latency_ms")["number"]] + \
        [int(n) for n in frame.loc[~frame["pareto"], "number"]]
    if st.session_state.get("trial") not in by_number.index:  # default: the best under the budget
        best = data.best_under_budget(frame, ctx.budget())
        st.session_state["trial"] = pareto_first[0] if best is None else int(best["number"])
    labels = dict(zip(frame["number"].astype(int), (
        "trial " + frame["number"].astype(str) + ": " + frame["label"] + " · " + frame["score"].map("{:.4g}".format)
        + " · " + frame["latency_ms"].map("{:.4g} ms".format) + frame["pareto"].map({True: " · Pareto", False: ""}))))
    number = st.selectbox("Trial (Pareto set first)", pareto_first, key="trial", format_func=labels.__getitem__)
    rec = view.records[int(number)]
    row = by_number.loc[number]
    c = st.columns(4)
    c[0].metric(meta.score_name, f"{row['score']:.4g}", help=f"measured on {meta.score_data}")
    c[1].metric("predicted latency, ms", f"{row['latency_ms']:.4g}",
                help=f"predicted by profile {source.profile}; error: {source.error}")
    c[2].metric("parameters", f"{rec.params / 1e6:.2f}M", help="MobileBertModel without pooler or task head")
    c[3].metric("FLOPs", f"{rec.flops / 1e9:.4g} G", help=f"2 x MACs, batch 1, seq {rec.candidate.seq_len}")

    left, right = st.columns(2)
    with left:
        st.subheader("Architecture")
        table = data.architecture_table(rec)
        st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3)
        if rec.scores:
            st.dataframe({"score": list(rec.scores), "value": [f"{v:.4g}" for v in rec.scores.values()],
                          "measured on": [meta.data_of(k) for k in rec.scores]}, hide_index=True)
    with right:
        st.subheader("Transfer loss by layer")
        if rec.layer_losses:
            st.plotly_chart(figures.layer_loss_figure(rec.layer_losses, rec.strategy), width="stretch",
                            key="layer_losses")
        else:
            st.info("this trial recorded no per-layer transfer losses")
        st.subheader("Latency by op class")
        trial_breakdown = rec.latency_breakdown if source.recorded else dict(
            ctx.profile.estimate(rec.candidate).breakdown)
        mobilebert = None
        if ctx.profile is not None:
            mobilebert = dict(ctx.profile.estimate(REFERENCES["mobilebert"].candidate.replace(
                seq_len=view.seq_len)).breakdown)
        if trial_breakdown:
            table = data.breakdown_table(trial_breakdown, mobilebert)
            unit = st.segmented_control("show", ["% of total", "ms"], default="% of total", key="breakdown_unit",
                                        label_visibility="collapsed")
            st.plotly_chart(figures.breakdown_figure(table, source, f"trial {number}",
                                                     f"MobileBERT (24 blocks, seq {view.seq_len})",
                                                     share=unit != "ms"),
                            width="stretch", key="breakdown")
            if mobilebert is None:
                st.caption(f"MobileBERT's breakdown not shown: {ctx.profile_why}")
        else:
            st.info("this trial recorded no latency breakdown")

    st.subheader("Export")
    d1, d2, _ = st.columns([1, 1, 2])
    d1.download_button("config.json (transformers)", data=lambda: data.config_json(rec),
                       file_name="config.json", mime="application/json", key="dl_config",
                       on_click="ignore")
    d2.download_button("architecture.json", data=data.architecture_json(view, int(number), ctx.url),
                       file_name="architecture.json",
                       mime="application/json", key="dl_arch", on_click="ignore")
    st.caption("The downloads hold the architecture only. This exports the trained weights too:")
    st.code(data.export_command(ctx.url, ctx.study, int(number)), language="bash")


def history_view(view: data.StudyView) -> None:
    meta = view.meta
    hv = data.study_hypervolume_history(view)
    st.subheader("Hypervolume by trial")
    st.plotly_chart(figures.hypervolume_figure(hv), width="stretch", key="hv")
    st.caption(f"Area of the (score, latency) plane dominated by the feasible trials so far, up to the study's "
               f"reference point ({meta.score_name} {meta.reference_point[0]:.4g}, {meta.reference_point[1]:.4g} ms), "
               f"on the profile the search optimised (`{meta.latency_profile}`, predicted).")
    st.subheader("Trials over time")
    st.plotly_chart(figures.trials_over_time_figure(view.frame, meta.score_name), width="stretch", key="time")


def page(args: argparse.Namespace) -> None:
    """The whole page below the refresh controls; re-run every ``--refresh`` seconds while auto-refresh is on,
    so a missing storage, an empty study or a running search show up as soon as they change."""
    url, storage, study = sidebar(args)
    if storage is None or study is None:
        return
    try:
        body(url, storage, study)
    except UserError as exc:  # e.g. a profile that cannot be loaded
        st.info(str(exc))


def main() -> None:
    st.set_page_config(page_title="mobilebert-nas dashboard", layout="wide")
    args = _args()
    auto = st.sidebar.toggle("auto-refresh", value=True, key="auto",
                             help=f"re-read the storage every {args.refresh:g} s while the page is open")
    if st.sidebar.button("refresh now"):
        st.rerun()
    st.fragment(run_every=args.refresh if auto and args.refresh > 0 else None)(page)(args)


main()
