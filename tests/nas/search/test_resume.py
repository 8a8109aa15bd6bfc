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


def _wait_for(proc, load_study, storage, ready, what: str, timeout_s: float = 240):
    """Poll the study until ``ready(trials)``; the search must still be running. -> the trials."""
    deadline = time.time() + timeout_s
    while True:
        assert proc.poll() is None, f"search ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"not {what} within {timeout_s:.0f} s"
        trials = _snapshot(load_study, storage)
        if ready(trials):
            return trials
        time.sleep(0.3)


def _training(trials):
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.RUNNING and "mbnas.candidate" in t.user_attrs]


def test_sigkill_then_rerun_resumes(mbnas_argv, smoke_search, load_study, tmp_path):
    from optuna.trial import TrialState

    from nas.search import outcome_of

    storage = f"sqlite:///{tmp_path / 'runs' / 'mbnas.db'}"
    argv = mbnas_argv(*smoke_search(storage, trials=2))
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        trials = _wait_for(proc, load_study, storage, lambda ts: _training(ts) and any(
            t.state == TrialState.COMPLETE for t in ts), "one trial was complete and the next one training")
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        training = _training(trials)
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


def test_a_killed_worker_costs_one_trials_time_never_a_trial(mbnas_argv, smoke_search, load_study, tmp_path):
    """kill -9 of one --jobs worker (not the search the user started), as an OOM killer would: its
    trial is marked interrupted at once, its candidate is retried once (the retry says so), the
    search still delivers the trials asked, and the summary names the lost worker."""
    from optuna.trial import TrialState

    from nas.search import outcome_of
    from nas.search.liveness import WORKER_ATTR

    storage = f"sqlite:///{tmp_path / 'lost.db'}"
    longer = ("--distill-option", "layer_steps=60", "--distill-option", "pd_steps=120")
    argv = mbnas_argv(*smoke_search(storage, "--jobs", "2", *longer, trials=4))
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        trials = _wait_for(proc, load_study, storage, lambda ts: any(
            t.user_attrs.get(WORKER_ATTR, {}).get("pid") not in (None, proc.pid) for t in _training(ts)),
            "the extra worker was training a trial")
        victim = next(t for t in _training(trials) if t.user_attrs[WORKER_ATTR]["pid"] != proc.pid)
        os.kill(victim.user_attrs[WORKER_ATTR]["pid"], signal.SIGKILL)
        marked = _wait_for(proc, load_study, storage, lambda ts: ts[victim.number].state != TrialState.RUNNING,
                           "the killed worker's trial was marked", timeout_s=20)[victim.number]
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert outcome_of(marked) == "interrupted"
    assert proc.returncode == 0, err[-3000:]
    trials = load_study(storage).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sum(outcome_of(t) in ("complete", "stopped", "failed") for t in trials) == 4
    retry = [t for t in trials if t.user_attrs.get("mbnas.retry_of") == victim.number]
    assert len(retry) == 1 and retry[0].params == victim.params and outcome_of(retry[0]) != "interrupted"
    assert (f"1 worker lost (pid {victim.user_attrs[WORKER_ATTR]['pid']}, signal 9, SIGKILL): its trial "
            f"{victim.number} retried as {retry[0].number}") in out, out[-2000:]


def test_a_candidate_that_kills_its_worker_twice_is_failed_and_not_retried(tmp_path):
    """The retry of an interrupted trial is interrupted too: recorded as failed with the reason,
    counted as trained, and neither retried nor proposed again. A worker that died with its search
    process is not counted against the candidate: that retry is retried."""
    import optuna
    from optuna.trial import TrialState

    from nas.search import outcome_of
    from nas.search.liveness import DEATHS_ATTR, WORKER_ATTR, next_retry, recover_interrupted, worker_identity
    from nas.search.outcomes import RETRY_OF_ATTR
    from nas.search.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    gone = {**worker_identity(), "pid": 2**22 + 7, "started": "0"}  # a worker of this machine that no longer runs

    def running(attrs):
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for k, v in {WORKER_ATTR: gone, **attrs}.items():
            t.set_user_attr(k, v)
        return t

    first = running({})
    assert recover_interrupted(study, storage) == [first.number]
    assert outcome_of(study.trials[first.number]) == "interrupted"
    retry = next_retry(study)
    assert retry.number == first.number and retry.params == study.trials[first.number].params
    assert retry.user_attrs == {RETRY_OF_ATTR: first.number, DEATHS_ATTR: 1}

    def retried(r):
        study.enqueue_trial(r.params, user_attrs=r.user_attrs)
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        assert t.user_attrs[RETRY_OF_ATTR] == r.number and t.params == r.params
        return t

    # its retry's worker dies with its search (a kill of the search, not of the trainer): not counted
    again = retried(retry)
    with_search = {**worker_identity(), "pid": 2**22 + 8, "started": "0", "parent": 2**22 + 9,
                   "parent_started": "0"}
    again.set_user_attr(WORKER_ATTR, with_search)
    assert recover_interrupted(study, storage) == [again.number]
    t = study.trials[again.number]
    assert outcome_of(t) == "interrupted" and "died with its search process" in t.user_attrs["mbnas.failure"]
    retry = next_retry(study)
    assert retry.number == again.number and retry.user_attrs[DEATHS_ATTR] == 1  # still one against it
    # the next retry's worker dies while its search lives: the second death that is the candidate's doing
    third = retried(retry)
    third.set_user_attr(WORKER_ATTR, {**gone, "parent": os.getpid(), "parent_started": worker_identity()["started"]})
    assert recover_interrupted(study, storage) == [third.number]
    t = study.trials[third.number]
    assert t.state == TrialState.FAIL and outcome_of(t) == "failed"
    assert "killed its worker twice" in t.user_attrs["mbnas.failure"] and t.user_attrs[DEATHS_ATTR] == 2
    assert next_retry(study) is None


def test_sigterm_stops_the_search_and_its_workers(mbnas_argv, smoke_search, load_study, tmp_path):
    """``kill``/``timeout``/a scheduler stop a ``--jobs 2`` search as Ctrl-C does: the process exits,
    its worker is stopped too (not left training), and both running trials are marked interrupted."""
    from optuna.trial import TrialState

    from nas.search import outcome_of
    from nas.search.liveness import WORKER_ATTR

    storage = f"sqlite:///{tmp_path / 'term.db'}"
    # long trials: one seen training must still be training when the signal lands
    longer = ("--distill-option", "layer_steps=400", "--distill-option", "pd_steps=800")
    argv = mbnas_argv(*smoke_search(storage, "--jobs", "2", *longer, trials=6))
    # started as a script's background job would be (`mbnas search --jobs 2 &`): with SIGINT ignored,
    # which the search's workers inherit; they were told to stop with SIGINT and trained on
    # (through sh's trap and exec, not preexec_fn: a fork of this multi-threaded process could deadlock)
    proc = subprocess.Popen(["sh", "-c", "trap '' INT; exec \"$@\"", "sh", *argv], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        training = _training(_wait_for(proc, load_study, storage, lambda ts: len(
            {t.user_attrs.get(WORKER_ATTR, {}).get("pid") for t in _training(ts)} - {None}) == 2,
            "both processes were training a trial"))
        signalled = time.time()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert code == 143 and "mbnas: stopped by SIGTERM" in err, err[-2000:]
    assert err.count("mbnas: stopped by") == 1 and "rerun the same command to resume" in err  # not once per worker
    for pid in {t.user_attrs[WORKER_ATTR]["pid"] for t in training}:
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"process {pid} still runs after the search was stopped"
    trials = load_study(storage).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for t in training:
        done = trials[t.number].datetime_complete
        assert outcome_of(trials[t.number]) == "interrupted", (
            f"trial {t.number} started {t.datetime_start}, ended {done}, signal at "
            f"{time.strftime('%H:%M:%S', time.localtime(signalled))}")
        assert TrialRecord.from_trial(trials[t.number]).failure.startswith("interrupted: stopped by")


def test_a_sigterm_reaches_the_workers_at_once(tmp_path):
    """``kill`` signals only the search the user started: its workers get the SIGTERM before its own
    handler runs (which marks its trial first, a write that may wait on SQLite's lock)."""
    import sys

    from nas.search.local_workers import _relay_sigterm

    got = tmp_path / "got"
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(got)!r}, 'w').write('SIGTERM'), sys.exit(0)))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    seen = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(child.poll()))
    told: set[int] = set()
    restore = _relay_sigterm([child], told)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert child.wait(timeout=20) == 0 and got.read_text() == "SIGTERM"
        assert seen == [None] and told == {child.pid}  # the worker was told before this process's handler ran
    finally:
        restore()
        signal.signal(signal.SIGTERM, before)
        if child.poll() is None:
            child.kill()


def test_a_second_signal_does_not_cut_the_marking_short():
    """While a stopping process marks its trial interrupted, a second Ctrl-C or SIGTERM is held off
    (a terminal's Ctrl-C reaches every worker, and the search then stops them too)."""
    from nas.search.optuna_backend import signals_held

    before = signal.getsignal(signal.SIGINT)
    with signals_held():
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt here
        os.kill(os.getpid(), signal.SIGTERM)  # nor the end of the process
        time.sleep(0.1)
    assert signal.getsignal(signal.SIGINT) is before


def _ray_trainers() -> list[int]:
    """Pids of Ray worker processes running a Tune trial (their title: ``ray::ImplicitFunc.train``)."""
    out = subprocess.run(["pgrep", "-f", r"ray::ImplicitFunc\.train"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_killed_ray_worker_costs_its_trials_time_never_the_trial(mbnas_argv, smoke_search, load_study, tmp_path):
    """kill -9 of the Ray worker process training a trial: the trial is interrupted (not failed), its
    candidate retried once, and the search still delivers the trials asked."""
    from optuna.trial import TrialState

    from nas.search import outcome_of

    storage = f"sqlite:///{tmp_path / 'ray-lost.db'}"
    longer = ("--distill-option", "layer_steps=60", "--distill-option", "pd_steps=120")
    argv = mbnas_argv(*smoke_search(storage, "--backend", "ray", "--cpus-per-trial", "1", *longer, trials=2))
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for(proc, load_study, storage, lambda ts: bool(_training(ts)) and bool(_ray_trainers()),
                  "a Ray worker was training a trial", timeout_s=300)
        time.sleep(2)  # inside its training, past loading the teacher
        os.kill(_ray_trainers()[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    trials = load_study(storage).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    lost = [t for t in trials if outcome_of(t) == "interrupted"]
    assert len(lost) == 1 and "its Ray worker died" in lost[0].user_attrs["mbnas.failure"]
    retry = [t for t in trials if t.user_attrs.get("mbnas.retry_of") == lost[0].number]
    assert len(retry) == 1 and retry[0].params == lost[0].params and outcome_of(retry[0]) != "interrupted"
    assert sum(outcome_of(t) in ("complete", "stopped", "failed") for t in trials) == 2
