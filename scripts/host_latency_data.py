"""Regenerate the host timings behind the built-in ``host-cpu-litert`` profile (hours, resumable):

    python scripts/host_latency_data.py [train] [heldout]    # measure the missing rows of each set
    MBNAS_KEEP_DIR=/tmp/keep python scripts/host_latency_data.py export-ahead train heldout
    MBNAS_KEEP_DIR=/tmp/keep python scripts/host_latency_data.py retime [rounds]

The sets are ``latency_models.dataset.host_set``; the CSVs go to ``latency_models/data/``. It sits
above the layers because exporting a candidate needs the model code (``nas.tflite``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latency_models.dataset import host_set, interleaved, measure_dataset, retime_csv, tflite_name  # noqa: E402
from nas.tflite import export_candidate  # noqa: E402


def main() -> int:
    data = Path(__file__).resolve().parents[1] / "latency_models" / "data"
    keep = Path(os.environ["MBNAS_KEEP_DIR"]) if os.environ.get("MBNAS_KEEP_DIR") else None
    if sys.argv[1:2] == ["export-ahead"]:  # export the biggest models of the named sets into MBNAS_KEEP_DIR
        todo = {tflite_name(c): c for n in sys.argv[2:] for c, _ in host_set(n)}
        for name, c in reversed(todo.items()):  # from the end: the measuring process starts at the front
            if not (keep / name).exists():
                export_candidate(c, keep / name)
                print("exported", name, flush=True)
        return 0
    if sys.argv[1:2] == ["retime"]:  # all rows of both sets together, then the held-out rows once more
        files = [data / "host-cpu-litert-train.csv", data / "host-cpu-litert-heldout.csv"]
        tmp = data / "host-cpu-litert-all.tmp.csv"
        tmp.write_text(files[0].read_text() + "".join(files[1].read_text().splitlines(True)[1:]))
        est = os.environ.get("MBNAS_ESTIMATOR", "median")
        retime_csv(tmp, keep, rounds=int(sys.argv[2]) if len(sys.argv) > 2 else 6, estimator=est)
        lines = tmp.read_text().splitlines(True)
        n_train = len(files[0].read_text().splitlines()) - 1
        files[0].write_text("".join(lines[: 1 + n_train]))
        files[1].write_text(lines[0] + "".join(lines[1 + n_train:]))
        tmp.unlink()
        shutil.copy(files[1], data / "host-cpu-litert-repeat.csv")
        retime_csv(data / "host-cpu-litert-repeat.csv", keep, rounds=int(sys.argv[2]) if len(sys.argv) > 2 else 6,
                   estimator=est)
        return 0
    names = sys.argv[1:] or ["train", "heldout"]
    sets = {n: host_set(n) for n in names}
    for n, part in interleaved(sets, {"train": 8, "heldout": 6}):
        measure_dataset(part, data / f"host-cpu-litert-{n}.csv", threads=1, runs=50, warmup=5, keep_dir=keep,
                        export=export_candidate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
