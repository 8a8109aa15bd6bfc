"""The per-layer early-stopping rule and its replay (pure logic: curves given, no training)."""

from __future__ import annotations

import pytest

from nas.search.early_stop import CandidateStopper, Curve, EarlyStopRule, ReplayTrial, replay

RULE = EarlyStopRule(factor=1.5, min_peers=2, latency_tol=0.1, min_completed=3)
PEERS = [Curve(0, 10.0, "progressive", (1.0, 2.0)), Curve(1, 9.0, "progressive", (1.1, 2.1)),
         Curve(2, 30.0, "progressive", (0.5, 0.9)), Curve(3, 8.0, "joint", (0.1, 0.1))]


@pytest.mark.parametrize("latency, strategy, loss, stops", [
    (10.0, "progressive", 1.7, True),    # two no-slower peers at <= 1.7 / 1.5
    (10.0, "progressive", 1.6, False),   # peer 1 (1.1) is not 1.5x better
    (8.5, "progressive", 5.0, False),    # only peer 1 (9 ms) is within 10% of 8.5 ms
    (10.0, "joint", 5.0, False),         # one joint peer only
    (40.0, "progressive", 1.7, True),    # slower candidates face all faster peers
])
def test_rule_compares_with_no_slower_peers(latency, strategy, loss, stops):
    reason = CandidateStopper(RULE, latency, strategy, PEERS).check(0, loss)
    assert bool(reason) == stops
    if stops:
        assert "layer 0" in reason and "completed trials no slower" in reason


def test_rule_waits_for_enough_completed_trials():
    assert CandidateStopper(RULE, 10.0, "progressive", PEERS[:2]).check(0, 100.0) is None


def test_replay_counts_time_saved_and_hypervolume_lost():
    def t(n, lat, losses, score):  # 2 layers; layer 0 ends at 10 s, the trial at 30 s
        return ReplayTrial(n, lat, "progressive", losses, (10.0, 20.0), 30.0, score)

    trials = [t(0, 10, (1.0, 1.0), 0.50), t(1, 9, (1.0, 1.0), 0.52), t(2, 11, (1.0, 1.0), 0.48),
              t(3, 12, (3.0, 3.0), 0.40),   # hopeless: stopped after layer 0, saves 20 s, off the front anyway
              t(4, 20, (3.0, 3.0), 0.60)]   # looks hopeless but would have been on the front: the cost
    r = replay(trials, RULE, reference=(0.0, 50.0))
    assert r.stopped == {3: 0, 4: 0}
    assert r.seconds_saved == pytest.approx(40.0) and r.saved_fraction == pytest.approx(40 / 150)
    assert r.front_lost == (4,)
    # full front: (9 ms, .52), (20 ms, .60); without trial 4 only (9, .52) remains
    assert r.hypervolume_full == pytest.approx(11 * 0.52 + 30 * 0.60)
    assert r.hypervolume_stopped == pytest.approx(41 * 0.52)
    assert 0 < r.hypervolume_loss < 1
