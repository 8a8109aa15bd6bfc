"""Which machine a host profile belongs to: the CPU fingerprint, the note on another CPU, and this
machine's own profile kept by ``mbnas latency calibrate`` and loaded as ``--device host``."""

from __future__ import annotations

import csv
import dataclasses
import os
import platform

from latency_models import load_profile
from latency_models.calibrate import HOST_TRAIN, other_host
from latency_models.dataset import this_host
from latency_models.host import CpuFingerprint, cpu_model, host_profile_path, this_cpu
from latency_models.profile import DeviceProfile


def test_this_cpu_is_read_from_the_system():
    fp = this_cpu()
    assert fp.model == cpu_model() and fp.arch == platform.machine()
    assert fp.cores == len(os.sched_getaffinity(0))
    assert fp.differences(fp) == [] and CpuFingerprint.from_dict(fp.to_dict()) == fp
    other = dataclasses.replace(fp, l2_kib=(fp.l2_kib or 0) + 256, isa=(*fp.isa, "amx_imaginary"))
    diff = " ".join(fp.differences(other))
    assert "l2_kib" in diff and "amx_imaginary" in diff and "model" not in diff


def test_cpu_model_is_the_whole_model_name():
    info = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor @ 2.80GHz\nflags\t: fpu avx2\n"
    assert cpu_model(info) == "Intel(R) Xeon(R) Processor @ 2.80GHz"


def _with_cpu(prof: DeviceProfile, fp: CpuFingerprint) -> DeviceProfile:
    return DeviceProfile.from_dict({**prof.to_dict(), "conditions": {**prof.conditions, "cpu": fp.to_dict()}})


def test_a_host_profile_of_another_cpu_says_so_even_under_the_same_model_name():
    host = load_profile("host-cpu-litert")
    here = this_cpu()
    assert other_host(_with_cpu(host, here)) is None
    assert other_host(load_profile("pixel4-cpu-tflite")) is None  # a phone's profile claims nothing here
    # the case a name comparison missed: the same model name, another machine (AMX, more cores)
    twin = dataclasses.replace(here, cores=here.cores + 6, isa=(*here.isa, "amx_bf16"))
    note = other_host(_with_cpu(host, twin))
    assert note and "another CPU" in note and "cores" in note and "amx_bf16" in note
    assert "mbnas latency calibrate" in note
    # the built-in profile predates fingerprints: its model name decides
    builtin = other_host(host)
    assert (builtin is None) == (cpu_model() == "Intel(R) Xeon(R) Processor @ 2.80GHz")


def _csv_timed_by(tmp_path, host: str):
    """The shipped host timings, as if timed on ``host``."""
    with open(HOST_TRAIN, newline="") as f:
        rows = list(csv.DictReader(f))
    out = tmp_path / f"{host.replace('/', '_')}.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "host": host} for r in rows)
    return out


def test_calibrating_on_timings_made_here_makes_this_machines_host_profile(tmp_path, mbnas, monkeypatch):
    cache = tmp_path / "cache"
    env = {"MBNAS_CACHE": str(cache)}
    code, out, err = mbnas("latency", "predict", "--device", "host", "mobilebert-tiny", env=env)
    assert code == 0 and "predicted by host-cpu-litert" in out  # no profile of its own yet
    elsewhere = _csv_timed_by(tmp_path, "another-machine")
    code, out, err = mbnas("latency", "calibrate", "--device", "their-host", str(elsewhere), env=env)
    assert code == 0, err
    assert "cpu" not in load_profile(tmp_path / "their-host.json").conditions and not (cache / "host-profiles").exists()
    here = _csv_timed_by(tmp_path, this_host())
    code, out, err = mbnas("latency", "calibrate", "--device", "my-host", str(here), env=env)
    assert code == 0, err
    mine = load_profile(tmp_path / "my-host.json")
    assert mine.conditions["cpu"] == this_cpu().to_dict() and "this machine's host profile" in out
    monkeypatch.setenv("MBNAS_CACHE", str(cache))
    assert host_profile_path().is_file() and load_profile("host").name == "my-host"
    code, out, err = mbnas("latency", "predict", "--device", "host", "mobilebert-tiny", env=env)
    assert code == 0 and "predicted by my-host" in out and "another CPU" not in err
