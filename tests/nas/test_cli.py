"""The real console script: output, JSON, and one clear line with exit 2 on bad input."""

from __future__ import annotations

import json

import pytest

from search_spaces import load_space


def test_arch_info_json(mbnas):
    code, out, err = mbnas("arch", "info", "mobilebert", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["params"] == 24_581_888 and d["flops"] == 2 * 2_692_743_168


def test_sample_out_files_are_arch_inputs(mbnas, tmp_path):
    code, out, err = mbnas("space", "sample", "demo", "-n", "3", "--out", str(tmp_path / "c"))
    assert code == 0, err
    files = sorted((tmp_path / "c").glob("*.json"))
    assert len(files) == 3
    code, out, err = mbnas("arch", "info", str(files[0]), "--json")
    assert code == 0, err
    assert json.loads(out)["candidate"]["num_layers"] == 4


@pytest.mark.parametrize("name", ["smoke", "demo", "mobilebert"])
def test_space_show_yaml_is_a_space_file(mbnas, tmp_path, name):
    """``space show NAME --yaml`` prints a file a user can edit and pass back as --space FILE."""
    from search_spaces import load_space

    code, out, err = mbnas("space", "show", name, "--yaml")
    assert code == 0, err
    (tmp_path / "mine.yaml").write_text(out)
    assert load_space(str(tmp_path / "mine.yaml")).to_dict() == load_space(name).to_dict()
    assert "\nsearch:\n  intra_size: {choices: [" in out  # one line per searched dimension


def test_arch_info_reads_transformers_config(mbnas, tmp_path):
    from search_spaces.references import REFERENCES

    REFERENCES["mobilebert-tiny"].candidate.to_hf_config().save_pretrained(tmp_path / "tiny")
    code, out, err = mbnas("arch", "info", str(tmp_path / "tiny" / "config.json"), "--json")
    assert code == 0, err
    assert json.loads(out)["params"] == 15_485_696


@pytest.mark.parametrize("args,content,msg", [
    (["space", "validate"], "name: x\nfixed: [1, 2\n", "malformed YAML"),
    (["space", "validate"], "name: x\ncolour: red\n", "field 'colour': unknown field"),
    (["space", "show"], None, "neither a built-in space"),
    (["arch", "info"], "{oops", "not valid JSON (line 1, column 2: Expecting property name"),
    (["arch", "info"], None, "neither a reference architecture"),
])
def test_bad_input_one_line_exit_2(mbnas, tmp_path, args, content, msg):
    target = "does-not-exist.yaml"
    if content is not None:
        target = str(tmp_path / "input.txt")
        (tmp_path / "input.txt").write_text(content)
    code, out, err = mbnas(*args, target)
    assert code == 2
    assert msg in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args", [("export", "--reference", "mobilebert-tiny"), ("space", "sample", "demo", "-n", "1"),
                                  ("latency", "bench-suite")])
@pytest.mark.parametrize("under", ["x", "x/y"])
def test_an_output_folder_under_a_file_is_one_line(mbnas, tmp_path, args, under):
    """The OS would say "File exists" or "Not a directory" about some other path: name the file."""
    (tmp_path / "a-file").write_text("")
    code, out, err = mbnas(*args, "--out", str(tmp_path / "a-file" / under))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / 'a-file'} is a file, not a folder" in err
    assert (tmp_path / "a-file").read_text() == ""


def test_validate_builtin_ok(mbnas):
    from search_spaces.space import BUILTIN_DIR

    code, out, err = mbnas("space", "validate", str(BUILTIN_DIR / "demo.yaml"))
    assert code == 0 and out.startswith("ok:")


@pytest.mark.parametrize("args,msg", [
    (["distill", "--space", "smoke", "--arch", "a.json", "--device", "gpu"], "--device 'gpu': give cpu, cuda or"),
    (["distill", "--space", "smoke", "--arch", "a.json", "--device", "mps"], "--device 'mps': give cpu, cuda or"),
    (["teacher", "train", "--space", "smoke", "--device", "cuda:x"], "--device 'cuda:x': give cpu, cuda or cuda:N"),
    (["teacher", "import", "dir", "--space", "smoke", "--device", "cuda"], "--device cuda: no CUDA device is visible"),
    (["search", "--space", "smoke", "--device", "cuda:1"], "--device cuda:1: no CUDA device is visible"),
    (["search", "--space", "smoke", "--backend", "ray", "--device", "cuda:1"], "Ray gives each trial its own GPU"),
    (["search", "--space", "smoke", "--distill-option", "device=cuda"], "--distill-option device: set it with"),
    (["search", "--space", "smoke", "--distill-option", "precision=bf16"],
     "--distill-option precision: set it with --precision, which the study records"),
    (["distill", "--space", "smoke", "--arch", "a.json", "--precision", "fp16"],
     "argument --precision: invalid choice: 'fp16'"),
])
def test_devices_torch_cannot_use_are_one_line(mbnas, args, msg):
    """Checked before anything loads: a typo or a missing GPU is not a torch traceback after minutes."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the no-GPU lines cannot show")
    code, out, err = mbnas(*args)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_precision_auto_is_fp32_on_cpu_and_bf16_autocasts(monkeypatch):
    import torch

    from nas import device

    assert device.training_precision("cpu") == "fp32" and device.training_precision("cpu", "bf16") == "bf16"
    with device.autocast_for("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with device.autocast_for("cpu", "bf16"):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16
    # the note: only for bf16 asked on a CPU that would emulate it
    monkeypatch.setattr(device, "cpu_bf16_native", lambda: False)
    assert "slower than in fp32" in device.precision_note("cpu", "bf16")
    assert device.precision_note("cpu", "fp32") is None and device.precision_note("cpu", "auto") is None
    monkeypatch.setattr(device, "cpu_bf16_native", lambda: True)
    assert device.precision_note("cpu", "bf16") is None


def test_bf16_training_sees_each_optimiser_step():
    """A candidate's whole training runs in one autocast region. With autocast's weight cache every
    forward pass after the first used the bf16 copy of the weights as they were at the first."""
    import torch

    from nas.device import autocast_for

    lin = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    x = torch.ones(2, 4)
    with autocast_for("cpu", "bf16"):
        first = lin(x)
        first.sum().backward()
        opt.step()  # in place, as every optimiser updates
        second = lin(x)
    assert first.dtype == torch.bfloat16
    expected = torch.nn.functional.linear(x, lin.weight.detach(), lin.bias.detach())
    assert torch.allclose(second.float(), expected, atol=0.1) and not torch.allclose(second, first)


def test_cpu_bf16_is_read_from_the_cpu_flags():
    from pathlib import Path

    from nas.device import cpu_bf16_native

    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    assert cpu_bf16_native() == (" avx512_bf16" in flags or " amx_bf16" in flags)


def test_jobs_spread_over_gpus_round_robin():
    from nas.device import worker_device

    assert [worker_device("cuda", k, 2) for k in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert worker_device("cuda", 3, 1) == "cuda" and worker_device("cuda:1", 2, 4) == "cuda:1"
    assert worker_device("cpu", 1, 8) == "cpu"


@pytest.mark.parametrize("args,msg", [
    (["teacher", "train", "--space", "smoke", "--steps", "0"], "argument --steps: expected a positive integer"),
    (["teacher", "train", "--space", "smoke", "--lr", "-1"], "argument --lr: expected a positive number, got '-1'"),
    (["distill", "--space", "smoke", "--arch", "a.json", "--threads", "0"], "argument --threads: expected a positive"),
    (["arch", "info", "mobilebert", "--seq-len", "-5"], "argument --seq-len: expected a positive integer"),
    (["search", "--timeout", "-1"], "argument --timeout: expected a positive number"),
    (["search", "--early-stop-factor", "0.5"], "argument --early-stop-factor: expected a number >= 1"),
    (["search", "--trials", "abc"], "argument --trials: invalid int value: 'abc'"),
])
def test_bad_numbers_are_one_line_before_anything_runs(mbnas, args, msg):
    """A zero-step teacher used to be trained, saved and then preferred as the newest; argparse's
    own errors were the whole usage block."""
    code, out, err = mbnas(*args)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_a_folder_a_file_or_an_empty_file_where_another_is_meant_says_which(mbnas, tmp_path):
    """A folder as --space or --arch was 'neither ... nor an existing file' (it exists); the
    weights file as --teacher was 'not a teacher folder (no model.safetensors)'; an empty space
    file was \"field '': must be a mapping\"; an edited teacher block was 'no teacher for space'
    while 'teacher info' listed one."""
    import yaml

    from nas.teacher import ASSET_DIR

    (tmp_path / "d").mkdir()
    (tmp_path / "e.yaml").write_text("")
    raw = yaml.safe_load(mbnas("space", "show", "demo", "--yaml")[1])
    raw["teacher"]["intermediate_size"] = 512
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    arch = str(load_space("demo").sample(1, seed=0)[0].save(tmp_path / "a.json"))
    shipped = next(ASSET_DIR.iterdir())
    cases = [(("space", "show", str(tmp_path / "d")), "d: a folder; give the space file itself"),
             (("distill", "--space", "smoke", "--arch", str(tmp_path / "d")), "d: a folder without config.json"),
             (("space", "validate", str(tmp_path / "e.yaml")), "e.yaml: empty; a space file names at least"),
             (("distill", "--space", "demo", "--arch", arch, "--teacher", str(shipped / "model.safetensors")),
              f"model.safetensors: a file; a teacher is the folder holding model.safetensors and teacher.json: "
              f"give {shipped}"),
             (("distill", "--space", str(tmp_path / "t.yaml"), "--arch", arch),
              "no teacher of shape b256-f1-i512-ln-gelu-blk and vocab news-wiki-4k (space 'demo''s teacher block")]
    for args, msg in cases:
        code, _, err = mbnas(*args, env={"MBNAS_CACHE": str(tmp_path / "cache")})
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (args, err)
    assert "the teachers found have shape(s) b256-f1-i1024-ln-gelu-blk" in err


@pytest.mark.parametrize("args,msg", [
    (("--study", "../x"), "--study '../x': the name is also its run folder's"),
    (("--study", "a/b"), "--study 'a/b': the name is also its run folder's"),
    (("--study", " "), "give a name without leading or trailing spaces"),
    (("--study", ""), "give a name without leading or trailing spaces"),
    (("--latency-budget-ms", "inf"), "--latency-budget-ms must be a positive number of milliseconds, got inf"),
    (("--objective", "downstream", "--score", "mlm_accuracy"), "--score mlm_accuracy: with --objective downstream"),
    (("--distill-option", "weights=x"), "--distill-option weights: not a distillation setting one can change"),
    (("--distill-option", "alpha=2"), "distill setting 'alpha' must be from 0 to 1, got 2"),
    (("--distill-option", "temperature=0"), "distill setting 'temperature' must be > 0 (finite), got 0"),
    (("--distill-option", "downstream_steps=-5"), "distill setting 'downstream_steps' must be >= 1"),
    (("--distill-option", "theseus_p=1.5"), "distill setting 'theseus_p' must be from 0 to 1, got 1.5"),
    (("--no-early-stop", "--early-stop-factor", "2"), "--early-stop-factor with --no-early-stop"),
])
def test_search_settings_that_would_train_something_else_are_refused_first(mbnas, smoke_teacher_dir, tmp_path,
                                                                          args, msg):
    """Each of these was accepted: a run folder outside the working folder, a budget of inf, a
    --score the downstream objective ignored, options that trained every trial wrongly or failed it."""
    code, out, err = mbnas("search", "--space", "smoke", "--trials", "1", "--teacher", str(smoke_teacher_dir),
                           "--storage", f"sqlite:///{tmp_path / 's.db'}", *args)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path.parent / "x").exists() and "trial" not in out


@pytest.mark.parametrize("args,msg", [
    (("--force",), "--force replaces an earlier student's files in --out; give --out DIR"),
    (("--lr", "inf"), "distill setting 'lr' must be > 0 (finite), got inf"),
])
def test_distill_flags_that_would_do_nothing_or_diverge_are_refused(mbnas, smoke_teacher_dir, tmp_path, args, msg):
    arch = load_space("smoke").sample(1, seed=5)[0].save(tmp_path / "c.json")
    code, _, err = mbnas("distill", "--space", "smoke", "--arch", str(arch), "--teacher", str(smoke_teacher_dir),
                         *args)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_output_cut_short_by_a_pipe_is_not_an_error():
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("mbnas")
    # `true` has exited long before mbnas writes: every write meets a closed pipe (as `| head` does
    # once it has its lines)
    p = subprocess.run(f"'{exe}' space show demo --json | true; exit ${{PIPESTATUS[0]}}", shell=True,
                       capture_output=True, text=True, timeout=120, executable="/bin/bash")
    assert p.returncode == 0 and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


@pytest.mark.parametrize("cmd", [("arch", "info"), ("latency", "predict", "--device", "pixel4-cpu-tflite")])
def test_an_absurd_architecture_is_one_line_in_every_command(mbnas, tmp_path, cmd):
    """A transformers config with intra_bottleneck_size 10^9 printed a latency of 2e14 ms; now every
    command that reads an architecture refuses it with the bound it breaks."""
    import json

    from search_spaces.references import REFERENCES

    REFERENCES["mobilebert"].candidate.to_hf_config().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "intra_bottleneck_size": 10**9}))
    code, out, err = mbnas(*cmd, str(tmp_path / "config.json"))
    assert code == 2 and "over the bound of 16,384" in err and len(err.strip().splitlines()) == 1, err
