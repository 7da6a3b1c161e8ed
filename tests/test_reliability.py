"""Faults injected into real runs: what survives, and what lrlab does about the rest."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.project import trainer_command
from tests.tracking_stores import mlflow_history, mlflow_runs


def start_trainer(workdir, uri, **env):
    """A long `python -m trainer` in a process group of its own (trainer and writer), with a
    heartbeat every second."""
    argv, environment = trainer_command(
        "model=mlp",
        "trainer.epochs=100",
        "trainer.limit_train_batches=200",
        "tracking.flush_every_steps=10",
        f"tracking.uri={uri}",
        "sink=[mlflow]",
        LRLAB_HEARTBEAT_S="1",
        **env,
    )
    return subprocess.Popen(
        argv,
        cwd=workdir,
        env=environment,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_steps(uri, count, timeout=120):
    """The runs once `count` of them are RUNNING with steps logged."""
    deadline = time.time() + timeout
    while True:
        try:
            client, runs = mlflow_runs(uri)
            going = [
                r
                for r in runs
                if r.info.status == "RUNNING" and mlflow_history(client, r, "train/lr")
            ]
            if len(going) >= count:
                return client, going
        except Exception:  # the store is not there yet
            pass
        assert time.time() < deadline, f"{count} run(s) did not start"
        time.sleep(1)


def repair(uri, *args):
    out = subprocess.run(
        [sys.executable, "-m", "trainer.tracking", "repair", "--uri", uri, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


LOAD = [sys.executable, "-m", "trainer.tracking", "load"]


def test_repair_closes_the_runs_of_killed_processes_and_leaves_live_ones(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    doomed = start_trainer(workdir, uri)
    client, (doomed_run,) = wait_for_steps(uri, 1)
    live = start_trainer(workdir, uri)
    try:
        client, going = wait_for_steps(uri, 2)
        (live_run,) = [r for r in going if r.info.run_id != doomed_run.info.run_id]
        # SIGKILL to the trainer and its writer: nothing closes the run.
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        time.sleep(2)
        assert client.get_run(doomed_run.info.run_id).info.status == "RUNNING"

        out = repair(uri)
        assert f"{doomed_run.info.run_id}): closed as KILLED: its process" in out
        assert "on this machine is gone" in out
        assert f"{live_run.info.run_id}): left RUNNING: its process" in out
        assert "2 RUNNING run(s)" in out and "1 closed as KILLED" in out
        repaired = client.get_run(doomed_run.info.run_id)
        assert repaired.info.status == "KILLED"
        assert "is gone" in repaired.data.tags["lrlab.repaired"]
        # Its end time is its last heartbeat, not the time of the repair.
        assert repaired.info.end_time <= int(time.time() * 1000) - 1000
        assert client.get_run(live_run.info.run_id).info.status == "RUNNING"

        # A run of another machine (its process cannot be looked at from here) is judged by
        # its heartbeat: alive while it beats, abandoned once it is older than --stale.
        client.set_tag(live_run.info.run_id, "lrlab.host", "another-machine")
        assert "left RUNNING: last heartbeat" in repair(uri, "--stale", "5s")
        os.killpg(live.pid, signal.SIGKILL)
        live.wait(timeout=30)
        time.sleep(7)
        assert "left RUNNING: last heartbeat" in repair(uri)  # default: 10 minutes
        out = repair(uri, "--stale", "5s", "--dry-run")
        assert "would close as KILLED: no heartbeat for" in out
        assert client.get_run(live_run.info.run_id).info.status == "RUNNING"
        assert "closed as KILLED: no heartbeat for" in repair(uri, "--stale", "5s")
        assert client.get_run(live_run.info.run_id).info.status == "KILLED"
        assert "0 RUNNING run(s)" in repair(uri)
    finally:
        for process in (doomed, live):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def test_repair_names_a_missing_store_a_missing_experiment_and_a_bad_length(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    # No store there: said, and none is made (MLflow would create an empty one).
    out = subprocess.run(
        [sys.executable, "-m", "trainer.tracking", "repair", "--uri", uri],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert f"no MLflow store at {uri}: {workdir}/mlflow.db does not exist" in out.stderr
    assert not (workdir / "mlflow.db").exists()
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).create_experiment("other")
    out = subprocess.run(
        [sys.executable, "-m", "trainer.tracking", "repair", "--uri", uri, "--stale", "soon"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert (
        "--stale='soon' is not a length of time" in out.stderr and "e.g. --stale 10m" in out.stderr
    )
    out = subprocess.run(
        [sys.executable, "-m", "trainer.tracking", "repair", "--uri", uri, "--experiment", "nope"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert f"no experiment 'nope' in the MLflow store at {uri}" in out.stderr


def test_a_killed_trainer_leaves_its_writer_to_close_the_run_killed(workdir):
    # SIGKILL to the training process alone (an OOM kill, say): the writer process sees the
    # pipe close, writes every row it was handed and ends the run KILLED.
    uri = f"sqlite:///{workdir}/mlflow.db"
    trainer = start_trainer(workdir, uri)
    try:
        client, (run,) = wait_for_steps(uri, 1)
        time.sleep(2)
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=30)
        deadline = time.time() + 60
        while client.get_run(run.info.run_id).info.status == "RUNNING":
            assert time.time() < deadline, "the writer did not close the run"
            time.sleep(1)
        assert client.get_run(run.info.run_id).info.status == "KILLED"
        steps = [s for s, _ in mlflow_history(client, run, "train/lr")]
        assert len(steps) >= 10 and steps == list(range(len(steps)))  # each once, no hole
        assert "0 RUNNING run(s)" in repair(uri)
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)
            trainer.wait(timeout=30)


def test_load_refuses_a_count_below_one(workdir):
    for option, value in [("--runs", "0"), ("--steps", "-5"), ("--flush-every", "many")]:
        out = subprocess.run([*LOAD, option, value], capture_output=True, text=True)
        assert out.returncode == 2
        assert f"argument {option}: '{value}' is not a whole number >= 1" in out.stderr


@pytest.mark.slow  # about a minute: CI runs it with -m slow
def test_four_runs_at_once_on_one_sqlite_file_keep_every_point(workdir):
    # Four runs' writers hand over 100 steps at a time into one SQLite file, which admits one
    # writer at a time; a locked write is retried. Counted straight from the file.
    import sqlite3

    uri = f"sqlite:///{workdir}/mlflow.db"
    out = subprocess.run(
        [*LOAD, "--uri", uri, "--runs", "4", "--steps", "1000", "--flush-every", "100"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12000 points stored in" in out.stdout and "every point present" in out.stdout
    with sqlite3.connect(workdir / "mlflow.db") as db:
        counts = db.execute(
            "SELECT run_uuid, key, count(*), count(DISTINCT step), min(step), max(step) "
            "FROM metrics GROUP BY run_uuid, key"
        ).fetchall()
        finished = db.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone()
    assert len(counts) == 12 and finished == (4,)
    assert {tuple(c[2:]) for c in counts} == {(1000, 1000, 0, 999)}
