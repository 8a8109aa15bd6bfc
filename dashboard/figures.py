"""Plotly figures of the dashboard. Pure functions of ``dashboard.data`` outputs: no Streamlit here.

The Pareto set is always drawn as one SVG scatter trace named ``PARETO_TRACE`` (at most a few
hundred points), so a browser test can count its drawn points; dominated trials switch to WebGL
above ``WEBGL_ABOVE`` points so that a 5,000-trial study stays responsive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from dashboard.data import LatencySource, hover_text

PARETO_TRACE = "Pareto set"
WEBGL_ABOVE = 1500
CATEGORICAL = ("norm_act", "strategy", "attention")
_PALETTE = qualitative.Set2 + qualitative.Dark2
_SCALE = "Viridis"


def _category_colours(values: pd.Series) -> dict:
    return {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(sorted(values.unique(), key=str))}


def pareto_figure(frame: pd.DataFrame, *, colour_col: str, colour_label: str, score_label: str,
                  latency: LatencySource, budget_ms: float | None = None, best_number: int | None = None,
                  references: pd.DataFrame | None = None, log_x: bool = False, height: int = 560) -> go.Figure:
    """Score against predicted latency: dominated trials faded, the Pareto set on top, the region
    under the latency budget shaded, references as labelled vertical lines (latency only)."""
    categorical = colour_col in CATEGORICAL
    vals = frame[colour_col]
    hover = np.asarray(hover_text(frame), dtype=object)
    pareto = frame["pareto"].to_numpy(dtype=bool)
    feasible = frame["feasible"].to_numpy(dtype=bool)
    numbers = frame["number"].to_numpy()
    lat, score = frame["latency_ms"].to_numpy(), frame["score"].to_numpy()
    fig = go.Figure()
    scatter_dominated = go.Scattergl if len(frame) > WEBGL_ABOVE else go.Scatter

    def add(mask, name, marker, cls=go.Scatter):
        if mask.any():
            fig.add_trace(cls(x=lat[mask], y=score[mask], mode="markers", name=name, marker=marker,
                              customdata=numbers[mask], hovertext=hover[mask],
                              hovertemplate="%{hovertext}<extra></extra>"))

    # colours: one constant per category, or the values on one continuous scale shared by all traces
    if categorical:
        palette = _category_colours(vals)
        colour_of = lambda m: vals[m].map(palette).tolist()  # noqa: E731
    else:
        lo, hi = float(vals.min()), float(vals.max())
        scale = dict(colorscale=_SCALE, cmin=lo, cmax=hi if hi > lo else lo + 1)
        colour_of = lambda m: vals.to_numpy(dtype=float)[m]  # noqa: E731

    dominated = feasible & ~pareto
    if categorical:
        for cat, colour in palette.items():
            add(dominated & (vals.to_numpy() == cat), f"{cat}", dict(color=colour, size=6, opacity=0.3),
                scatter_dominated)
    else:
        add(dominated, "dominated", dict(color=colour_of(dominated), size=6, opacity=0.3, **scale), scatter_dominated)
    add(~feasible, "violates the study's constraints",
        dict(color="#9e9e9e", size=6, opacity=0.35, symbol="x"), scatter_dominated)

    # the front as a step line (latency ascending), then its points on top
    front = frame[pareto].sort_values("latency_ms")
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=front["latency_ms"], y=front["score"], mode="lines", line=dict(
            shape="hv", color="#444", width=1), hoverinfo="skip", name="Pareto front", showlegend=False))
    marker = dict(color=colour_of(pareto), size=11, opacity=1.0, line=dict(color="#111", width=1.2))
    if not categorical:  # the colour bar of the continuous scale, carried by the Pareto trace
        marker.update(scale, showscale=True, colorbar=dict(title=dict(text=colour_label), thickness=12))
    add(pareto, f"{PARETO_TRACE} ({int(pareto.sum())})", marker)

    if best_number is not None:
        b = frame[frame["number"] == best_number]
        fig.add_trace(go.Scatter(x=b["latency_ms"], y=b["score"], mode="markers", name=f"best under budget: trial "
                                 f"{best_number}", marker=dict(symbol="star", size=20, color="#e4572e",
                                                               line=dict(color="#111", width=1)),
                                 customdata=b["number"], hovertext=hover_text(b),
                                 hovertemplate="%{hovertext}<extra>best under budget</extra>"))

    lat_min = float(frame["latency_ms"].min())
    ax = (lambda x: float(np.log10(x))) if log_x else float  # annotations take log10 on a log axis (shapes do not)
    if budget_ms is not None:
        x0 = lat_min / 2 if log_x else min(0.0, lat_min)
        fig.add_vrect(x0=x0, x1=budget_ms, fillcolor="#2e7d32", opacity=0.08, line_width=0, layer="below")
        fig.add_vline(x=budget_ms, line=dict(color="#2e7d32", width=2, dash="dash"))
        fig.add_annotation(x=ax(budget_ms), y=0.0, yref="paper", text=f"budget {budget_ms:.3g} ms", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(color="#2e7d32"))
    if references is not None:
        for r in references.itertuples():
            fig.add_vline(x=r.latency_ms, line=dict(color="#6a3d9a", width=1, dash="dot"))
            fig.add_annotation(x=ax(r.latency_ms), y=1.0, yref="paper", text=f"{r.name}: {r.latency_ms:.3g} ms",
                               textangle=-90, showarrow=False, xanchor="left", yanchor="top",
                               bgcolor="rgba(255,255,255,0.75)", font=dict(size=11, color="#6a3d9a"))

    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), hovermode="closest", dragmode="zoom",
        legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, title=dict(text=colour_label + ":")),
        xaxis=dict(title=dict(text=latency.axis_label), type="log" if log_x else "linear"),
        yaxis_automargin=True, xaxis_automargin=True,
        yaxis=dict(title=dict(text=score_label)),
    )
    return fig


def hypervolume_figure(hv: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Scatter(x=hv["number"], y=hv["hypervolume"], mode="lines", line=dict(shape="hv"),
                               name="hypervolume"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="trial number",
                      yaxis_title="hypervolume (score x ms)")
    return fig


def trials_over_time_figure(frame: pd.DataFrame, score_label: str) -> go.Figure:
    """Each trial's score at its completion time, the best feasible score so far, and how many trials
    had completed (right axis)."""
    f = frame.sort_values("datetime_complete")
    best = f["score"].where(f["feasible"]).cummax()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=f["datetime_complete"], y=f["score"], mode="markers", name="trial (red: Pareto set)",
                             marker=dict(size=5, opacity=0.5, color=f["pareto"].to_numpy(dtype=float),
                                         colorscale=[[0, "#4c72b0"], [1, "#e4572e"]], cmin=0, cmax=1),
                             customdata=f["number"], hovertemplate="trial %{customdata}: %{y:.4g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=f["datetime_complete"], y=best, mode="lines", line=dict(shape="hv"),
                             name="best feasible so far"))
    fig.add_trace(go.Scatter(x=f["datetime_complete"], y=np.arange(1, len(f) + 1), mode="lines", yaxis="y2",
                             line=dict(color="#9e9e9e", width=1, dash="dot"), name="trials completed (right axis)"))
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="completed at",
                      yaxis_title=score_label, legend=dict(orientation="h", y=1.02, yanchor="bottom"),
                      yaxis2=dict(title=dict(text="trials completed"), overlaying="y", side="right",
                                  showgrid=False, rangemode="tozero", tickmode="auto", tickformat="d"))
    return fig


def layer_loss_figure(losses: list[float], strategy: str | None) -> go.Figure:
    fig = go.Figure(go.Scatter(x=list(range(1, len(losses) + 1)), y=losses, mode="lines+markers"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(title="layer", dtick=1),
                      yaxis_title=f"transfer loss after the layer's phase ({strategy or 'strategy unknown'})")
    return fig


def breakdown_figure(table: pd.DataFrame, latency: LatencySource, trial_label: str, reference_label: str,
                     share: bool = False) -> go.Figure:
    """Latency by op class, in ms or as a share of each model's total (architectures differ in size a lot)."""
    fig = go.Figure()
    for col, label in (("trial", trial_label), ("mobilebert", reference_label)):
        if col not in table:
            continue
        total = float(table[col].sum())
        y = table[col] / total * 100 if share and total > 0 else table[col]
        fig.add_trace(go.Bar(x=table["op class"], y=y, name=f"{label}: {total:.3g} ms"))
    unit = "% of the model's predicted latency" if share else "ms, predicted"
    fig.update_layout(height=320, barmode="group", margin=dict(l=10, r=10, t=30, b=10),
                      yaxis_title=f"{unit} ({latency.profile})", legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig
