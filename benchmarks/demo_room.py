"""Room for quality in the demo: how much of a demo teacher's held-out masked-LM quality its blocks
(the part a search changes) provide, for candidate demo designs, measured before choosing one.

    python benchmarks/demo_room.py [--steps 3000] [--lr 3e-3] [--jobs 2] [--variants 4k-trigram 4k-plain]
    python benchmarks/demo_room.py --steps 6000 --variants 4k-trigram-span3 4k-trigram-span5 [--seeds 0 1 2]
    python benchmarks/demo_room.py --steps 6000 --lr 1e-3 --warmup 600 --variants 4k-plain
    python benchmarks/demo_room.py --report

Each variant pre-trains the demo teacher's shape (4 blocks, width 128, intra-block 256, FFN 1024,
sequence 64, batch 64, AdamW peak --lr, --warmup steps (200, the demo teacher's) then linear decay,
bf16 autocast, one thread:
``nas.teacher.pretrain``, the teacher's own loop),
changing only the vocabulary, the embedding and the masking, and scores it along the way on the held-out split:
the teacher itself, and the same model with its blocks skipped (the MLM head on the embeddings).
``room`` is the difference: what the blocks add. Points before the last are mid-schedule (the rate
has not decayed yet). One line per variant in ``benchmarks/results/demo_room-runs.jsonl``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import RESULTS, RunsFile, write_result  # noqa: E402
from search_spaces.masking import BERT_MASKING, Masking  # noqa: E402

RUNS = RESULTS / "demo_room-runs.jsonl"
# name -> (vocabulary, trigram_input, masking: mean span 1 is BERT's token masking, else SpanBERT's)
VARIANTS = {
    "bert-trigram": ("bert-uncased", True, Masking()),  # the demo until 0.4 (its teacher: docs/FACTS.md section 7)
    "4k-trigram": ("news-wiki-4k", True, Masking()),
    "4k-plain": ("news-wiki-4k", False, Masking()),
    "bert-plain": ("bert-uncased", False, Masking()),
    "4k-trigram-span3": ("news-wiki-4k", True, Masking(mean_span=3)),
    "4k-trigram-span5": ("news-wiki-4k", True, Masking(mean_span=5)),  # SpanBERT's p = 0.2
    # 40% of tokens (Wettig et al. 2023): a target's two neighbours are both visible 36% of the time, not 72%
    "4k-trigram-rate40": ("news-wiki-4k", True, Masking(rate=0.4)),
}
EVAL_BATCHES = 40  # x 32 windows, as a teacher's own held-out record
# the demo teacher's peak rate and warm-up: the first runs were made at them before either was an option
LR, WARMUP = 3e-3, 200


def train_variant(name: str, steps: int, lr: float, seed: int = 0, warmup: int = WARMUP, threads: int = 1) -> dict:
    import dataclasses

    import torch

    from nas.data.corpus import heldout_batches, load_corpus
    from nas.mlm import score_with_floor
    from nas.models import build_masked_lm
    from nas.teacher import pretrain, recipe_for
    from search_spaces import load_space

    torch.set_num_threads(threads)
    vocab, trigram, masking = VARIANTS[name]
    space = load_space("demo")
    corpus = load_corpus(vocab=vocab)
    cand = dataclasses.replace(space.teacher, vocab_size=corpus.vocab.size, trigram_input=trigram)
    recipe = dataclasses.replace(recipe_for(space), steps=steps, lr=lr, warmup=warmup, batch_size=64, seed=seed,
                                 precision="bf16", masking=masking)
    model = build_masked_lm(cand, seed=seed).train()
    held = heldout_batches(corpus.heldout, cand.seq_len, 32, max_batches=EVAL_BATCHES, masking=masking,
                           vocab=corpus.vocab)
    # the same model under BERT's token masking too: what a span-trained teacher gives up on it
    held_bert = held if masking == BERT_MASKING else \
        heldout_batches(corpus.heldout, cand.seq_len, 32, max_batches=EVAL_BATCHES, vocab=corpus.vocab)
    marks, curve, t0 = {steps // 8, steps // 4, steps // 2, 3 * steps // 4, steps}, [], time.time()

    def mark(step: int) -> None:
        if step not in marks:
            return
        own = score_with_floor(model, held)  # back in training mode afterwards
        bert = own if held_bert is held else score_with_floor(model, held_bert)
        curve.append({"step": step, "minutes": round((time.time() - t0) / 60, 1), **four_numbers(own),
                      "n_masked": own.full.n_masked, "token_masking": four_numbers(bert)})
        print(f"[{name} lr {lr:g} warm-up {warmup} seed {seed}] step {step}: {own.full.mlm_accuracy:.2%} / "
              f"blocks skipped {own.floor.mlm_accuracy:.2%}", flush=True)

    pretrain(model, corpus, cand.seq_len, recipe, "cpu", log=lambda line: None, on_step=mark)
    return {"variant": name, "vocab": vocab, "trigram_input": trigram, "masking": masking.label, "steps": steps, "lr": lr, "warmup": warmup, "seed": seed,
            "threads": threads,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "data": corpus.shown,
            "n_masked": curve[-1]["n_masked"], "curve": curve}


def variant_runs(store: RunsFile) -> list[dict]:
    """The recorded training runs (``--fit`` records sit in the same file)."""
    return [r for r in store.done.values() if "curve" in r]


def four_numbers(s) -> dict[str, float]:
    """A ``nas.mlm.ScoresWithFloor`` as this benchmark records it: accuracy and cross-entropy of the
    model, then of the same model with its blocks skipped."""
    return {"mlm_accuracy": s.full.mlm_accuracy, "heldout_ce": s.full.heldout_ce,
            "skipped_mlm_accuracy": s.floor.mlm_accuracy, "skipped_heldout_ce": s.floor.heldout_ce}


def run_id(rec: dict) -> tuple:
    """What makes a recorded run: (variant, steps, lr, seed, warm-up), the first runs' missing fields
    read as the values they were made with."""
    return rec["variant"], rec["steps"], rec.get("lr", LR), rec.get("seed", 0), rec.get("warmup", WARMUP)


def _job(args: tuple[str, int, float, int, int, int]) -> dict:
    return train_variant(*args)


def shipped_teacher() -> str:
    """The demo's committed teacher as the reference row: the 4k-trigram variant at 6,000 steps,
    trained by 'mbnas teacher train' on two threads."""
    import json

    from nas.teacher import ASSET_DIR

    lines = []
    for meta_path in sorted(ASSET_DIR.glob("demo-*/teacher.json")):
        meta = json.loads(meta_path.read_text())
        h, f = meta["heldout"], meta["heldout"]["blocks_skipped"]
        lines.append(f"Reference: the shipped demo teacher {meta['hash']} ({meta['recipe']['steps']} steps, "
                     f"{meta.get('vocab')}, token masking, lr {meta['recipe']['lr']:g}, {meta['threads']} threads): "
                     f"{h['mlm_accuracy']:.2%} / blocks skipped {f['mlm_accuracy']:.2%}, room "
                     f"{100 * (h['mlm_accuracy'] - f['mlm_accuracy']):.1f} points, "
                     f"{f['heldout_ce'] - h['heldout_ce']:.3f} nats.\n\n")
    return "".join(lines)


def teacher_fit() -> dict:
    """The shipped demo teacher scored on training windows and on as many held-out windows (BERT's
    masking, blocks run and skipped): a small gap says it does not overfit the corpus, so more text
    would not lift it."""
    import torch

    from nas.data.corpus import heldout_batches, load_corpus
    from nas.mlm import score_with_floor
    from nas.teacher import load_teacher
    from search_spaces import load_space

    torch.set_num_threads(1)
    t = load_teacher(load_space("demo"))
    corpus = load_corpus(vocab=t.vocab)
    rec = {"kind": "fit", "teacher": t.hash, "data": corpus.shown}
    for split, tokens in (("train", corpus.train), ("heldout", corpus.heldout)):
        batches = heldout_batches(tokens, t.candidate.seq_len, 32, max_batches=EVAL_BATCHES, vocab=corpus.vocab)
        rec[split] = four_numbers(score_with_floor(t.model, batches))
    return rec


def fit_lines(store: RunsFile) -> str:
    lines = []
    for rec in store.done.values():
        if rec.get("kind") == "fit":
            tr, ho = rec["train"], rec["heldout"]
            lines.append(f"Fit of the shipped teacher {rec['teacher']} (`--fit`, {EVAL_BATCHES} x 32 windows each, "
                         f"BERT's masking): on training windows {tr['mlm_accuracy']:.2%} (blocks skipped "
                         f"{tr['skipped_mlm_accuracy']:.2%}), on held-out windows {ho['mlm_accuracy']:.2%} "
                         f"({ho['skipped_mlm_accuracy']:.2%}): a gap of "
                         f"{100 * (tr['mlm_accuracy'] - ho['mlm_accuracy']):.1f} points, so it does not "
                         "overfit the corpus: more text would not lift it, a larger model or more steps might.\n\n")
    return "".join(lines)


def report(store: RunsFile) -> str:
    rows = ["| variant | seed | vocabulary | trigram input | masking | peak lr | warm-up | step | minutes | MLM acc | CE | "
            "blocks skipped: acc | CE | room (acc points) | room (CE) | on token masking: acc / skipped / room |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def order(rec: dict) -> tuple:  # by length, variant, lr, warm-up, seed
        variant, steps, lr, seed, warmup = run_id(rec)
        return steps, variant, lr, warmup, seed

    runs = variant_runs(store)
    for rec in sorted(runs, key=order):
        minutes_note = f" ({rec['threads']} threads)" if rec.get("threads", 1) != 1 else ""
        for p in rec["curve"]:
            last = p is rec["curve"][-1]
            mark = "**" if last else ""
            tok = p.get("token_masking")  # runs before span masking had only token masking
            on_tokens = "(same)" if tok is None or rec.get("masking", BERT_MASKING.label) == BERT_MASKING.label else (
                f"{tok['mlm_accuracy']:.2%} / {tok['skipped_mlm_accuracy']:.2%} / "
                f"{100 * (tok['mlm_accuracy'] - tok['skipped_mlm_accuracy']):.1f}")
            rows.append(f"| {rec['variant']} | {rec['seed']} | {rec['vocab']} | {rec['trigram_input']} | "
                        f"{rec.get('masking', BERT_MASKING.label)} | {rec.get('lr', LR):g} | {rec.get('warmup', WARMUP)} | "
                        f"{mark}{p['step']}{mark} | "
                        f"{p['minutes']}{minutes_note} | {p['mlm_accuracy']:.2%} | {p['heldout_ce']:.3f} | "
                        f"{p['skipped_mlm_accuracy']:.2%} | {p['skipped_heldout_ce']:.3f} | "
                        f"{mark}{100 * (p['mlm_accuracy'] - p['skipped_mlm_accuracy']):.1f}{mark} | "
                        f"{p['skipped_heldout_ce'] - p['heldout_ce']:.3f} | {on_tokens} |")
    data = {r["data"] for r in runs}
    return (shipped_teacher() + fit_lines(store) + "Held-out masked-token accuracy and cross-entropy of a demo-shaped teacher, and of the same model with "
            "its blocks skipped (MLM head on the embeddings); room = what the blocks add, on held-out text masked "
            "as the run was trained (masking: token-RATE is BERT's rule, span-RATE-meanM-maxK SpanBERT's); the last "
            "column scores the same model on BERT's token masking. Bold: the end of the schedule; earlier rows are "
            "mid-schedule. One thread each unless the minutes say otherwise, bf16 autocast.\n\n"
            + "\n".join(rows) + "\n\nHeld-out data: " + "; ".join(sorted(data)) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, nargs="+", default=[LR],
                   help="AdamW peak rates, one run each (default 3e-3, the demo teacher's)")
    p.add_argument("--warmup", type=int, default=WARMUP, help="linear warm-up steps (default 200, the demo teacher's)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1: two runs share two cores)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="model and data seeds (span masking at lr 3e-3 trained in one run and not in another)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["4k-trigram", "4k-plain"])
    p.add_argument("--report", action="store_true", help="the table from the runs so far")
    p.add_argument("--fit", action="store_true",
                   help="score the shipped teacher on training and on held-out windows (is it limited by the data?)")
    args = p.parse_args()
    store = RunsFile(RUNS, code="demo-room-1")
    if args.fit:
        rec = teacher_fit()
        store.add(RunsFile.key("fit", rec["teacher"]), rec, lock=True)
    elif not args.report:
        done = {run_id(r) for r in variant_runs(store)}
        todo = [(v, args.steps, lr, seed, args.warmup, args.threads) for seed in args.seeds for lr in args.lr for v in args.variants
                if (v, args.steps, lr, seed, args.warmup) not in done]  # train_variant's arguments, run_id's first
        with multiprocessing.get_context("spawn").Pool(max(1, min(args.jobs, len(todo) or 1))) as pool:
            for rec in pool.imap_unordered(_job, todo):
                # seed 0 and the 200-step warm-up keep the keys of the runs made before they were choosable
                extra = ((rec["seed"],) if rec["seed"] else ()) + ((f"warmup{rec['warmup']}",) if rec["warmup"] != WARMUP else ())
                store.add(RunsFile.key(rec["variant"], rec["steps"], rec["lr"], *extra), rec, lock=True)
    write_result("demo_room", "Room for quality in demo designs (what the teacher's blocks add)", report(store))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
