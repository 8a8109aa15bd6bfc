"""The 2-D Pareto set and hypervolume, against brute force and Optuna's own 2-D hypervolume."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from nas.pareto import has_knee, hypervolume, knee_point, pareto_front


def _brute_front(scores, lats):
    """O(n^2): a point is on the front unless another is at least as good in both and better in one."""
    out = []
    for i, (s, t) in enumerate(zip(scores, lats)):
        if not (math.isfinite(s) and math.isfinite(t)):
            continue
        dominated = any(s2 >= s and t2 <= t and (s2 > s or t2 < t)
                        for j, (s2, t2) in enumerate(zip(scores, lats)) if j != i)
        if not dominated:
            out.append(i)
    return sorted(out)


def _random_points(seed, n, grid=None):
    rng = random.Random(seed)
    if grid:  # a coarse grid makes ties in either objective common
        return [rng.randrange(grid) / grid for _ in range(n)], [rng.randrange(1, grid) for _ in range(n)]
    return [rng.random() for _ in range(n)], [rng.uniform(1, 100) for _ in range(n)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("grid", [None, 5])
def test_front_equals_brute_force(seed, grid):
    scores, lats = _random_points(seed, 60, grid)
    front = pareto_front(scores, lats)
    assert sorted(p.index for p in front) == _brute_front(scores, lats)
    assert [p.latency_ms for p in front] == sorted(p.latency_ms for p in front)


def test_front_skips_non_finite_and_keeps_duplicates():
    front = pareto_front([0.5, float("nan"), 0.5, 0.9, None], [10.0, 1.0, 10.0, float("inf"), 2.0])
    assert [p.index for p in front] == [0, 2]
    assert pareto_front([], []) == []


@pytest.mark.parametrize("seed", range(6))
def test_hypervolume_equals_optuna_2d(seed):
    from optuna._hypervolume import wfg  # private, used here only as an independent check

    scores, lats = _random_points(seed, 40)
    ref = (0.1, 90.0)
    ours = hypervolume(scores, lats, ref)
    # optuna minimises everything: (-score, latency) against (-ref_score, ref_latency)
    keep = [i for i in range(len(scores)) if scores[i] > ref[0] and lats[i] < ref[1]]
    sols = np.array([[-scores[i], lats[i]] for i in keep])
    sols = sols[np.lexsort((sols[:, 1], sols[:, 0]))]
    theirs = wfg.compute_hypervolume(sols, np.array([-ref[0], ref[1]]))
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_hypervolume_by_hand():
    # two points: (0.5, 10ms) and (0.8, 30ms) against (0, 50ms)
    #   strip 10..30 at height 0.5 = 10; strip 30..50 at height 0.8 = 16
    assert hypervolume([0.5, 0.8], [10, 30], (0.0, 50.0)) == pytest.approx(26.0)
    # a dominated point and points beyond the reference add nothing
    assert hypervolume([0.5, 0.8, 0.4, 0.9, -1.0], [10, 30, 20, 60, 5], (0.0, 50.0)) == pytest.approx(26.0)
    assert hypervolume([], [], (0.0, 50.0)) == 0.0


def test_knee_is_the_bend():
    # fast-and-poor, the bend, slow-and-barely-better
    front = pareto_front([0.1, 0.7, 0.75], [1.0, 2.0, 10.0])
    assert knee_point(front).index == 1
    assert knee_point(pareto_front([0.3], [4.0])).index == 0
    assert has_knee(front) and not has_knee(pareto_front([0.3, 0.5], [4.0, 5.0]))


def test_a_front_without_a_knee_gives_its_most_accurate_point_whatever_its_length():
    """The walkthrough's front: 0.503 @ 0.83 ms, 0.628 @ 1.52 ms, 0.771 @ 1.59 ms; the middle point is
    below the line between the ends, so there is no bend. Before, three points gave the *least*
    accurate one while two gave the most accurate."""
    front = pareto_front([0.503, 0.628, 0.771], [0.83, 1.52, 1.59])
    assert not has_knee(front)
    assert knee_point(front).index == 2
    assert knee_point(pareto_front([0.503, 0.771], [0.83, 1.59])).index == 1
