"""The GPU path, end to end, in one command: writes a report of what ran, what it measured, and
what differed from the CPU.

    python scripts/gpu_check.py --device cuda --out benchmarks/results/gpu_check.md   # on a GPU machine
    python scripts/gpu_check.py --device cpu --space smoke --out REPORT.md             # the dry run (in the suite)

Steps (each timed; a failing step is reported and the rest still run; the exit status is 1 if any failed):
1. environment: torch, CUDA, the device and its bf16 dense peak;
2. ``mbnas teacher train --space smoke`` and a short teacher run of ``--space`` on the device:
   tokens/s, as a share of the bf16 peak (6 x params FLOPs a token);
3. ``mbnas distill`` of two candidates in bf16 and in fp32 on the device, and in fp32 on the CPU
   (same seed): the scores side by side, and the largest difference;
4. ``mbnas search --device D --jobs 2 --trials 4`` into SQLite, ``kill -9`` of the search while
   trials train, the same command again: 4 trials complete, none left RUNNING;
5. ``mbnas export`` of the knee, loaded by stock transformers on the device, one fill-mask pass;
6. on a GPU: the largest ``mobilebert``-space candidate that trains one step, and at which batch.

``scripts/gpu-check.sh`` installs the project first (a GPU machine has the CUDA build of the pinned
torch) and runs this with the report under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device-name substring
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
                    "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


class Report:
    def __init__(self, path: Path) -> None:
        self.path, self.lines, self.failed = path, [], []

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)
        self.path.write_text("\n".join(self.lines) + "\n")

    def step(self, title: str, fn) -> object:
        self.add(f"\n## {title}\n")
        t0 = time.time()
        try:
            out = fn()
            self.add(f"\n({time.time() - t0:.0f} s)")
            return out
        except Exception as exc:  # noqa: BLE001 - a step's failure is a finding, the rest still runs
            self.failed.append(title)
            self.add(f"**failed** after {time.time() - t0:.0f} s: `{type(exc).__name__}: {exc}`\n\n```\n"
                     f"{traceback.format_exc()[-3000:]}```")
            return None


def mbnas(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nas", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} ... exited {r.returncode}: {r.stderr.strip()[-800:]}")
    return r


def peak_tflops(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def environment(rep: Report, device: str) -> None:
    import torch

    rep.add(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        rep.add(f"- device: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
                f"{torch.cuda.device_count()} GPU(s); bf16 dense peak {peak_tflops(device) or 'unknown'} TFLOP/s")
    else:
        rep.add(f"- device: CPU ({os.cpu_count()} cores): the dry run of the GPU steps")


def teachers(rep: Report, work: Path, space: str, device: str, steps: int) -> Path:
    from search_spaces.candidate import Candidate
    from search_spaces.ops import count

    out = {}
    for name, extra in (("smoke", []), (space, ["--steps", str(steps)])):
        folder = work / f"teacher-{name}"
        mbnas("teacher", "train", "--space", name, "--device", device, "--out", str(folder), *extra)
        meta_path = next(folder.glob("*/teacher.json"))
        meta = json.loads(meta_path.read_text())
        params = count(Candidate.from_dict(meta["candidate"])).params
        tps = meta["tokens_seen"] / meta["seconds"]
        peak = peak_tflops(device)
        share = f", {6 * params * tps / (peak * 1e12):.1%} of the bf16 peak" if peak else ""
        rep.add(f"- teacher `{name}`: {meta['recipe']['steps']} steps, {tps:,.0f} tokens/s{share}; held-out "
                f"masked-token accuracy {meta['heldout']['mlm_accuracy']:.4f}")
        out[name] = meta_path.parent
    return out[space]


def distills(rep: Report, work: Path, space_name: str, teacher: Path, device: str) -> None:
    from search_spaces import load_space

    space = load_space(space_name)
    cands = space.sample(2, seed=7)
    runs = [(device, "bf16"), (device, "fp32")] + ([("cpu", "fp32")] if device != "cpu" else [])
    rows, scores = [], {}
    for c in cands:
        path = c.save(work / f"{c.label}.json")
        for dev, prec in runs:
            r = json.loads(mbnas("distill", "--space", space_name, "--arch", str(path), "--teacher", str(teacher),
                                 "--device", dev, "--precision", prec, "--seed", "0", "--json").stdout)
            scores[(c.label, dev, prec)] = r
            rows.append(f"| {c.label} | {dev} | {r['precision']} | {r['mlm_accuracy']:.4f} | {r['heldout_ce']:.4f} | "
                        f"{r['block_fidelity']:.4f} | {r['seconds']:.1f} |")
    rep.add("| candidate | device | trained in | mlm_accuracy | heldout_ce | block_fidelity | s |\n|---|---|---|---|---|---|---|")
    rep.add("\n".join(rows))
    for c in cands:
        ref = scores[(c.label, runs[-1][0], "fp32")]
        for dev, prec in runs[:-1]:
            d = scores[(c.label, dev, prec)]
            worst = max(("mlm_accuracy", "heldout_ce", "block_fidelity"), key=lambda k: abs(d[k] - ref[k]))
            rep.add(f"- {c.label}: {dev} {prec} against {runs[-1][0]} fp32: largest difference {worst} "
                    f"{d[worst] - ref[worst]:+.4f}")


def search_kill_resume(rep: Report, work: Path, space: str, teacher: Path, device: str) -> str:
    import optuna

    storage = f"sqlite:///{work / 'search.db'}"
    cmd = ["search", "--space", space, "--device", device, "--jobs", "2", "--trials", "4", "--storage", storage,
           "--study", "gpu-check", "--teacher", str(teacher), "--run-dir", str(work / "runs"), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "nas", *cmd], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill once a trial is done and others train
        time.sleep(2)
        try:
            trials = optuna.load_study(study_name="gpu-check", storage=storage).trials
        except Exception:  # noqa: BLE001 - not created yet
            continue
        if any(t.state.name == "COMPLETE" for t in trials) and any(t.state.name == "RUNNING" for t in trials):
            break
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # the search and its workers, as an OOM killer or a lost node would
        proc.wait()
    states = [t.state.name for t in optuna.load_study(study_name="gpu-check", storage=storage).trials]
    rep.add(f"- first run: {'killed with SIGKILL' if killed else 'ended before the kill'}; trials then: "
            f"{ {s: states.count(s) for s in set(states)} }")
    r = mbnas(*cmd, timeout=900)
    states = [t.state.name for t in optuna.load_study(study_name="gpu-check", storage=storage).trials]
    complete = states.count("COMPLETE")
    rep.add(f"- resumed: exit {r.returncode}; trials now: { {s: states.count(s) for s in set(states)} }")
    if complete < 4 or "RUNNING" in states:
        raise RuntimeError(f"after the resume: {complete} complete (4 asked), RUNNING left: {'RUNNING' in states}")
    return storage


def export_and_load(rep: Report, work: Path, storage: str, device: str) -> None:
    import torch
    from transformers import MobileBertForMaskedLM

    out = work / "export"
    mbnas("export", "--study", "gpu-check", "--storage", storage, "--pick", "knee", "--out", str(out))
    model = MobileBertForMaskedLM.from_pretrained(out).to(device).eval()
    vocab = (out / "vocab.txt").read_text().splitlines()
    ids = torch.tensor([[vocab.index("[CLS]"), vocab.index("the"), vocab.index("[MASK]"), vocab.index("[SEP]")]],
                       device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    rep.add(f"- exported the knee to {out.name}/; stock transformers loaded it on {device}; fill-mask logits "
            f"{tuple(logits.shape)}, finite: {bool(torch.isfinite(logits).all())}")


def largest_fit(rep: Report, device: str) -> None:
    """The largest mobilebert-space candidate (every dimension at its largest) that trains one step."""
    import torch

    from nas.distill import DistillSettings
    from nas.models import build_masked_lm
    from search_spaces import load_space
    from search_spaces.ops import count

    space = load_space("mobilebert")
    big = {d.name: (max(d.choices) if d.choices is not None else d.high) for d in space.dimensions}
    big.update(norm="layer_norm", act="gelu", attention="shared_qk")
    c = space.build(**big)
    batch = DistillSettings.for_space(space).batch_size
    model = build_masked_lm(c, seed=0).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    while batch >= 1:
        try:
            ids = torch.randint(1000, c.vocab_size, (batch, c.seq_len), device=device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            rep.add(f"- {c.label} ({count(c).params_m:.1f}M params): one bf16 training step at batch {batch} x "
                    f"{c.seq_len} fits; peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
            return
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            batch //= 2
    rep.add(f"- {c.label}: not even batch 1 fits")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--space", default="demo", help="space of the short teacher run, the distills and the search")
    ap.add_argument("--teacher-steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.md")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: next to --out)")
    args = ap.parse_args()
    work = args.work or args.out.parent / "gpu_check_work"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MBNAS_CACHE", str(work / "cache"))
    from benchmarks._report import header

    rep = Report(args.out)
    rep.add(header("GPU check"))
    rep.step("Environment", lambda: environment(rep, args.device))
    teacher = rep.step("Teacher pre-training", lambda: teachers(rep, work, args.space, args.device, args.teacher_steps))
    if teacher is not None:
        rep.step("Distillation: bf16 and fp32 on the device, fp32 on the CPU",
                 lambda: distills(rep, work, args.space, teacher, args.device))
        storage = rep.step("Search, kill -9, resume", lambda: search_kill_resume(rep, work, args.space, teacher,
                                                                                args.device))
        if storage is not None:
            rep.step("Export and load in stock transformers", lambda: export_and_load(rep, work, storage, args.device))
    if args.device.startswith("cuda"):
        rep.step("Largest mobilebert-space candidate that trains", lambda: largest_fit(rep, args.device))
    rep.add(f"\n**{'failed: ' + ', '.join(rep.failed) if rep.failed else 'every step passed'}**")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
