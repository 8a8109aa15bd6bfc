"""``mbnas latency ...``: measure on a real runtime, fit and calibrate device profiles, predict.

Every number this group prints says where it comes from: ``measured`` (a real runtime, here) or
``predicted by <profile>`` followed by that profile's measured error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas.cli.numbers import seed
from nas.table import markdown_table
from search_spaces import load_space
from search_spaces.arch import resolve_arch
from search_spaces.errors import UserError
from search_spaces.files import check_output_file, check_output_folder, refuse_nonempty

ARCH_HELP = "reference name, candidate JSON file, or MobileBERT config.json"
# here --device names a latency profile (a phone or this host); training's --device is a torch device
PROFILE_HELP = "device profile: a built-in name ('mbnas latency devices') or a profile JSON file"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="latency: measure (LiteRT), calibrate device profiles, predict")
    lsub = p.add_subparsers(dest="latency_command", metavar="ACTION")
    lsub.required = True

    m = lsub.add_parser("measure", help="export ARCH with litert-torch and time it with ai-edge-litert")
    m.add_argument("arch", metavar="ARCH", help=ARCH_HELP)
    m.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    m.add_argument("--runs", type=int, default=30,
                   help="at least this many timed runs, and more until 1 s of them has passed; median reported "
                        "(default 30)")
    m.add_argument("--warmup", type=int, default=5, help="discarded warm-up runs (default 5)")
    m.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the candidate's)")
    m.add_argument("--keep", metavar="FILE", help="keep the exported .tflite here")
    m.add_argument("--force", action="store_true", help="replace an existing --keep file")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=cmd_measure)

    d = lsub.add_parser("dataset", help="measure sampled architectures into a CSV (resumable)")
    d.add_argument("--space", required=True, action="append", help="search space name or YAML (repeatable)")
    d.add_argument("-n", type=int, required=True, help="architectures to sample per space")
    d.add_argument("--out", required=True, metavar="CSV",
                   help="CSV to append to (rows timed on this machine only); rows already there are skipped")
    d.add_argument("--force", action="store_true",
                   help="append to a CSV holding rows timed under another host name (the same machine renamed)")
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--seed", type=seed, default=0)
    d.add_argument("--layers", default=None, metavar="L1,L2,..",
                   help="give each sample a block count drawn from this list (faster export than the space's)")
    d.add_argument("--runs", type=int, default=50)
    d.add_argument("--retry-failed", action="store_true", help="measure again rows recorded as failed")
    d.add_argument("--keep-dir", metavar="DIR", help="keep the exported .tflite files here (and reuse them)")
    d.add_argument("--retime", type=int, default=0, metavar="ROUNDS",
                   help="then time every row of the CSV again, all models interleaved over ROUNDS rounds "
                        "(needs --keep-dir; evens out load drift on a shared machine)")
    d.set_defaults(func=cmd_dataset)

    c = lsub.add_parser("calibrate", help="fit a device profile from measurement CSVs or benchmark_model logs")
    c.add_argument("--device", required=True, help="profile name to write, e.g. my-phone-cpu-tflite")
    c.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="CSV from 'latency dataset', or text output of TFLite benchmark_model (op profiling ok)")
    c.add_argument("--out", metavar="FILE", help="profile JSON to write (default: <device>.json); an existing "
                                                 "file is refused without --force")
    c.add_argument("--force", action="store_true", help="replace an existing --out file")
    c.add_argument("--base", default="host-cpu-litert", help="op-level shape for few points (default host-cpu-litert)")
    c.add_argument("--heldout", action="append", default=[], metavar="CSV",
                   help="measurement CSV not fitted, for the error of an op-level fit")
    c.set_defaults(func=cmd_calibrate)

    h = lsub.add_parser("calibrate-host", help="time a designed set of models here and fit this machine's own profile "
                                               "(one command, within --minutes)")
    h.add_argument("--out", required=True, metavar="FILE",
                   help="profile JSON to write (its timings go beside it, FILE with .csv); an existing file is refused "
                        "without --force. Any --device / --device-profile takes FILE")
    h.add_argument("--minutes", type=float, default=15.0,
                   help="the whole run, exports included (default 15); a short one fits on fewer models")
    h.add_argument("--threads", type=int, default=1, help="interpreter threads timed (default 1)")
    h.add_argument("--jobs", type=int, default=2, help="export processes at once (default 2)")
    h.add_argument("--rounds", type=int, default=40,
                   help="at most this many interleaved timing rounds of every model, fewer when --minutes runs out "
                        "(default 40; 2 at least)")
    h.add_argument("--keep-dir", metavar="DIR",
                   help="where exported models are kept and reused (default $MBNAS_CACHE/tflite/litert-torch-<version>)")
    h.add_argument("--name", default="", help="profile name (default host-<CPU fingerprint key>)")
    h.add_argument("--force", action="store_true", help="replace an existing --out file and its .csv")
    h.set_defaults(func=cmd_calibrate_host)

    b = lsub.add_parser("bench-suite", help="write .tflite files and an adb script that runs benchmark_model")
    b.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    b.add_argument("--force", action="store_true",
                   help="write into a folder that holds files: the suite's files are replaced, others kept")
    b.add_argument("--arch", action="append", default=None, metavar="ARCH",
                   help="architectures (repeatable; default: the paper's Pixel 4 references and ablations)")
    b.add_argument("--threads", type=int, default=4, help="threads the script passes (default 4, as the paper)")
    b.set_defaults(func=cmd_bench_suite)

    pr = lsub.add_parser("predict", help="predicted latency of ARCH on a device, with its breakdown")
    pr.add_argument("arch", metavar="ARCH", help=ARCH_HELP)
    pr.add_argument("--device", required=True, metavar="PROFILE", help=PROFILE_HELP)
    pr.add_argument("--seq-len", type=int, default=None, metavar="N",
                    help="tokens per input (default: the architecture's own)")
    pr.add_argument("--json", action="store_true", help="one object: latency_ms, breakdown, profile, error_summary")
    pr.set_defaults(func=cmd_predict)

    dv = lsub.add_parser("devices", help="list the built-in device profiles with their measured error")
    dv.add_argument("--json", action="store_true", help="the list as JSON")
    dv.set_defaults(func=cmd_devices)

    r = lsub.add_parser("report", help="the profile's error table (held-out or leave-one-out)")
    r.add_argument("--device", required=True, metavar="PROFILE", help=PROFILE_HELP)
    r.add_argument("--csv", action="append", default=[], metavar="CSV",
                   help="score the profile on these measurement CSVs instead of its stored points")
    r.add_argument("--json", action="store_true", help="the table as JSON")
    r.set_defaults(func=cmd_report)


LOO_WARN_PCT = 30.0  # a leave-one-out error past this says the factors are not determined by the points


def _ms(v: float) -> str:
    return f"{v:.2f}" if v >= 1 else f"{v:.4f}"


def _positive(name: str, v: int) -> None:
    if v is not None and v < 1:
        raise UserError(f"{'-' if len(name) == 1 else '--'}{name} must be >= 1, got {v}")


# ------------------------------------------------------------------------------------------------
def cmd_measure(args) -> int:
    from latency_models.measure import measure_candidate
    from nas.tflite import export_candidate

    for k in ("threads", "runs", "seq_len"):
        _positive(k.replace("_", "-"), getattr(args, k))
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.keep:
        check_output_file(args.keep, "--keep", force=args.force)
    c = resolve_arch(args.arch, seq_len=args.seq_len or 128)
    m = measure_candidate(c, export_candidate, threads=args.threads, runs=args.runs, warmup=args.warmup, seq_len=args.seq_len,
                          keep=args.keep)
    seq = args.seq_len or c.seq_len
    if args.json:
        print(json.dumps({"arch": c.name or c.label, "label": c.label, "seq_len": seq, "measured": True,
                          **m.to_dict()}, indent=2))
        return 0
    print(f"{c.name or c.label}: {_ms(m.latency_ms)} ms measured ({m.runtime}, {m.threads} thread(s), batch 1, "
          f"seq {seq}; median of {m.runs} runs after {m.warmup} warm-up, {m.clock} clock)")
    print(f"  wall median {_ms(m.wall_median_ms)} ms, thread CPU median {_ms(m.cpu_median_ms)} ms, "
          f"p10-p90 {_ms(m.p10_ms)}-{_ms(m.p90_ms)} ms; .tflite {m.tflite_mb:.1f} MB, export {m.convert_s:.0f} s")
    return 0


def cmd_dataset(args) -> int:
    from latency_models.dataset import measure_dataset, with_layers
    from nas.tflite import export_candidate

    for k in ("n", "threads", "runs"):
        _positive(k, getattr(args, k))
    if args.retime and not args.keep_dir:
        raise UserError("--retime needs --keep-dir (the exported models to time again)")
    layers = None
    if args.layers:
        try:
            layers = [int(v) for v in args.layers.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--layers must be comma-separated integers, got {args.layers!r}") from None
        if not layers or min(layers) < 1:
            raise UserError(f"--layers must list block counts >= 1, got {args.layers!r}")
    cands = []
    for i, name in enumerate(args.space):
        space = load_space(name)
        src = f"space:{space.name} seed {args.seed + i}" + (f" layers {args.layers}" if layers else "")
        cands += [(c, src) for c in with_layers(space.sample(args.n, seed=args.seed + i), layers, args.seed + i)]
    done, skipped, failed = measure_dataset(cands, args.out, export_candidate, threads=args.threads, runs=args.runs,
                                            retry_failed=args.retry_failed, keep_dir=args.keep_dir,
                                            log=lambda s: print(s, file=sys.stderr, flush=True), force=args.force)
    print(f"{args.out}: {done} measured, {skipped} already there, {failed} failed (recorded with the reason)")
    if args.retime:
        from latency_models.dataset import retime_csv

        if not args.keep_dir:
            raise UserError("--retime needs --keep-dir (the exported models to time again)")
        n = retime_csv(args.out, args.keep_dir, threads=args.threads, rounds=args.retime,
                       log=lambda s: print(s, file=sys.stderr, flush=True))
        print(f"{args.out}: {n} rows timed again together over {args.retime} interleaved rounds")
    return 0


def cmd_calibrate(args) -> int:
    from latency_models.calibrate import calibrate_inputs

    out = check_output_file(args.out or f"{args.device}.json", "--out", force=args.force,
                            inputs=[*args.inputs, *args.heldout])
    prof, notes = calibrate_inputs(args.device, args.inputs, base=args.base, heldout=args.heldout)
    prof.save(out)
    for n in notes:
        print(n)
    print(f"wrote {out}: {prof.name}; {prof.error_summary}")
    worst = prof.error.get("loo", {}).get("worst")
    if worst is not None and abs(worst) > LOO_WARN_PCT:
        print(f"warning: a leave-one-out error of {worst:+.0f}% means these points do not pin the profile's "
              f"factors down: predictions for other shapes may be far off. Time more architectures, those "
              f"of your search space among them (mbnas latency bench-suite --arch ...; mbnas space sample)",
              file=sys.stderr)
    print(f"use it: mbnas latency predict --device {out} ARCH")
    if prof.conditions.get("cpu"):  # fitted on timings made here: this machine's host profile from now on
        from latency_models.host import host_profile_path

        mine = host_profile_path()
        prof.save(mine)
        print(f"this machine's host profile: {mine} (--device host / --device-profile host picks it)")
    return 0


def cmd_calibrate_host(args) -> int:
    from latency_models.calibrate import check_profile_name
    from latency_models.calibrate_host import HostCalibrationConfig, calibrate_host
    from latency_models.host import host_profile_path
    from nas.tflite import export_candidate

    for k in ("threads", "jobs", "rounds"):
        _positive(k, getattr(args, k))
    if not args.minutes > 0:
        raise UserError(f"--minutes must be > 0, got {args.minutes:g}")
    if args.name:
        check_profile_name(args.name, "--name")
    out = check_output_file(args.out, "--out", force=args.force)
    if out.suffix == ".csv":
        raise UserError(f"--out {out}: the profile is JSON and its timings go beside it as .csv; give FILE.json")
    check_output_file(out.with_suffix(".csv"), "--out's timings", force=args.force)
    cfg = HostCalibrationConfig(minutes=args.minutes, threads=args.threads, jobs=args.jobs, rounds=args.rounds,
                                keep_dir=Path(args.keep_dir) if args.keep_dir else None, name=args.name)
    res = calibrate_host(out, export_candidate, cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    for line in res.report():
        print(line)
    mine = host_profile_path()
    res.profile.save(mine)
    print(f"wrote {out} and its timings {res.csv}; this machine's host profile: {mine} (--device host picks it)")
    print(f"use it: mbnas latency predict --device {out} ARCH; mbnas search --device-profile {out} ...")
    return 0


def cmd_bench_suite(args) -> int:
    from latency_models.tflite_bench import SUITE_DEFAULT, write_bench_suite
    from nas.tflite import export_candidate

    _positive("threads", args.threads)
    refuse_nonempty(check_output_folder(args.out, "--out"), "--out", args.force,
                    "if it holds files of an earlier suite, its logs/ would mix with this one's: give a new folder, "
                    "or pass --force to replace the suite's files there")
    script = write_bench_suite(args.out, export_candidate, archs=args.arch or SUITE_DEFAULT, threads=args.threads,
                               log=lambda s: print(s, file=sys.stderr, flush=True))
    print(f"wrote {script.parent}/*.tflite and {script}")
    print(f"run it with a phone on adb: BENCHMARK_MODEL=/path/to/benchmark_model sh {script}")
    return 0


def cmd_predict(args) -> int:
    from latency_models import load_profile
    from latency_models.calibrate import other_host

    _positive("seq-len", args.seq_len)
    prof = load_profile(args.device)
    c = resolve_arch(args.arch, seq_len=args.seq_len or 128)
    est = prof.estimate(c, seq_len=args.seq_len)
    note = other_host(prof)
    if note:
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps({"arch": c.name or c.label, "label": c.label, "seq_len": args.seq_len or c.seq_len,
                          **est.to_dict(), "conditions": prof.conditions}, indent=2))
        return 0
    print(f"{c.name or c.label}: {est.describe()}")
    print(f"  (predicted, not measured; batch 1, seq {args.seq_len or c.seq_len})")
    total = est.latency_ms or 1.0
    for k, v in est.breakdown.items():
        print(f"  {k:<12} {v:9.2f} ms  {100 * v / total:5.1f}%")
    cond = prof.conditions
    print(f"  conditions: {cond.get('runtime')}, {cond.get('threads')} thread(s), {cond.get('precision')}, "
          f"batch {cond.get('batch')}, seq {args.seq_len or c.seq_len}")
    return 0


def cmd_devices(args) -> int:
    from latency_models import list_profiles, load_profile
    from latency_models.host import host_profile_path

    profs = [load_profile(n) for n in list_profiles()]
    if args.json:
        print(json.dumps([{"name": p.name, "device": p.device, "conditions": p.conditions,
                           "error_summary": p.error_summary} for p in profs], indent=2))
        return 0
    rows = [[p.name, p.device, f"{p.conditions.get('runtime')}, {p.conditions.get('threads')} thr",
             p.error_summary] for p in profs]
    print(markdown_table(["profile", "device", "runtime", "measured error"], rows))
    mine = host_profile_path()
    print(f"host: this machine's own profile, {mine}" if mine.is_file() else
          "host: this machine has no profile of its own yet, so 'host' means host-cpu-litert (timed on another "
          "CPU); calibrate this one: mbnas latency calibrate-host --out my-host.json")
    return 0


def cmd_report(args) -> int:
    from latency_models import load_profile
    from latency_models.calibrate import ok_rows
    from latency_models.fit import error_stats, row_label

    prof = load_profile(args.device)
    if args.csv:
        cands, y, _ = ok_rows(args.csv)
        pred = prof.estimate_many(cands)
        points = [{"label": row_label(c), "kind": "csv", "measured_ms": float(m), "predicted_ms": float(p),
                   "error_pct": 100 * (p / m - 1)} for c, m, p in zip(cands, y, pred)]
        st = error_stats(pred, y, [p["label"] for p in points])
        summary = (f"{100 * st.within_10:.0f}% within 10%, {100 * st.within_5:.0f}% within 5%, MAPE {st.mape:.1f}%, "
                   f"worst {st.worst:+.1f}% ({st.worst_label}) on {st.n} rows of {', '.join(args.csv)}")
    else:
        points = prof.error.get("points", [])
        summary = prof.error_summary
    if args.json:
        print(json.dumps({"profile": prof.name, "summary": summary, "points": points, "error": prof.error}, indent=2))
        return 0
    print(f"{prof.name}: {summary}")
    rows = [[p["label"], p["kind"], f"{p['measured_ms']:.3f}", f"{p['predicted_ms']:.3f}", f"{p['error_pct']:+.1f}%"]
            for p in points]
    print(markdown_table(["architecture", "kind", "measured ms", "predicted ms", "error"], rows))
    noise = prof.error.get("measurement_noise")
    if noise and not args.csv:
        print(f"measurement noise: median {noise['median_abs_pct']}%, max {noise['max_abs_pct']}% over "
              f"{noise['pairs']} re-measured architectures")
    return 0
