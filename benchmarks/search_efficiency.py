"""Search efficiency: hypervolume against trials for the default sampler and for random search.

Two parts, both written to ``benchmarks/results/search_efficiency.md``:

1. Sampler comparison. Each sampler runs ``--seeds`` searches of ``--trials`` trials over the full
   space, with the samplers exactly as ``mbnas search`` builds them (``nas.search.samplers.make_sampler``),
   latency from the real predictor, and hypervolume against the same fixed reference point as a real
   study. Training every proposal for real is far too slow for many repetitions on a CPU, so the
   score comes from a **clearly labelled proxy**: by default ``capacity`` (log10 of the parameters in
   the blocks), or ``--proxy surrogate``, a ridge regression fitted on the real, trained trials of a
   study (``--from-study``; its leave-one-out error is printed), evaluated without noise. The
   question answered: how many trials does the default sampler need to reach the hypervolume random
   search reaches after ``--trials``? (Aim: at most half.) Proposals are handled as ``mbnas search``
   handles them: a repeat of a trained candidate (or one over ``--latency-budget-ms``) is rejected
   untrained and does not count as a trial; ``--pending 1`` keeps another worker's trial running at
   every ask, as ``--jobs 2`` does. The table under the header says how many proposals were rejected.
   With ``--proxy real`` every proposal is trained instead (``run_search``; slow: for small
   ``--seeds``/``--trials``, the smoke space, or a GPU).

2. Early stopping. ``nas.search.early_stop.replay`` on a study run with ``--no-early-stop``: which
   trials the rule would have stopped, the training time saved and the hypervolume lost.

Usage:
    python benchmarks/search_efficiency.py --from-storage sqlite:///runs/mbnas.db \\
        --from-study demo-random-noes --samplers gp,random,tpe --seeds 40 --trials 12,40
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.pareto import hypervolume  # noqa: E402
from nas.table import markdown_table  # noqa: E402

CHECKPOINTS = (5, 10, 15, 20, 30, 40, 60, 80)


# ------------------------------------------------------------------------------------------------
# the proxy score
def features(c) -> np.ndarray:
    """Shape features of a candidate (the searched dimensions, on the scales they act on)."""
    from search_spaces.ops import count

    k = count(c)
    return np.array([
        math.log2(c.intra_size), c.num_ffn, math.log2(c.intermediate_size), math.log(k.params),
        c.norm == "layer_norm", c.act == "gelu", c.attention == "bottleneck",
    ], dtype=float)


@dataclass
class Surrogate:
    """Ridge regression on ``features``: score ~ w . standardised features + b."""

    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray
    b: float
    loo_mae: float
    n: int

    def __call__(self, c) -> float:
        return float(((features(c) - self.mean) / self.std) @ self.w + self.b)


def fit_surrogate(cands, scores, alpha: float = 1.0) -> Surrogate:
    X = np.stack([features(c) for c in cands])
    y = np.asarray(scores, dtype=float)

    def fit(X, y):
        mean, std = X.mean(0), X.std(0) + 1e-9
        Z = (X - mean) / std
        w = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
        return mean, std, w, float(y.mean())

    errs = []
    for i in range(len(y)):  # leave-one-out
        keep = np.arange(len(y)) != i
        mean, std, w, b = fit(X[keep], y[keep])
        errs.append(abs(((X[i] - mean) / std) @ w + b - y[i]))
    mean, std, w, b = fit(X, y)
    return Surrogate(mean, std, w, b, float(np.mean(errs)), len(y))


def capacity(c) -> float:
    """The ``capacity`` proxy: log10 of the parameters inside the transformer blocks (embeddings, equal
    for every candidate of a space, left out). Deterministic and free; it rewards size with diminishing
    returns, as accuracy does, and leaves the sampler the real trade-off: which shapes buy capacity
    cheaply on the device (norm, activation, attention mode, FFN count and width)."""
    from search_spaces.ops import count

    k = count(c)
    return math.log10((k.mha_params + k.ffn_params) * c.num_layers)


def real_trials(storage: str, study_name: str):
    """(candidate, score, latency_ms) of every completed trial, and the study's meta."""
    import optuna

    from nas.records import StudyMeta, TrialRecord
    from nas.search import outcome_of

    study = optuna.load_study(study_name=study_name, storage=storage)
    rows = [(TrialRecord.from_trial(t), t) for t in study.trials if outcome_of(t) == "complete"]
    return [(r.candidate, t.values[0], t.values[1]) for r, t in rows], StudyMeta.from_study(study), study


# ------------------------------------------------------------------------------------------------
# searching the proxy
@dataclass
class Tally:
    """What a sampler's proxy searches proposed besides the trials they trained."""

    repeats: int = 0  # proposals that repeated a trained (or running) candidate: rejected, not counted
    over_budget: int = 0  # proposals over --latency-budget-ms: rejected, not counted
    stuck: int = 0  # searches that hit the real search's limit of rejections in a row
    seconds: float = 0.0  # time in the sampler (ask + suggest)
    asks: int = 0


def proxy_curve(space, profile, score_fn, sampler, seed: int, trials: int, reference, budget_ms: float | None = None,
                pending: int = 0, tally: Tally | None = None) -> list[float]:
    """Hypervolume after each trained trial of one proxy search.

    sampler: a ``--sampler`` name (built by ``make_sampler``, as ``mbnas search`` does) or a function
    seed -> sampler. Trials are handled as the real search handles them (``nas.search.objective``): a
    proposal that repeats a trained or running candidate, or is predicted over ``budget_ms`` (a
    constraint of the study), is told PRUNED and does not use up one of ``trials``; after
    ``MAX_REJECTED_IN_A_ROW`` such proposals in a row the real search gives up, and so does this one.
    pending: trials of other workers that are still running when a trial is asked (``--jobs
    pending+1``): each proposal is told only after ``pending`` later ones were asked.
    """
    import optuna
    from optuna.trial import TrialState

    from nas.records import DIRECTIONS
    from nas.search.objective import BUDGET_CONSTRAINT
    from nas.search.optuna_backend import MAX_REJECTED_IN_A_ROW
    from nas.search.samplers import make_sampler

    tally = tally if tally is not None else Tally()
    made = make_sampler(sampler, seed) if isinstance(sampler, str) else sampler(seed)
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=made)
    trained: set = set()  # candidates trained or running
    running: list = []
    scores, lats, curve = [], [], []
    in_row = 0
    while len(curve) < trials:
        t0 = time.perf_counter()
        trial = study.ask()
        c = space.suggest(trial)
        tally.seconds += time.perf_counter() - t0
        tally.asks += 1
        lat = float(profile.estimate(c).latency_ms)
        over = budget_ms is not None and lat > budget_ms
        if budget_ms is not None:
            trial.set_constraint(BUDGET_CONSTRAINT, lat - budget_ms)
        if over or c in trained:
            tally.over_budget += over
            tally.repeats += (not over)
            study.tell(trial, state=TrialState.PRUNED)
            in_row += 1
            if in_row >= MAX_REJECTED_IN_A_ROW:  # the real search stops with an error here
                tally.stuck += 1
                curve += [curve[-1] if curve else 0.0] * (trials - len(curve))
                break
            continue
        in_row = 0
        trained.add(c)
        running.append((trial, c, lat))
        if len(running) <= pending:
            continue
        trial, c, lat = running.pop(0)
        s = score_fn(c)
        study.tell(trial, [s, lat])
        scores.append(s)
        lats.append(lat)
        curve.append(hypervolume(scores, lats, reference))
    return curve


def real_curve(space_name: str, teacher: str, sampler_name: str, seed: int, trials: int, workdir: Path) -> list[float]:
    """Hypervolume after each trained trial of one real search (every proposal trained)."""
    from nas.search import SearchConfig, outcome_of, run_search

    storage = f"sqlite:///{workdir / 'bench.db'}"
    res = run_search(SearchConfig(space=space_name, sampler=sampler_name, seed=seed, trials=trials, storage=storage,
                                  study=f"bench-{sampler_name}-{seed}", teacher=teacher, early_stop=None,
                                  threads=1, progress=False), log=lambda s: None)
    import optuna

    study = optuna.load_study(study_name=res.study_name, storage=storage)
    scores, lats, curve = [], [], []
    for t in study.trials:
        if outcome_of(t) == "complete":
            scores.append(t.values[0])
            lats.append(t.values[1])
        if outcome_of(t) in ("complete", "stopped", "failed"):
            curve.append(hypervolume(scores, lats, res.meta.reference_point))
    return curve


def first_reaching(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-12), None)


def compare(curves: dict[str, list[list[float]]], budgets: list[int], default: str) -> tuple[str, list[str]]:
    """Median hypervolume by trials, and for each budget N: after how many trials the default sampler
    reaches random search's median hypervolume at N. (A sampler does not know the budget, so the
    first N trials of a longer run are an N-trial run.)"""
    names = list(curves)
    trials = max(budgets)
    rows = []
    for n in sorted({c for c in CHECKPOINTS if c <= trials} | set(budgets)):
        row = [n]
        for name in names:
            vals = [cv[n - 1] for cv in curves[name]]
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            row.append(f"{med:.4g} [{q1:.4g}, {q3:.4g}]")
        rows.append(row)
    table = markdown_table(["trials"] + [f"{n}: median hypervolume [IQR]" for n in names], rows)
    verdicts = []
    for n in budgets:
        target = statistics.median(cv[n - 1] for cv in curves["random"])
        hits = [first_reaching(cv[:n], target) for cv in curves[default]]
        med = statistics.median([h if h is not None else math.inf for h in hits])
        within_half = sum(1 for h in hits if h is not None and h <= n / 2)
        shown = f"{med:g}" if math.isfinite(med) else f"more than {n}"
        verdicts.append(
            f"- Budget {n}: random search's median hypervolume after {n} trials is {target:.4g}; the default "
            f"sampler ({default}) reached it after a median of {shown} trials (per seed: "
            f"{', '.join(str(h) if h else '-' for h in hits)}; '-' = not within {n}), within {n // 2} trials "
            f"(half) in {within_half} of {len(hits)} seeds. Aim (at most half): "
            f"**{'met' if med <= n / 2 else 'not met'}**.")
    return table, verdicts


# ------------------------------------------------------------------------------------------------
def early_stop_section(study, meta, factors: list[float]) -> str:
    from nas.records import TrialRecord
    from nas.search import EarlyStopRule, outcome_of
    from nas.search.early_stop import ReplayTrial, replay
    from nas.search.outcomes import LAYER_SECONDS_ATTR

    trials = []
    for t in study.trials:
        if outcome_of(t) != "complete":
            continue
        r = TrialRecord.from_trial(t)
        if not r.layer_losses:
            continue
        trials.append(ReplayTrial(t.number, t.values[1], r.strategy, tuple(r.layer_losses),
                                  tuple(t.user_attrs.get(LAYER_SECONDS_ATTR) or ()), float(r.seconds or 0.0),
                                  t.values[0]))
    if len(trials) < 4:
        return f"Too few completed trials with per-layer losses in '{study.study_name}' ({len(trials)}) to replay."
    rows = []
    for f in factors:
        res = replay(trials, EarlyStopRule(factor=f), meta.reference_point)
        which = ", ".join(f"{n} at layer {layer}" for n, layer in sorted(res.stopped.items()))
        rows.append([f"{f:g}", f"{len(res.stopped)} of {res.trials}" + (f" ({which})" if which else ""),
                     f"{res.seconds_saved:.0f} of {res.seconds_total:.0f}",
                     f"{res.saved_fraction:.1%}", f"{res.hypervolume_loss:.2%}",
                     ", ".join(map(str, res.front_lost)) or "none"])
    return markdown_table(["factor", "trials stopped", "training s saved", "saved", "hypervolume lost",
                           "front trials lost"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from-storage", required=True, help="storage of a study with real trained trials")
    ap.add_argument("--from-study", required=True, help="that study (run it with --no-early-stop for part 2)")
    ap.add_argument("--proxy", choices=("capacity", "surrogate", "real"), default="capacity",
                    help="score of part 1: capacity (log10 block params), surrogate (fitted on --from-study), "
                         "real (train every proposal)")
    ap.add_argument("--space", help="space to search (default: the study's)")
    ap.add_argument("--teacher", help="teacher folder (--proxy real)")
    ap.add_argument("--samplers", default="tpe,random", help="comma-separated; the first is the default under test")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=1000,
                    help="seeds first-seed .. first-seed+seeds-1 (default 1000: apart from seeds 0-99, which may "
                         "have been looked at while choosing the samplers' settings)")
    ap.add_argument("--trials", default="12,40", help="trial budgets to judge, comma-separated (default 12,40)")
    ap.add_argument("--latency-budget-ms", type=float,
                    help="proxy searches: reject proposals predicted slower (a constraint, as in mbnas search); "
                         "the hypervolume's reference latency becomes the budget")
    ap.add_argument("--pending", type=int, default=0,
                    help="proxy searches: trials of other workers still running at each ask (1: like --jobs 2)")
    ap.add_argument("--factors", default="1.25,1.5,2", help="early-stopping factors to replay")
    ap.add_argument("--replay-only", action="store_true",
                    help="part 2 only, the early-stopping replay of --from-study (seconds, not the samplers' "
                         "half hour)")
    ap.add_argument("--note", default="", help="a paragraph to add under the header (e.g. where the study came from)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_efficiency.md")
    args = ap.parse_args(argv)

    import optuna

    from latency_models import load_profile
    from nas.search import EarlyStopRule
    from search_spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows, meta, study = real_trials(args.from_storage, args.from_study)
    space = load_space(args.space or meta.space["name"])
    profile = load_profile(meta.latency_profile)
    samplers = args.samplers.split(",")
    budgets = sorted(int(x) for x in args.trials.split(","))
    args.trials = max(budgets)
    t0 = time.time()
    shown = [a for a in (sys.argv[1:] if argv is None else argv)]
    if "--note" in shown:  # the note is printed below, not in the command line
        i = shown.index("--note")
        shown[i + 1] = "'...'"
    command = "python benchmarks/search_efficiency.py " + " ".join(shown)
    lines = ["# Search efficiency\n",
             f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}.\n",
             f"Source study: `{args.from_study}` ({len(rows)} completed trials; space `{meta.space['name']}`, strategy "
             f"`{meta.strategy}`, teacher `{meta.teacher_hash}`, score `{meta.score_name}` on {meta.score_data}; "
             f"latency predicted on `{meta.latency_profile}` ({meta.latency_error})).\n"]
    if args.note:
        lines.append(args.note + "\n")
    if not args.replay_only:  # part 1
        reference = meta.reference_point
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        if args.proxy == "capacity":
            from search_spaces.space import RandomSuggester

            rng = RandomSuggester(0)
            floor = min(capacity(space.suggest(rng)) for _ in range(512))
            reference = (floor - 0.1, reference[1])  # the proxy's own scale: just below the smallest candidate
            lines.append(f"## 1. Default sampler vs random search: PROXY score\n\n"
                         f"Score = log10(parameters inside the transformer blocks), a deterministic stand-in for "
                         f"accuracy (more capacity, diminishing returns) that needs no training; latency = the real "
                         f"`{meta.latency_profile}` predictor. Space `{space.name}` in full ({space.size:,} "
                         f"combinations), {args.seeds} seeds ({args.first_seed}-{args.first_seed + args.seeds - 1}) "
                         f"x {args.trials} trials per sampler, samplers exactly as "
                         f"`mbnas search` builds them, hypervolume against the fixed reference point "
                         f"(log10 params {reference[0]:.3f}, {reference[1]:.4g} ms). It measures how fast each sampler "
                         f"finds the capacity/latency front of the real space and predictor; not accuracy.\n")
            score_fn = capacity
        elif args.proxy == "surrogate":
            score_fn = fit_surrogate([c for c, _, _ in rows], [s for _, s, _ in rows])
            spread = float(np.std([s for _, s, _ in rows]))
            lines.append(f"## 1. Default sampler vs random search: PROXY score\n\n"
                         f"Score = ridge regression on candidate shape fitted to the {score_fn.n} real trials above "
                         f"(leave-one-out mean absolute error {score_fn.loo_mae:.4f}; the real "
                         "scores' standard deviation "
                         f"is {spread:.4f}), evaluated without noise; latency = the real predictor. "
                         f"Space `{space.name}` "
                         f"in full, {args.seeds} seeds x {args.trials} trials per sampler, reference "
                         f"point {reference}. "
                         "This measures how fast each sampler finds the front of a smooth stand-in "
                         "for the real score, "
                         f"not of the real, noisy one.\n")
        else:
            score_fn = None
            lines.append(f"## 1. Default sampler vs random search: every proposal trained\n\n"
                         f"Space `{space.name}`, {args.seeds} seeds x {args.trials} trials per sampler.\n")
        if score_fn is not None:
            if args.latency_budget_ms is not None:
                reference = (reference[0], args.latency_budget_ms)
            tallies = {name: Tally() for name in samplers}
            curves = {name: [proxy_curve(space, profile, score_fn, name, seed, args.trials, reference,
                                         args.latency_budget_ms, args.pending, tallies[name]) for seed in seeds]
                      for name in samplers}
            lines.append("Trials are handled as `mbnas search` handles them: a proposal that repeats a trained (or "
                         "running) candidate"
                         + (f" or is predicted over the budget of {args.latency_budget_ms:g} ms (a study constraint)"
                            if args.latency_budget_ms is not None else "")
                         + " is rejected untrained and does not count as a trial"
                         + (f"; {args.pending} other worker's trial(s) are still running whenever a trial is asked "
                            f"(as with `--jobs {args.pending + 1}`)" if args.pending else "")
                         + ".\n")
            lines += [markdown_table(
                ["sampler", "proposals", "rejected repeats", "rejected over budget", "searches stuck",
                 "sampler s per proposal"],
                [[name, t.asks, t.repeats, t.over_budget, t.stuck, f"{t.seconds / max(1, t.asks):.3f}"]
                 for name, t in tallies.items()]), ""]
        else:
            import tempfile

            work = Path(tempfile.mkdtemp(prefix="bench-"))
            curves = {name: [real_curve(space.name, args.teacher, name, seed, args.trials, work) for seed in seeds]
                      for name in samplers}
        table, verdicts = compare(curves, budgets, samplers[0])
        lines += [table, "", *verdicts, ""]
    lines += ["## 2. Per-layer early stopping, replayed\n",
              f"`nas.search.early_stop.replay` over the trials of `{args.from_study}` in order (the rule sees only "
              f"trials it would itself have let finish; a replay cannot show how the sampler would have reacted). "
              f"Rule (factor varied below): {EarlyStopRule().describe()}.\n",
              early_stop_section(study, meta, [float(x) for x in args.factors.split(",")]), ""]
    lines.append(f"Wall time of this benchmark: {time.time() - t0:.0f} s.\n")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
