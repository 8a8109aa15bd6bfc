"""Knowledge-transfer strategies compared on one budget (recipe 2), against fair baselines.

On the demo space, one mid-size candidate trained by progressive, joint, auxiliary, theseus
(curriculum), theseus-constant and the no-transfer baseline (``none``: the teacher's embeddings and
MLM head, trained, with fresh blocks), the same number of optimiser steps, several seeds; mean and
spread of every held-out score. Two "inherited parts only" rows, not trained at all, show what
the inherited embeddings and head score alone: the teacher with its blocks skipped (the MLM head
on the embeddings) and the candidate with fresh, untrained blocks.

    python benchmarks/transfer_strategies.py [--seeds 3] [--jobs 2]

Every finished run is one line of benchmarks/results/transfer_strategies-runs.jsonl (resumable;
keyed by recipe version, teacher, strategy and seed). Which score ranks candidates like longer
training does is benchmarks/proxy_validity.py's question, no longer this one's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import RESULTS, RunsFile, mean_std, write_result  # noqa: E402
from benchmarks._train import run_all, teacher_of  # noqa: E402

MID = dict(intra_size=64, num_ffn=2, mha_ffn_ratio=0.4, norm="no_norm", act="relu", attention="shared_qk")
RUNS = RESULTS / "transfer_strategies-runs.jsonl"
SHOWN = ("mlm_accuracy", "heldout_ce", "teacher_fidelity", "top1_agreement", "block_fidelity")


def store_of() -> RunsFile:
    from nas.distill.settings import RECIPE_VERSION

    return RunsFile(RUNS, f"recipe{RECIPE_VERSION}")


def plan(seeds: int, strategies=None) -> list[tuple[str, dict]]:
    from nas.distill import STRATEGIES

    space, teacher = teacher_of("demo")
    c = space.build(**MID)
    return [(RunsFile.key(teacher.hash, c.label, st, seed), dict(space="demo", candidate=c.to_dict(), strategy=st,
                                                                 seed=seed, threads=1, name=st))
            for seed in range(seeds) for st in (strategies or STRATEGIES)]


def inherited_only(space, teacher) -> dict[str, dict[str, float]]:
    """Scores of the inherited parts alone: the teacher with no blocks, and the mid candidate with
    fresh (untrained) blocks, on the same held-out batches."""
    from nas.distill import DistillSettings
    from nas.distill.teacher_cache import teacher_cache
    from nas.distill.train import init_student
    from nas.mlm import evaluate_mlm, score_with_floor

    cache = teacher_cache(teacher, DistillSettings.for_space(space))
    out = {}
    student = init_student(space.build(**MID), teacher, from_teacher=True, seed=0)
    out["untrained blocks (inherited embeddings + head)"] = evaluate_mlm(
        student, cache.heldout, teacher=teacher.model, teacher_hidden=cache.heldout_hidden).as_dict()
    own, skipped = score_with_floor(teacher.model, cache.heldout)  # skipped: the MLM head reads the embeddings
    out["teacher with its blocks skipped"] = {"mlm_accuracy": skipped.mlm_accuracy, "heldout_ce": skipped.heldout_ce}
    out["the teacher"] = {"mlm_accuracy": own.mlm_accuracy, "heldout_ce": own.heldout_ce}
    return out


def _claims(done: list[dict]) -> str:
    """The paper's claims, and distillation against the fair baseline, as the runs find them (held-out
    cross-entropy, lower is better; a difference within the larger seed std is called level)."""
    def of(st):
        return mean_std([r["scores"]["heldout_ce"] for r in done if r["strategy"] == st])

    have = {r["strategy"] for r in done}
    if not {"progressive", "joint", "auxiliary", "theseus", "theseus-constant", "none"} <= have:
        return ""

    def compare(a, b):
        (ma, sa), (mb, sb) = of(a), of(b)
        verdict = "level" if abs(ma - mb) <= max(sa, sb) else (f"{a} better" if ma < mb else f"{b} better")
        return f"{a} {ma:.4f} ± {sa:.4f} vs {b} {mb:.4f} ± {sb:.4f}: {verdict}"

    return ("\n## The paper's claims, as found here (held-out cross-entropy)\n\n"
            f"- progressive beats joint and auxiliary (MobileBERT): {compare('progressive', 'joint')}; "
            f"{compare('progressive', 'auxiliary')}.\n"
            f"- the curriculum beats a constant rate (BERT-of-Theseus): {compare('theseus', 'theseus-constant')}.\n"
            f"- layer-wise transfer beats the fair no-transfer baseline: {compare('progressive', 'none')}; "
            f"{compare('joint', 'none')}.\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only write the table of the runs so far")
    args = ap.parse_args()

    from nas.distill import STRATEGIES, DistillSettings
    from nas.teacher import describe
    from search_spaces.ops import count

    space, teacher = teacher_of("demo")
    store = store_of()
    runs = plan(args.seeds, args.strategies)
    if not args.report:
        run_all([(k, s) for k, s in runs if k not in store.done], store, args.jobs)
    mid = space.build(**MID)
    done = [store.done[k] for k, _ in runs if k in store.done and "failure" not in store.done[k]]
    data = next((r["data"] for r in done), "(no run yet)")
    rows = []
    for st in args.strategies or STRATEGIES:
        sel = [r for r in done if r["strategy"] == st]
        if not sel:
            rows.append(f"| {st} | (not run yet) |" + " |" * (len(SHOWN) + 1))
            continue
        cells = [f"{m:.4f} ± {s:.4f}" for m, s in (mean_std([r["scores"][k] for r in sel]) for k in SHOWN)]
        rows.append(f"| {st} | {len(sel)} | " + " | ".join(cells)
                    + f" | {statistics.median(r['train_s'] for r in sel):.0f} |")
    for name, sc in inherited_only(space, teacher).items():
        rows.append(f"| *{name}* | - | " + " | ".join(f"{sc[k]:.4f}" if k in sc else "-" for k in SHOWN) + " | 0 |")
    b = DistillSettings.for_space(space)
    body = (f"Teacher: {describe(teacher)}\n\nCandidate: {mid.label} ({count(mid).params_m:.2f}M params). Budget per "
            f"run: {space.fixed['num_layers']} x {b.layer_steps} layer-wise steps + {b.pd_steps} distillation steps "
            f"(or the same number of masked-LM steps), batch {b.batch_size} x {space.fixed['seq_len']} tokens, recipe "
            f"2 (fresh batches, peak lr {b.lr:g} with warm-up and linear decay per stage); mean ± standard deviation "
            f"over seeds; one torch thread a run, {args.jobs} at a time; train s = median wall time of training.\n"
            f"Scores measured on the {data}.\n\n| strategy | seeds | " + " | ".join(SHOWN) + " | train s |\n|"
            + "---|" * (len(SHOWN) + 3) + "\n" + "\n".join(rows)
            + "\n\nheldout_ce: held-out cross-entropy of the masked tokens (nats); teacher_fidelity = "
            "exp(-KL(teacher || student)). "
            "Every strategy, `none` included, starts from the teacher's embeddings and MLM head; Theseus trains "
            "only the blocks, and a demo successor narrower than the teacher copies only its inter-block-width "
            "tensors from its predecessor.\n")
    body += _claims(done)
    write_result("transfer_strategies", "Knowledge-transfer strategies (recipe 2)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
