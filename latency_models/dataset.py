"""Measurement datasets: one CSV row per timed architecture (or per failed conversion).

The CSV is the only store of measurements: profiles are fitted from it, reports read it, and a rerun
of ``measure_dataset`` appends only the rows that are missing (resumable; one row is flushed per
model, so an interrupted run loses at most the model in flight). A failure to convert or run is a
row with ``status=failed`` and its reason, never silently dropped.

On a shared machine, timing each model right after its export puts each one under whatever load the
neighbours had at that minute (we saw the same model differ by 25%). ``retime_csv`` therefore times
all exported models again *together*, interleaved over several rounds, so that load drifts hit
every row alike; the built-in host data went through it (first measurement kept in
``first_latency_ms``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from latency_models.host import fingerprint_key, this_cpu
from latency_models.measure import measure_candidate, measure_round_robin
from search_spaces import load_space
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.files import read_user_text
from search_spaces.references import REFERENCES

if TYPE_CHECKING:
    from latency_models.measure import Exporter

CANDIDATE_COLUMNS = ("name", "num_layers", "hidden_size", "embedding_size", "num_heads", "vocab_size", "seq_len",
                     "intra_size", "num_ffn", "intermediate_size", "norm", "act", "attention", "mha_ffn_ratio",
                     "trigram_input")
MEASURE_COLUMNS = ("threads", "status", "latency_ms", "clock", "wall_median_ms", "cpu_median_ms", "p10_ms",
                   "p90_ms", "runs", "warmup", "runtime", "tflite_mb", "convert_s")
COLUMNS = ("label",) + CANDIDATE_COLUMNS + MEASURE_COLUMNS + ("source", "host", "measured_at", "error")
RETIME_COLUMNS = ("first_latency_ms", "rounds", "round_spread_pct", "best_round_ms", "estimator")  # by retime_csv
_INT = {"num_layers", "hidden_size", "embedding_size", "num_heads", "vocab_size", "seq_len", "intra_size",
        "num_ffn", "intermediate_size"}


@dataclass(frozen=True)
class Row:
    """One CSV row: the architecture, its measurement conditions and result."""

    candidate: Candidate
    threads: int
    status: str  # "ok" or "failed"
    latency_ms: float | None
    source: str = ""
    error: str = ""
    extra: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def candidate_key(c: Candidate, threads: int) -> str:
    """What makes two rows the same measurement: the shape (not the display name) and the threads."""
    d = {k: getattr(c, k) for k in CANDIDATE_COLUMNS if k not in ("name", "mha_ffn_ratio")}
    return json.dumps(d, sort_keys=True) + f"@{threads}"


def _parse_row(raw: dict, where: str) -> Row:
    vals: dict = {}
    for k in CANDIDATE_COLUMNS:
        v = (raw.get(k) or "").strip()
        if k == "name":
            vals[k] = v or None
        elif k == "mha_ffn_ratio":
            vals[k] = float(v) if v else None
        elif k == "trigram_input":
            if v.lower() not in ("true", "false", "1", "0"):
                raise UserError(f"{where}: column 'trigram_input' must be true or false, got {v!r}")
            vals[k] = v.lower() in ("true", "1")
        elif k in _INT:
            try:
                vals[k] = int(v)
            except ValueError:
                raise UserError(f"{where}: column '{k}' must be an integer, got {v!r}") from None
        else:
            vals[k] = v
    try:
        c = Candidate(**vals)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    status = (raw.get("status") or "").strip()
    if status not in ("ok", "failed"):
        raise UserError(f"{where}: column 'status' must be 'ok' or 'failed', got {status!r}")
    try:
        threads = int(raw.get("threads") or 1)
        if threads < 1:
            raise ValueError
    except ValueError:
        raise UserError(f"{where}: column 'threads' must be an integer >= 1, got {raw.get('threads')!r}") from None
    lat = None
    if status == "ok":
        try:
            lat = float(raw.get("latency_ms") or "nan")
        except ValueError:
            lat = math.nan
        if not (math.isfinite(lat) and lat > 0):  # inf and nan would poison the fit and its JSON
            raise UserError(f"{where}: column 'latency_ms' must be a finite number of milliseconds > 0 for "
                            f"status ok, got {raw.get('latency_ms')!r}")
    extra = {k: raw[k] for k in MEASURE_COLUMNS + RETIME_COLUMNS + ("host", "measured_at")
             if raw.get(k) not in (None, "")}
    return Row(candidate=c, threads=threads, status=status, latency_ms=lat, source=raw.get("source") or "",
               error=raw.get("error") or "", extra=extra)


def read_rows(path: str | Path) -> list[Row]:
    """All rows of a measurement CSV; a malformed one raises ``UserError`` naming file and line."""
    path = Path(path)
    text = read_user_text(path)
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [k for k in ("status", "latency_ms") + CANDIDATE_COLUMNS[1:] if k not in header]
    if missing:
        raise UserError(f"{path}: line 1: not a latency CSV (missing column '{missing[0]}'); "
                        f"write one with 'mbnas latency dataset'")
    rows = []
    for raw in reader:
        where = f"{path}: line {reader.line_num}"
        if None in raw or any(v is None for v in raw.values()):
            raise UserError(f"{where}: expected {len(header)} fields, got a different number")
        rows.append(_parse_row(raw, where))
    return rows


def row_dict(c: Candidate, threads: int, source: str) -> dict:
    d = {k: getattr(c, k) for k in CANDIDATE_COLUMNS}
    d.update(label=c.label, threads=threads, source=source, host=this_host(),
             measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return d


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def append_row(path: Path, d: dict, columns: Sequence[str] = COLUMNS) -> None:
    """Append one row; a new file gets ``columns`` as its header, an existing one keeps its own."""
    new = not path.exists() or path.stat().st_size == 0
    fields = list(columns)
    if not new:  # keep the file's own column order (older files may lack newer columns)
        with path.open(newline="") as f:
            fields = next(csv.reader(f), fields)
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: _cell(d.get(k)) for k in fields})
        f.flush()


def retime_csv(path: str | Path, keep_dir: str | Path, out: str | Path | None = None, threads: int = 1,
               rounds: int = 6, runs: int = 10, estimator: str = "median",
               log: Callable[[str], None] = print) -> int:
    """Time again, together and interleaved (``measure.measure_round_robin``), every ``ok`` row of a
    CSV whose exported model is in ``keep_dir``; rewrite the CSV (or write ``out``) with the new
    numbers. The first measurement stays in ``first_latency_ms``. Returns the rows re-timed.
    """
    path = Path(path)
    read_rows(path)  # validates; names a malformed line
    with path.open(newline="") as f:
        raw = list(csv.DictReader(f))
    rows = read_rows(path)
    idx = [i for i, r in enumerate(rows)
           if r.ok and r.threads == threads and (Path(keep_dir) / tflite_name(r.candidate)).is_file()]
    ms = measure_round_robin([Path(keep_dir) / tflite_name(rows[i].candidate) for i in idx], threads=threads,
                             rounds=rounds, runs=runs, vocab_sizes=[rows[i].candidate.vocab_size for i in idx],
                             estimator=estimator, log=log)
    for i, m in zip(idx, ms):
        d = raw[i]
        d.setdefault("first_latency_ms", d.get("first_latency_ms") or d["latency_ms"])
        if not d["first_latency_ms"]:
            d["first_latency_ms"] = d["latency_ms"]
        d.update({k: _cell(v) for k, v in m.to_dict().items() if k in MEASURE_COLUMNS or k in RETIME_COLUMNS})
        d["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        d["estimator"] = estimator
    fields = list(COLUMNS) + [k for k in RETIME_COLUMNS if k not in COLUMNS]
    target = Path(out) if out else path
    tmp = target.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for d in raw:
            w.writerow({k: d.get(k, "") or "" for k in fields})
    tmp.replace(target)
    return len(idx)


def tflite_name(c: Candidate) -> str:
    """File name of an exported candidate: its label plus what the label leaves out (layers, widths, seq)."""
    extra = f"L{c.num_layers}-h{c.hidden_size}-e{c.embedding_size}-a{c.num_heads}-v{c.vocab_size}-s{c.seq_len}"
    return f"{c.label}-{extra}{'' if c.trigram_input else '-notri'}.tflite"


def with_layers(cands: Sequence[Candidate], layers: Sequence[int] | None, seed: int) -> list[Candidate]:
    """Give each candidate a layer count drawn from ``layers`` (seeded); ``None`` keeps the space's."""
    if not layers:
        return list(cands)
    rng = random.Random(seed)
    return [c.replace(num_layers=rng.choice(list(layers))) for c in cands]


def this_host() -> str:
    """What a row's ``host`` column says for rows timed here: the host name and the CPU's fingerprint
    key (``latency_models.host``). A host name alone named different machines alike (every VM of this
    project's is "vm"), so committed timings of another CPU passed for this machine's."""
    return f"{platform.node() or 'host'}/{fingerprint_key(this_cpu())}"


def check_same_host(path: Path, rows: Sequence[Row], force: bool = False) -> None:
    """Refuse to append rows timed here to a CSV of timings from elsewhere: a phone's measurement
    CSV (no ``host``), or this command's output from another machine. One file would then mix two
    devices, and a profile calibrated from it would fit neither."""
    if force:
        return
    hosts = sorted({r.extra.get("host", "") for r in rows})
    if not hosts or hosts == [this_host()]:  # a header alone mixes nothing
        return
    if "" in hosts:
        what = "rows without a 'host' column value (timings written elsewhere, a phone's say)"
    else:
        what = f"rows timed on {', '.join(repr(h) for h in hosts)}, and this machine is {this_host()!r}"
    raise UserError(f"{path}: holds {what}; rows timed here would mix two devices in one file: give a new --out "
                    f"CSV, or --force if those rows were timed on this machine under another name")


def measure_dataset(cands: Iterable[tuple[Candidate, str]], out: str | Path, export: Exporter, threads: int = 1,
                    runs: int = 30, warmup: int = 5, retry_failed: bool = False, keep_dir: str | Path | None = None,
                    log: Callable[[str], None] = print, force: bool = False) -> tuple[int, int, int]:
    """Measure every (candidate, source) not yet in ``out``; returns (measured, skipped, failed).
    ``export``: how a candidate becomes a ``.tflite`` (``nas.tflite.export_candidate``).

    Each model is exported, timed and appended before the next one starts. Conversion or runtime
    errors become a ``failed`` row with the error's first line. ``keep_dir``: keep the exported
    ``.tflite`` files there (e.g. to run them with ``benchmark_model`` later) and time a file already
    there instead of exporting it again (a second process may export ahead into the same folder).
    ``force``: append to a CSV whose rows were timed elsewhere (``check_same_host``).
    """
    out = Path(out)
    done = set()
    if out.exists() and out.stat().st_size:
        rows = read_rows(out)
        check_same_host(out, rows, force)
        for r in rows:
            if r.ok or not retry_failed:
                done.add(candidate_key(r.candidate, r.threads))
    todo = [(c, s) for c, s in cands]
    measured = skipped = failed = 0
    for i, (c, source) in enumerate(todo, 1):
        key = candidate_key(c, threads)
        if key in done:
            skipped += 1
            continue
        done.add(key)
        d = row_dict(c, threads, source)
        try:
            keep = Path(keep_dir) / tflite_name(c) if keep_dir else None
            m = measure_candidate(c, export, threads=threads, runs=runs, warmup=warmup, keep=keep, reuse=True)
        except Exception as exc:  # a conversion failure is data, not a crash
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            d.update(status="failed", error=f"{type(exc).__name__}: {msg}")
            failed += 1
            log(f"[{i}/{len(todo)}] {c.label} L{c.num_layers}: FAILED {d['error']}")
        else:
            d.update(status="ok", **{k: v for k, v in m.to_dict().items() if k in MEASURE_COLUMNS})
            measured += 1
            log(f"[{i}/{len(todo)}] {c.label} L{c.num_layers} s{c.seq_len}: {m.latency_ms:.3f} ms "
                f"({m.clock}; wall {m.wall_median_ms:.3f}; convert {m.convert_s:.0f} s)")
        append_row(out, d)
    return measured, skipped, failed


# ------------------------------------------------------------------------------------------------
# the host data sets behind the built-in host-cpu-litert profile (regenerate with
# ``python scripts/host_latency_data.py train heldout``, then ``retime``; the CSVs under latency_models/data/)
def bert_like(rng: random.Random) -> Candidate:
    h = rng.choice([128, 256, 384, 512, 768])
    return Candidate(num_layers=rng.choice([1, 2, 3, 4]), hidden_size=h, embedding_size=h, num_heads=max(2, h // 64),
                     vocab_size=30522, seq_len=rng.choice([64, 128]), intra_size=h, num_ffn=1,
                     intermediate_size=h * rng.choice([2, 3, 4]), norm=rng.choice(["layer_norm", "no_norm"]),
                     act=rng.choice(["gelu", "relu"]), attention="none", trigram_input=False)


def block_like(rng: random.Random) -> Candidate:
    h = rng.choice([128, 256, 512])
    intra = h * rng.choice([1, 2])
    return Candidate(num_layers=rng.choice([1, 2, 3]), hidden_size=h, embedding_size=rng.choice([64, 128]),
                     num_heads=4, vocab_size=30522, seq_len=rng.choice([64, 128]), intra_size=intra, num_ffn=1,
                     intermediate_size=intra * rng.choice([2, 4]), norm=rng.choice(["layer_norm", "no_norm"]),
                     act=rng.choice(["gelu", "relu"]), attention="block")


def host_set(which: str) -> list[tuple[Candidate, str]]:
    """The architectures of the built-in host data sets (deterministic). Their size is set by export
    time: next to other work on a 2-core machine, litert-torch took 10 s to 5 min per model (24 blocks).

    train: the mobilebert space at 2-12 blocks, the demo space at 2-4 blocks, BERT-like (no bottleneck)
        and IB-BERT-like (block attention) shapes at 1-4 blocks, so that every attention kind of
        ``search_spaces.candidate.ATTENTIONS`` is covered; and norm x activation quartets (one shape with
        NoNorm/LayerNorm x ReLU/GELU), without which LayerNorm and GELU costs (a few percent here)
        are not identifiable, and the Pixel 4 profile needs them.
    heldout: never fitted. Real mobilebert-space candidates at the paper shape (24 blocks), others at
        2-4 blocks, demo-space candidates at their 4 blocks, the four reference architectures with
        Pixel 4 numbers, and a few BERT-/IB-BERT-like shapes; a shape also in ``train`` is dropped.
    """
    mb, demo = load_space("mobilebert"), load_space("demo")
    if which == "train":
        out = [(c, "space:mobilebert seed 101 layers 2-6") for c in with_layers(mb.sample(40, 101), [2, 3, 4, 6], 101)]
        out += [(c, "space:demo seed 102 layers 2-4") for c in with_layers(demo.sample(10, 102), [2, 4], 102)]
        rng = random.Random(103)
        out += [(bert_like(rng), "bert-like seed 103") for _ in range(6)]
        out += [(block_like(rng), "block-like seed 103") for _ in range(4)]
        # added after a first fit: small (< 1 ms, overhead-bound) demo models and deeper mobilebert ones
        out += [(c, "space:demo seed 105 layers 2-4") for c in with_layers(demo.sample(20, 105), [2, 3, 4], 105)]
        out += [(c, "space:mobilebert seed 106 layers 8-12") for c in with_layers(mb.sample(6, 106), [8, 12], 106)]
        # norm x activation quartets: the same shapes with NoNorm/LayerNorm x ReLU/GELU, so that the fit
        # sees LayerNorm and GELU costs apart from everything else (random space shapes, not the references)
        for space, n, layers, seed in ((mb, 5, [4], 107), (demo, 3, [3], 108)):
            for c in with_layers(space.sample(n, seed), layers, seed):
                out += [(c.replace(norm=nm, act=a), f"space:{space.name} seed {seed} norm x act quartet")
                        for nm in ("no_norm", "layer_norm") for a in ("relu", "gelu")]
        return spread(out)
    if which == "heldout":
        train = {candidate_key(c, 1) for c, _ in host_set("train")}
        out = [(c, "space:mobilebert seed 201 paper shape") for c in mb.sample(6, 201)]
        out += [(c, "space:mobilebert seed 202 layers 2-4") for c in with_layers(mb.sample(18, 202), [2, 3, 4], 202)]
        out += [(c, "space:demo seed 203") for c in demo.sample(12, 203)]
        out += [(REFERENCES[n].candidate, f"reference:{n}")
                for n in ("mobilebert", "mobilebert-tiny", "mobilebert-no-opt", "bert-base")]
        rng = random.Random(204)
        out += [(bert_like(rng), "bert-like seed 204") for _ in range(2)]
        out += [(block_like(rng), "block-like seed 204") for _ in range(1)]
        return spread([(c, s) for c, s in out if candidate_key(c, 1) not in train])
    raise UserError(f"unknown host set '{which}'; known: train, heldout")


def spread(items: list, key: Callable[[Any], Any] = lambda it: it[1]) -> list:
    """Reorder so that every source (``key``: the second of a (candidate, source) pair) is spread
    evenly over the list (a run cut short stays balanced)."""
    by_source: dict[Any, list] = {}
    for it in items:
        by_source.setdefault(key(it), []).append(it)
    keyed = [((i + 0.5) / len(v), k, it) for k, v in by_source.items() for i, it in enumerate(v)]
    return [it for _, _, it in sorted(keyed, key=lambda t: (t[0], t[1]))]


def interleaved(sets: dict[str, list], chunk: dict[str, int]) -> list[tuple[str, list]]:
    """Growing prefixes of each set in turn, so that a run cut short still has some of every set."""
    steps, k = [], 1
    while any(k * chunk[n] - chunk[n] < len(v) for n, v in sets.items()):
        steps += [(n, v[: k * chunk[n]]) for n, v in sets.items() if k * chunk[n] - chunk[n] < len(v)]
        k += 1
    return steps
