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
    write_result("recipe", "Training recipe 2: learning rate, fresh data, progressive release", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
