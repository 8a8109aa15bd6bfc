"""The 2-D Pareto set of (score, latency) and its exact hypervolume.

Score is maximised and latency minimised (``nas.records.OBJECTIVE_VALUES``). Both functions work on
plain sequences of numbers, so the search's progress bar, the final table, the benchmark, export's
``--pick`` and the dashboard all compute the front the same way, without Optuna.

``pareto_front``: sort by latency (ties: best score first), then one sweep keeps each point that
beats every faster one, O(n log n). Points with equal (score, latency) are all kept: two trials
that landed on the same spot are both on the front.

``hypervolume``: the area dominated by the front and bounded by a fixed reference point
``(worst acceptable score, slowest acceptable latency)``. On a front sorted by latency the scores
rise, so the dominated region is a staircase of rectangles, summed exactly in O(n log n). Points
not strictly better than the reference in both objectives add nothing. The reference point must
stay fixed for a whole study (it is stored in ``StudyMeta``), or values at different times cannot
be compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ParetoPoint", "pareto_front", "hypervolume", "knee_point"]


@dataclass(frozen=True)
class ParetoPoint:
    """One point of the front; ``index`` is its position in the input sequence."""

    index: int
    score: float
    latency_ms: float


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def pareto_front(scores: Sequence[float], latencies_ms: Sequence[float]) -> list[ParetoPoint]:
    """Non-dominated points (maximise score, minimise latency), sorted by latency ascending.

    Non-finite values (None, NaN, inf) are never on the front.
    """
    if len(scores) != len(latencies_ms):
        raise ValueError(f"{len(scores)} scores but {len(latencies_ms)} latencies")
    idx = [i for i in range(len(scores)) if _finite(scores[i]) and _finite(latencies_ms[i])]
    idx.sort(key=lambda i: (latencies_ms[i], -scores[i]))
    front: list[ParetoPoint] = []
    best = -math.inf  # best score among strictly faster (or equally fast, better) points seen
    for i in idx:
        s, t = float(scores[i]), float(latencies_ms[i])
        if s > best:
            front.append(ParetoPoint(i, s, t))
            best = s
        elif front and s == front[-1].score and t == front[-1].latency_ms:
            front.append(ParetoPoint(i, s, t))  # an exact duplicate of a front point
    return front


def hypervolume(scores: Sequence[float], latencies_ms: Sequence[float],
                reference: tuple[float, float]) -> float:
    """Exact area (score units x ms) dominated by the points and bounded by ``reference``.

    reference: (worst score, slowest latency_ms); only points with ``score > reference[0]`` and
    ``latency < reference[1]`` count.
    """
    s_ref, t_ref = float(reference[0]), float(reference[1])
    keep = [i for i in range(len(scores)) if _finite(scores[i]) and _finite(latencies_ms[i])
            and scores[i] > s_ref and latencies_ms[i] < t_ref]
    front = pareto_front([scores[i] for i in keep], [latencies_ms[i] for i in keep])
    area = 0.0
    # front: latency ascending, score ascending; point j owns the strip [t_j, t_{j+1}) at height s_j
    for j, p in enumerate(front):
        t_next = front[j + 1].latency_ms if j + 1 < len(front) else t_ref
        area += (t_next - p.latency_ms) * (p.score - s_ref)
    return area


def knee_point(front: Sequence[ParetoPoint]) -> ParetoPoint:
    """The front point farthest from the straight line between its two ends, both axes scaled to
    [0, 1] over the front (the usual "knee": the best trade-off before returns diminish).

    A front without a knee (``has_knee``: one or two points, or no point above that line, as when
    the front bends the other way) returns its most accurate point, whatever its length.
    """
    if not front:
        raise ValueError("empty Pareto front")
    dist, pts = _above_chord(front)
    if not dist or max(dist) <= 1e-12:
        return max(front, key=lambda p: (p.score, -p.latency_ms))
    return pts[max(range(len(pts)), key=lambda i: dist[i])]


def has_knee(front: Sequence[ParetoPoint]) -> bool:
    """Whether some point of ``front`` lies above the line between its fastest and most accurate points."""
    dist, _ = _above_chord(front)
    return bool(dist) and max(dist) > 1e-12


def _above_chord(front: Sequence[ParetoPoint]) -> tuple[list[float], list[ParetoPoint]]:
    """Each point's distance above the chord, both axes scaled to [0, 1] over the front, in latency
    order (empty for fewer than three points)."""
    if len(front) <= 2:
        return [], list(front)
    pts = sorted(front, key=lambda p: p.latency_ms)
    s_lo, s_hi = min(p.score for p in pts), max(p.score for p in pts)
    t_lo, t_hi = pts[0].latency_ms, pts[-1].latency_ms
    s_span, t_span = (s_hi - s_lo) or 1.0, (t_hi - t_lo) or 1.0
    xy = [((p.latency_ms - t_lo) / t_span, (p.score - s_lo) / s_span) for p in pts]
    (x0, y0), (x1, y1) = xy[0], xy[-1]
    norm = math.hypot(x1 - x0, y1 - y0) or 1.0
    # distance above the chord from the fastest to the most accurate point
    return [((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) / norm for x, y in xy], pts
