"""Measurement CSVs: malformed input names the line; failures are rows; reruns resume."""

from __future__ import annotations

import csv

import pytest

from latency_models.dataset import COLUMNS, candidate_key, read_rows
from search_spaces.errors import UserError

GOOD = {"label": "b16-f1-i32-nn-relu-sqk", "name": "", "num_layers": "2", "hidden_size": "32", "embedding_size": "16",
        "num_heads": "2", "vocab_size": "30522", "seq_len": "32", "intra_size": "16", "num_ffn": "1",
        "intermediate_size": "32", "norm": "no_norm", "act": "relu", "attention": "shared_qk",
        "mha_ffn_ratio": "0.5", "trigram_input": "True", "threads": "1", "status": "ok", "latency_ms": "0.05"}


def write(path, rows):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def test_reads_good_rows(tmp_path):
    rows = read_rows(write(tmp_path / "a.csv", [GOOD, {**GOOD, "status": "failed", "latency_ms": "", "error": "boom"}]))
    assert [r.status for r in rows] == ["ok", "failed"] and rows[0].latency_ms == 0.05 and rows[1].error == "boom"
    assert candidate_key(rows[0].candidate, 1) == candidate_key(rows[1].candidate, 1)


@pytest.mark.parametrize("bad,match", [
    ({"num_layers": "two"}, "line 3: column 'num_layers' must be an integer"),
    ({"status": "maybe"}, "line 3: column 'status'"),
    ({"latency_ms": "-1"}, "line 3: .*latency_ms"),
    ({"latency_ms": "inf"}, "line 3: column 'latency_ms' must be a finite number"),
    ({"latency_ms": "fast"}, "line 3: column 'latency_ms' .* got 'fast'"),  # not blamed on 'threads'
    ({"threads": "four"}, "line 3: column 'threads' must be an integer"),
    ({"norm": "batch_norm"}, "line 3: candidate field 'norm'"),
    ({"trigram_input": "yes"}, "line 3: column 'trigram_input'"),
])
def test_malformed_row_names_the_line(tmp_path, bad, match):
    with pytest.raises(UserError, match=match):
        read_rows(write(tmp_path / "bad.csv", [GOOD, {**GOOD, **bad}]))


def test_a_spreadsheet_csv_with_a_byte_order_mark_reads(tmp_path):
    p = write(tmp_path / "excel.csv", [GOOD])
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    assert read_rows(p)[0].latency_ms == 0.05


def test_a_csv_that_is_not_utf8_is_one_line(tmp_path):
    p = write(tmp_path / "u16.csv", [GOOD])
    p.write_bytes(p.read_text().encode("utf-16"))
    with pytest.raises(UserError, match=r"u16.csv: not UTF-8 text \(byte 0xff at offset 0\); save it as UTF-8"):
        read_rows(p)


def test_wrong_field_count_and_foreign_csv(tmp_path):
    p = write(tmp_path / "short.csv", [GOOD])
    p.write_text(p.read_text() + "a,b,c\n")
    with pytest.raises(UserError, match="short.csv: line 3: expected"):
        read_rows(p)
    (tmp_path / "other.csv").write_text("x,y\n1,2\n")
    with pytest.raises(UserError, match="other.csv: line 1: not a latency CSV"):
        read_rows(tmp_path / "other.csv")


def test_a_failure_is_a_row_with_its_reason_and_is_not_redone(cli, tmp_path):
    """A real failure of the real pipeline: the export cannot write its .tflite (--keep-dir is a file)."""
    out = tmp_path / "d.csv"
    (tmp_path / "afile").write_text("")
    code, stdout, err = cli("latency", "dataset", "--space", "smoke", "-n", "2", "--layers", "1", "--out", str(out),
                              "--keep-dir", str(tmp_path / "afile" / "models"))
    assert code == 0, err
    assert "0 measured, 0 already there, 2 failed" in stdout
    rows = read_rows(out)
    assert [r.status for r in rows] == ["failed", "failed"] and all(r.latency_ms is None for r in rows)
    assert all(r.error.startswith(("NotADirectoryError", "FileExistsError")) for r in rows)
    code, stdout, _ = cli("latency", "dataset", "--space", "smoke", "-n", "2", "--layers", "1", "--out", str(out))
    assert code == 0 and "0 measured, 2 already there" in stdout


@pytest.mark.slow
def test_dataset_measures_for_real_and_resumes(cli, tmp_path):
    out = tmp_path / "d.csv"
    args = ("latency", "dataset", "--space", "smoke", "-n", "1", "--layers", "1", "--runs", "10", "--out", str(out))
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "1 measured, 0 already there, 0 failed" in stdout
    (row,) = read_rows(out)
    assert row.ok and row.latency_ms > 0 and row.candidate.num_layers == 1
    assert row.extra["runtime"].startswith("ai-edge-litert") and row.extra["clock"] == "cpu"
    code, stdout, _ = cli(*args)
    assert code == 0 and "0 measured, 1 already there" in stdout
    assert len(read_rows(out)) == 1


def test_dataset_never_appends_to_timings_from_another_device(cli, tmp_path):
    """A phone's measurement CSV (no host) or another machine's dataset is refused as --out: rows
    timed here would mix two devices in one file. --force is for this machine under another name."""
    phone = write(tmp_path / "phone.csv", [GOOD])
    other = write(tmp_path / "other.csv", [{**GOOD, "host": "lab-box-7"}])
    before = phone.read_text(), other.read_text()
    (tmp_path / "afile").write_text("")
    fast = ("--keep-dir", str(tmp_path / "afile" / "models"))  # every export fails at once: no timing needed
    for path, said in ((phone, "rows without a 'host' column value"), (other, "rows timed on 'lab-box-7'")):
        code, _, err = cli("latency", "dataset", "--space", "smoke", "-n", "1", "--layers", "1", "--out", str(path), *fast)
        assert code == 2 and said in err and "give a new --out" in err and len(err.strip().splitlines()) == 1, err
    assert (phone.read_text(), other.read_text()) == before  # nothing written
    code, stdout, err = cli("latency", "dataset", "--space", "smoke", "-n", "1", "--layers", "1", "--out", str(other),
                            "--force", *fast)
    assert code == 0 and "1 failed" in stdout, err
    assert len(read_rows(other)) == 2
    header_only = write(tmp_path / "empty.csv", [])  # a header alone mixes nothing: appended to
    code, stdout, err = cli("latency", "dataset", "--space", "smoke", "-n", "1", "--layers", "1", "--out",
                            str(header_only), *fast)
    assert code == 0 and "1 failed" in stdout, err
