"""The orchestration, in-process and in seconds: a sweep's outcome as the summary reads it,
and how a stopped parallel sweep stops its trial processes. (The end-to-end tests run the
same paths through `python -m trainer`.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hydra_plugins.lrlab_sweepers.local_parallel import stop_trials
from trainer.sweeps import summary
from trainer.sweeps.trial import Outcome, Trial


def test_the_summary_counts_each_outcome_and_picks_the_best_finished_trial(tmp_path):
    outcomes = [
        ("FINISHED", {"val/accuracy": 0.91, "val/loss": 0.30}),
        ("FINISHED", {"val/accuracy": 0.95, "val/loss": 0.35}),
        ("FAILED", {}),
        ("PRUNED", {"val/accuracy": 0.99}),  # pruned trials never win, whatever they reached
        ("KILLED", {"val/accuracy": 0.98}),
        ("FINISHED", {"val/accuracy": float("nan")}),  # a NaN never wins either
    ]
    for number, (status, metrics) in enumerate(outcomes):
        trial = Trial("s1", number, str(tmp_path / f"{number}_mlp"))
        Outcome(status, f"#{number} mlp", metrics=metrics).write(trial)
    found = summary.load(tmp_path, "val/accuracy")
    assert [t["number"] for t in found.trials] == list(range(6))
    assert found.best["number"] == 1
    assert found.describe() == (
        "6 trials (3 finished, 1 pruned, 1 failed, 1 killed); best #1 val/accuracy=0.95"
    )
    assert summary.load(tmp_path, "val/loss").best["number"] == 0  # a loss: lower wins


def test_the_optuna_sweeper_tells_the_study_what_each_trial_returned():
    import optuna
    from hydra.core.utils import JobReturn, JobStatus

    from trainer.sweeps.optuna_search import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    returned = [
        Outcome("FINISHED", "#0", value=0.93),
        Outcome("PRUNED", "#1", error="pruned after epoch 1"),
        Outcome("FAILED", "#2", error="ValueError: bad"),
        Outcome("FINISHED", "#3"),  # finished without a finite metric: no value to tell
    ]
    for outcome in returned:
        job = JobReturn(status=JobStatus.COMPLETED, _return_value=outcome)
        OptunaSearch._tell(None, study, study.ask(), job, optuna.trial.TrialState)
    crashed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("worker lost"))
    OptunaSearch._tell(None, study, study.ask(), crashed, optuna.trial.TrialState)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL", "FAIL", "FAIL"]
    assert study.trials[0].value == pytest.approx(0.93)
    assert study.trials[2].user_attrs["lrlab.error"] == "ValueError: bad"
    assert "worker lost" in study.trials[4].user_attrs["lrlab.error"]
    assert float(returned[0]) == pytest.approx(0.93)  # a sweeper that wants a number


TRIAL = """
import signal, sys, time
from pathlib import Path
mark = Path(sys.argv[1])
def stop(signum, frame):
    mark.write_text(signal.Signals(signum).name)
    time.sleep(0.3)  # closing its run
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
mark.write_text("started")
while True:
    time.sleep(0.05)
"""


def _fake_trial(tmp_path, name, code=TRIAL):
    """A child process that looks like submitit's trial wrapper (its command line names
    `submitit.local._local`) and records the signal that stops it."""
    mark = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-c", code, str(mark), "submitit.local._local"])
    deadline = time.time() + 10
    while not mark.exists() and time.time() < deadline:
        time.sleep(0.02)
    return proc, mark


def test_a_stopped_sweep_sends_sigterm_to_its_trials_and_waits_for_them(tmp_path):
    trials = [_fake_trial(tmp_path, f"trial{n}") for n in range(2)]
    started = time.monotonic()
    stop_trials(signal.SIGINT, wait=20)  # Ctrl-C: passed on as SIGTERM
    assert time.monotonic() - started < 5
    for proc, mark in trials:
        assert proc.poll() == 0  # ended, and collected by the wait
        assert mark.read_text() == "SIGTERM"


def test_the_sweep_waits_no_longer_than_stop_wait(tmp_path, caplog):
    stubborn = TRIAL.replace(
        "signal.signal(signal.SIGTERM, stop)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    )
    proc, _ = _fake_trial(tmp_path, "stubborn", stubborn)
    try:
        started = time.monotonic()
        stop_trials(signal.SIGTERM, wait=0.5)
        assert 0.5 <= time.monotonic() - started < 3
        assert proc.poll() is None
        assert "1 trial(s) still running after 0.5 s (hydra.launcher.stop_wait)" in caplog.text
    finally:
        proc.kill()
        proc.wait()


def _blocked_signals(status_text):
    (line,) = [s for s in status_text.splitlines() if s.startswith("SigBlk:")]
    return int(line.split()[1], 16)


DEAF = """
import os, signal, subprocess, sys, time
from hydra_plugins.lrlab_sweepers.local_parallel import _ctrl_c_kept_from_trials

# A shell starts background jobs with Ctrl-C ignored, and Python keeps that: hear it, as a
# sweep started at a terminal does.
signal.signal(signal.SIGINT, signal.default_int_handler)
show = "print(open('/proc/self/status').read())"
heard = False
with _ctrl_c_kept_from_trials():
    child = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # to the process, as a terminal does
        time.sleep(1)
    except KeyboardInterrupt:
        heard = True
print(child.stdout)
print("heard", heard)
print("blocked after", signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_trials_start_deaf_to_ctrl_c_while_the_sweep_still_hears_it():
    # In a fresh process, as a sweep runs: in this one, threads that earlier tests left
    # running can hold Python's pending-signal flag past the second the check waits.
    sigint = 1 << (signal.SIGINT - 1)
    out = subprocess.run([sys.executable, "-c", DEAF], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "heard True" in out.stdout  # the sweep's own Ctrl-C still arrives
    assert _blocked_signals(out.stdout) & sigint  # the trial's wrapper ignores Ctrl-C
    assert "blocked after False" in out.stdout


def _tracked_run(tmp_path, ending):

    from trainer.tracking.run import TrackedRun, build_sinks
    from trainer.tracking.sinks.base import RunInfo

    sinks = build_sinks(
        {
            "mlflow": {
                "_target_": "trainer.tracking.sinks.mlflow_sink.MlflowSink",
                "uri": f"sqlite:///{tmp_path}/mlflow.db",
                "experiment": "orchestration",
            }
        }
    )
    info = RunInfo("mlp-mnist-constant", str(tmp_path / "run"))
    return TrackedRun(sinks, False, info, {"lr": 0.1}, {}, ending=ending)


def _status(tmp_path, ending):
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(ending.run_id)
    return run.info.status, run.data.tags


def test_a_stopped_run_tells_its_caller_how_it_ended_and_where(tmp_path):
    from trainer.stopping import Stopped
    from trainer.tracking.run import Ending

    ending = Ending()
    assert ending.note() == ""  # nothing closed yet: the console says no run had started
    with pytest.raises(Stopped), _tracked_run(tmp_path, ending):
        raise Stopped(signal.SIGTERM)
    assert ending.status == "KILLED" and ending.refs["mlflow"]["run_id"] == ending.run_id
    assert ending.note() == (
        f"; MLflow run mlp-mnist-constant ({ending.run_id}) saved as KILLED, with every step "
        f"trained so far in {tmp_path / 'run'}"
    )
    assert _status(tmp_path, ending)[0] == "KILLED"


def test_what_stops_a_run_early_decides_how_it_ends(tmp_path):
    from trainer.tracking.run import Ending

    # Optuna's pruning: an exception, yet the run ends KILLED (not FAILED), tagged as pruned.
    ending = Ending()
    with pytest.raises(RuntimeError), _tracked_run(tmp_path, ending):
        ending.forced_status = "KILLED"
        ending.tags = {"lrlab.pruned": "true"}
        raise RuntimeError("pruned")
    status, tags = _status(tmp_path, ending)
    assert (ending.status, status, tags["lrlab.pruned"]) == ("KILLED", "KILLED", "true")
    # A run that returns ends FINISHED whatever was set for an early stop that never came.
    finished = Ending(forced_status="KILLED")
    with _tracked_run(tmp_path, finished):
        pass
    assert finished.status == "FINISHED" == _status(tmp_path, finished)[0]


def test_one_backoff_policy_retries_what_may_succeed_and_nothing_else():
    from trainer.retry import Backoff, retried

    assert [Backoff(0.5, 30.0).after(d) for d in (0, 0.5, 16, 30)] == [0.5, 1.0, 30.0, 30.0]
    quick = Backoff(0.001, 0.004)
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise OSError("database is locked")
        return "done"

    retryable = lambda err: "locked" in str(err)  # noqa: E731
    notify = lambda err, wait: waits.append(wait)  # noqa: E731
    assert retried(flaky, retryable, quick, on_retry=notify) == "done"
    assert waits == [0.001, 0.002, 0.004]
    calls.clear()
    with pytest.raises(OSError):  # out of attempts: the last error stands
        retried(flaky, retryable, quick, attempts=2)
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(OSError):  # out of patience
        retried(flaky, retryable, quick, patience=0.002)
    assert len(calls) == 3
    with pytest.raises(ValueError):  # a refusal is not retried
        retried(lambda: calls.append(1) or int("x"), retryable, quick)


@pytest.mark.parametrize(
    "setting, in_sweep, policy, best_epoch, final, logged",
    [
        ("auto", False, "all", True, True, True),
        ("auto", True, "best", False, True, False),  # a trial: the summary keeps the best's
        ("best", False, "all", True, True, True),  # a single run is its own best
        ("none", True, "none", False, False, False),
    ],
)
def test_which_models_a_run_keeps_is_decided_once(
    setting, in_sweep, policy, best_epoch, final, logged
):
    from trainer.experiment import KeptModels

    kept = KeptModels.for_run(setting, trial=object() if in_sweep else None)
    assert (kept.policy, kept.best_epoch, kept.final, kept.logged) == (
        policy,
        best_epoch,
        final,
        logged,
    )
