"""Kill -9 a search mid-trial, rerun the same command: completed trials intact, the interrupted one
failed with its reason, the study finished."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from nas.records import TrialRecord


def _snapshot(load_study, storage):
    try:
        return load_study(storage).trials
    except Exception:  # the study is not created yet
        return []


def test_sigkill_then_rerun_resumes(mbnas_argv, smoke_search, load_study, tmp_path):
    from optuna.trial import TrialState

    from nas.search import outcome_of

    storage = f"sqlite:///{tmp_path / 'runs' / 'mbnas.db'}"
    argv = mbnas_argv(*smoke_search(storage, trials=2))
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while True:  # until one trial is complete and the next one is training
            assert proc.poll() is None, f"search ended before it could be killed: {proc.stderr.read()[-2000:]}"
            assert time.time() < deadline, "no trial started training within 240 s"
            trials = _snapshot(load_study, storage)
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            training = [t for t in trials if t.state == TrialState.RUNNING and "mbnas.candidate" in t.user_attrs]
            if complete and training:
                break
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = training[0].number
    before = {t.number: t.values for t in complete}
    assert load_study(storage).trials[killed].state == TrialState.RUNNING  # as the kill left it

    p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"trial {killed} was interrupted" in p.stdout

    trials = load_study(storage).trials
    assert {t.number: t.values for t in trials if t.number in before} == before  # intact
    victim = trials[killed]
    assert victim.state == TrialState.FAIL and outcome_of(victim) == "interrupted"
    rec = TrialRecord.from_trial(victim)
    assert rec.failure.startswith("interrupted:") and "died while this trial ran" in rec.failure
    assert rec.candidate is not None  # the record written before training survives the kill
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sum(outcome_of(t) in ("complete", "stopped", "failed") for t in trials) == 2
