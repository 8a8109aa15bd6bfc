"""The training recipe (recipe 2), measured on the demo space with the two students of the recipe
issue: small = b16-f1-i64-nn-relu-bqkv, large = b128-f4-i256-ln-gelu-sqk (progressive, one thread each).

    python benchmarks/recipe.py sweep     # the AdamW peak rate: held-out scores at the search budget
    python benchmarks/recipe.py data      # fresh batches every step, at 1x and 5x the search budget
    python benchmarks/recipe.py release   # progressive transfer as TF1 or TF2 released it, 2 seeds
    python benchmarks/recipe.py report    # the table from the runs so far

Every run is a line of benchmarks/results/recipe-runs.jsonl (resumable: a rerun does only the
missing runs; a run is keyed by the recipe version, teacher, candidate and settings).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import RESULTS, RunsFile, write_result  # noqa: E402
from benchmarks._train import run_all, teacher_of  # noqa: E402

STUDENTS = {
    "small": dict(intra_size=16, num_ffn=1, mha_ffn_ratio=0.5, norm="no_norm", act="relu", attention="bottleneck"),
    "large": dict(intra_size=128, num_ffn=4, mha_ffn_ratio=0.25, norm="layer_norm", act="gelu", attention="shared_qk"),
}
SWEEP_LRS = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3)
RUNS = RESULTS / "recipe-runs.jsonl"


def _plan(part: str, lr: float) -> list[tuple[str, str, int, dict]]:
    """(name, student, seed, overrides) of a part."""
    space, _ = teacher_of("demo")
    base = space.distill_budget
    five = dict(layer_steps=5 * base["layer_steps"], pd_steps=5 * base["pd_steps"])
    if part == "sweep":
        return [(f"lr {x:g}", st, 0, dict(lr=x)) for x in SWEEP_LRS for st in STUDENTS]
    if part == "data":  # recipe 1 at 5x (64 fixed batches, constant rate): the recipe issue's table
        return [(f"fresh {m}x", st, 0, dict(lr=lr, **(five if m == 5 else {}))) for m in (1, 5) for st in STUDENTS]
    return [(rel, st, seed, dict(lr=lr, **({"layerwise_release": rel} if rel != "tf1" else {})))
            for rel in ("tf1", "tf2") for st in STUDENTS for seed in (0, 1)]


def _key(teacher, name, st, seed, ov) -> str:
    return RunsFile.key(teacher.hash, st, seed, *sorted(f"{k}={v}" for k, v in ov.items()))


def store_of() -> RunsFile:
    from nas.distill.settings import RECIPE_VERSION

    return RunsFile(RUNS, f"recipe{RECIPE_VERSION}")


def todo(part: str, store: RunsFile) -> list[tuple[str, dict]]:
    """(key, spec) of the runs of ``part`` not yet in ``store``."""
    from nas.distill import DistillSettings

    space, teacher = teacher_of("demo")
    out = []
    for p in _plan(part, DistillSettings.for_space(space).lr):
        if _key(teacher, *p) not in store.done:
            out.append((_key(teacher, *p), dict(space="demo", candidate=space.build(**STUDENTS[p[1]]).to_dict(),
                                                 strategy="progressive", seed=p[2], overrides=p[3], threads=1,
                                                 name=p[0])))
    return out


def _findings(store, teacher, lr: float) -> str:
    """What the runs say, computed from them (a part not run yet is skipped)."""
    def ce(part, name, st, seed=0):
        ov = next(p[3] for p in _plan(part, lr) if p[0] == name and p[1] == st and p[2] == seed)
        r = store.done.get(_key(teacher, name, st, seed, ov))
        return None if r is None or "failure" in r else r["scores"]

    out = ["\n## Findings\n"]
    best = {st: min(SWEEP_LRS, key=lambda x: (ce("sweep", f"lr {x:g}", st) or {"heldout_ce": 9e9})["heldout_ce"])
            for st in STUDENTS}
    rng = {st: [ce("sweep", f"lr {x:g}", st)["heldout_ce"] for x in SWEEP_LRS if ce("sweep", f"lr {x:g}", st)]
           for st in STUDENTS}
    out.append(f"- Peak rate: lowest held-out cross-entropy at {', '.join(f'{st} {x:g}' for st, x in best.items())}; "
               f"the default is {lr:g}. Cross-entropy over the sweep: "
               + ", ".join(f"{st} {min(v):.3f}-{max(v):.3f}" for st, v in rng.items() if v) + " (one seed each).")
    for st in STUDENTS:
        a, b = ce("data", "fresh 1x", st), ce("data", "fresh 5x", st)
        if a and b:
            out.append(f"- {st}, fresh batches, 1x -> 5x: accuracy {a['mlm_accuracy']:.4f} -> {b['mlm_accuracy']:.4f}, "
                       f"cross-entropy {a['heldout_ce']:.3f} -> {b['heldout_ce']:.3f}, teacher KL {a['teacher_kl']:.3f} "
                       f"-> {b['teacher_kl']:.3f}: "
                       + ("better with more training." if b["heldout_ce"] < a["heldout_ce"] else "NOT better with more training."))
    for st in STUDENTS:
        runs = {(rel, seed): ce("release", rel, st, seed) for rel in ("tf1", "tf2") for seed in (0, 1)}
        if all(runs.values()):
            d = [runs[("tf2", k)]["heldout_ce"] - runs[("tf1", k)]["heldout_ce"] for k in (0, 1)]
            spread = abs(runs[("tf1", 0)]["heldout_ce"] - runs[("tf1", 1)]["heldout_ce"])
            out.append(f"- {st}, TF2 - TF1 cross-entropy: {d[0]:+.4f} / {d[1]:+.4f} (seeds 0 / 1); TF1's spread between "
                       f"seeds {spread:.4f}.")
    out.append("- The default stays TF1, the paper's own release. Where TF2 scores lower cross-entropy in every pair above "
               "(about 1-2x the seed spread), that is a measured difference in TF2's favour; switching the default "
               "would change the recipe the ground truth is being trained with, so it waits for a rerun of it. "
               "`--layerwise-release tf2` uses TF2.")
    return "\n".join(out) + "\n"


def main() -> int:
    from nas.distill import DistillSettings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("sweep", "data", "release", "report"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    space, teacher = teacher_of("demo")
    lr = DistillSettings.for_space(space).lr
    store = store_of()
    parts = ("sweep", "data", "release") if args.part == "report" else (args.part,)
    plans = {p: _plan(p, lr) for p in parts}

    if args.part != "report":
        run_all(todo(args.part, store), store, args.jobs)
    body = (f"Teacher {teacher.hash} (held-out masked-token accuracy {teacher.meta['heldout']['mlm_accuracy']:.4f}); "
            f"demo budget 1x = {space.fixed['num_layers']} x {space.distill_budget['layer_steps']} layer-wise + "
            f"{space.distill_budget['pd_steps']} distillation steps, batch 32 x 64; progressive, fp32, one thread a "
            f"run, two runs at a time. Scores on the demo's fixed held-out windows; train s is wall time.\n")
    for part in parts:
        rows = []
        for name, st, seed, ov in plans[part]:
            r = store.done.get(_key(teacher, name, st, seed, ov))
            if r is None:
                rows.append(f"| {name} | {st} | {seed} | (not run) | | | |")
                continue
            if "failure" in r:
                rows.append(f"| {name} | {st} | {seed} | failed: {r['failure']} | | | |")
                continue
            s = r["scores"]
            rows.append(f"| {name} | {st} | {seed} | {s['mlm_accuracy']:.4f} | {s['heldout_ce']:.3f} | "
                        f"{s['teacher_kl']:.3f} | {r['train_s']:.0f} "
                        f"({r['teacher_passes']} teacher passes) |")
        body += (f"\n## {part}\n\n| run | student | seed | mlm_accuracy | heldout_ce | teacher_kl | "
                 f"train s |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    body += _findings(store, teacher, lr)
    body += ("\nteacher passes: what the run itself computed; the first run of a worker process computes the teacher's "
             "outputs on the stream (kept in memory and spilled to files), later runs of the same stream reuse them. "
             "Recipe 1 at 5x, for comparison (64 fixed batches cycled, constant rate 1.5e-3; measured 2026-12-06 with "
             "mbnas 0.2.0, recipe issue): small 27.5% -> 25.8% accuracy and CE ~5.0 -> 5.29 from 1x to 5x, large "
             "27.5% -> 25.1% and ~5.0 -> 5.30: worse with more training.\n")
    write_result("recipe", "Training recipe 2: learning rate, fresh data, progressive release", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
