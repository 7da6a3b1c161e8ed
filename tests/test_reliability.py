"""Faults injected into real runs: what survives, and what lrlab does about the rest."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.mlflow_server import MlflowServer
from tests.project import ROOT, trainer_command
from tests.tracking_stores import mlflow_history, mlflow_runs
from trainer.config.errors import ConfigError
from trainer.tracking.sinks.base import RunInfo
from trainer.tracking.sinks.mlflow_sink import MlflowSink
from trainer.tracking.writer import WriterProcess


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


LOAD = [sys.executable, str(ROOT / "bench" / "load_store.py")]


@pytest.mark.slow
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

        # What the killed writer had spooled but not uploaded goes up first.
        folder = Path(doomed_run.data.tags["lrlab.run_dir"])
        spooled = {
            step
            for line in (folder / "mlflow_spool.jsonl").read_text().splitlines()[1:]
            for key, _, _, step in json.loads(line).get("metrics", ())
            if key == "train/lr"
        }
        out = repair(uri)
        assert f"{doomed_run.info.run_id}): closed as KILLED: its process" in out
        assert "on this machine is gone" in out and "its spool held uploaded first" in out
        assert [s for s, _ in mlflow_history(client, doomed_run, "train/lr")] == sorted(spooled)
        assert not (folder / "mlflow_spool.jsonl").exists()
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def point_counts(database):
    """{key: (points, distinct steps, first step, last step)} of every run, from PostgreSQL."""
    import psycopg2

    with psycopg2.connect(database.replace("postgresql+psycopg2", "postgresql")) as db:
        cursor = db.cursor()
        cursor.execute(
            "SELECT key, count(*), count(DISTINCT step), min(step), max(step) FROM metrics "
            "GROUP BY key"
        )
        return {key: tuple(rest) for key, *rest in cursor.fetchall()}


def run_status(database):
    import psycopg2

    with psycopg2.connect(database.replace("postgresql+psycopg2", "postgresql")) as db:
        cursor = db.cursor()
        cursor.execute("SELECT status FROM runs")
        return [status for (status,) in cursor.fetchall()]


def sync(*args):
    return subprocess.run(
        [sys.executable, "-m", "trainer.tracking", "sync", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def steps_csv_rows(run_dir):
    path = run_dir / "steps.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


@pytest.mark.slow  # about two minutes, 30 s of them the outage: CI runs it with -m slow
def test_a_30_s_server_outage_mid_run_costs_no_point(workdir, postgres_database):
    database = postgres_database()
    server = MlflowServer(database, workdir / "artifacts").start()
    epochs, per_epoch = 40, 200
    argv, env = trainer_command(
        "model=mlp",
        f"trainer.epochs={epochs}",
        f"trainer.limit_train_batches={per_epoch}",
        "tracking.flush_every_steps=50",
        f"tracking.uri={server.uri}",
        "tracking.strict=true",
        "sink=[mlflow,csv]",
        "hydra.run.dir=run",
    )
    with open(workdir / "trainer.log", "w") as log:
        trainer = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=log)
    try:
        wait_for_steps(server.uri, 1)
        server.kill()
        before = steps_csv_rows(workdir / "run")
        time.sleep(30)
        during = steps_csv_rows(workdir / "run") - before
        assert trainer.poll() is None, "training stopped while the server was away"
        assert during >= per_epoch, f"{during} steps trained in the 30 s outage"
        server.start()
        assert trainer.wait(timeout=600) == 0, (workdir / "trainer.log").read_text()[-3000:]
    finally:
        if trainer.poll() is None:
            trainer.kill()
        server.kill()
    log_text = (workdir / "trainer.log").read_text()
    assert "the MLflow store does not answer" in log_text
    assert "the MLflow store is back after" in log_text
    steps = epochs * per_epoch
    counts = point_counts(database)
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        assert counts[key] == (steps, steps, 0, steps - 1), key  # every step, each once
    assert counts["epoch/val_loss"][:2] == (epochs, epochs)
    assert counts["test/accuracy"][:2] == (1, 1)
    assert run_status(database) == ["FINISHED"]
    assert not (workdir / "run" / "mlflow_spool.jsonl").exists()  # all of it uploaded


@pytest.mark.slow
def test_a_server_away_at_the_end_leaves_a_spool_that_sync_uploads_once(workdir, postgres_database):
    database = postgres_database()
    server = MlflowServer(database, workdir / "artifacts").start()
    steps = 400
    argv, env = trainer_command(
        "model=mlp",
        "trainer.epochs=2",
        "trainer.limit_train_batches=200",
        "tracking.flush_every_steps=50",
        f"tracking.uri={server.uri}",
        "tracking.strict=true",
        "sink=[mlflow]",
        "sink.mlflow.upload_wait=3",
        "hydra.run.dir=run",
    )
    trainer = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_steps(server.uri, 1)
        server.kill()
        out, _ = trainer.communicate(timeout=300)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    # The run ends as usual (exit 0); what the store missed waits in the run folder.
    assert trainer.returncode == 0, out[-3000:]
    run_dir = workdir / "run"
    assert "wait in" in out and f"python -m trainer.tracking sync {run_dir}" in out
    assert "waiting for the MLflow store at" in out and "points left, up to 1 s more" in out
    assert (run_dir / "mlflow_spool.jsonl").exists()
    saved = (run_dir / "mlflow_spool.jsonl").read_bytes()

    # While the store is still away, sync says so and keeps the spool.
    out = sync(str(run_dir))
    assert out.returncode == 2 and "does not answer" in out.stderr, out.stderr
    assert (run_dir / "mlflow_spool.jsonl").read_bytes() == saved

    server.start()
    try:
        assert run_status(database) == ["RUNNING"]
        # A second run in the same folder would bury them: refused as it starts, naming the
        # way out, before any run is created.
        writer = WriterProcess({"mlflow": MlflowSink(server.uri, "lrlab")})
        with pytest.raises(ConfigError) as refused:
            writer.start(RunInfo("again", str(run_dir)))
        assert "holds values of an earlier MLflow run not yet uploaded" in str(refused.value)
        assert f"python -m trainer.tracking sync {run_dir}" in str(refused.value)
        assert len(run_status(database)) == 1
        out = sync(str(run_dir))
        assert out.returncode == 0, out.stderr
        assert "closed FINISHED" in out.stdout
        counts = point_counts(database)
        for key in ("train/lr", "train/loss", "train/mean_iou"):
            assert counts[key] == (steps, steps, 0, steps - 1), key
        assert counts["test/accuracy"][:2] == (1, 1)
        assert run_status(database) == ["FINISHED"]
        assert not (run_dir / "mlflow_spool.jsonl").exists()
        assert "nothing to upload" in sync(str(run_dir)).stdout

        # A sync cut off after an upload but before saving how far it got sends lines
        # again: each point is still stored once.
        (run_dir / "mlflow_spool.jsonl").write_bytes(saved)
        (run_dir / "mlflow_spool.offset").write_text("0")
        assert sync(str(run_dir)).returncode == 0
        assert point_counts(database) == counts
    finally:
        server.kill()


@pytest.mark.slow  # a minute or two on a machine it keeps busy itself: CI runs it
def test_on_a_busy_machine_every_step_reaches_mlflow_within_seconds_of_training_end(workdir):
    """Three CPU-bound processes per core beside the run: the uploader yields to training,
    but not for ever, and the run's end uploads at normal priority."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(3 * os.cpu_count())
    ]
    steps = 300
    try:
        argv, env = trainer_command(
            "model=mlp",
            "trainer.epochs=1",
            f"trainer.limit_train_batches={steps}",
            "tracking.flush_every_steps=50",
            "sink=[mlflow,csv]",
            "hydra.run.dir=run",
        )
        out = subprocess.run(
            argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900
        )
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()  # Hydra logs to stdout

    def logged_at(text):
        (line,) = [line for line in lines if text in line][-1:]
        return time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + float(
            "0." + line[21:24]
        )

    # From the line with the test metrics (training over) to the run closed in every store.
    waited = logged_at("ended FINISHED") - logged_at("test/accuracy=")
    assert waited < 10, f"the end waited {waited:.1f} s for the store:\n{out.stdout[-2000:]}"
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "FINISHED"
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        assert [s for s, _ in mlflow_history(client, run, key)] == list(range(steps)), key
    assert not (workdir / "run" / "mlflow_spool.jsonl").exists()


def resumable_run(*extra, folder="run"):
    """A CNN run of 3 epochs x 100 steps, checkpointed every 25 steps, in `folder`."""
    return trainer_command(
        "model=cnn",
        "trainer.epochs=3",
        "trainer.limit_train_batches=100",
        "trainer.checkpoint_every=25",
        "trainer.early_stopping_patience=5",
        "tracking.flush_every_steps=10",
        "tracking.strict=true",
        "sink=[mlflow,tensorboard,csv]",
        f"hydra.run.dir={folder}",
        *extra,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend,extra",
    [
        ("tensorflow", ()),
        ("jax", ()),
        ("torch", ()),
        # Its state (z, the averaging weights) and the early stop's best optimizer state
        # travel in the checkpoint; validation at x must not leak into training at y.
        ("tensorflow", ("optimizer=schedule_free_adamw", "schedule=constant")),
    ],
    ids=["tensorflow", "jax", "torch", "schedule_free"],
)
def test_a_run_killed_mid_epoch_resumes_into_the_same_run_with_every_step_once(
    workdir, backend, extra
):
    from tests.project import compose_config
    from tests.tracking_stores import tensorboard_scalars
    from trainer.config.build import from_config

    pytest.importorskip(backend)
    uri = f"sqlite:///{workdir}/mlflow.db"
    argv, env = resumable_run(f"tracking.uri={uri}", f"backend={backend}", *extra)
    run_dir = workdir / "run"
    trainer = subprocess.Popen(argv, cwd=workdir, env=env, start_new_session=True)
    try:
        # SIGKILL to the trainer and its writer in the middle of the second epoch, after a
        # checkpoint: nothing gets to close anything.
        deadline = time.time() + 240
        while steps_csv_rows(run_dir) < 140 or not (run_dir / "resume").exists():
            assert trainer.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.05)
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=30)
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)
    killed_at = steps_csv_rows(run_dir)
    assert killed_at < 200, "the run was not killed mid-epoch"
    client, (killed,) = mlflow_runs(uri)
    assert killed.info.status == "RUNNING"
    # A crash while saving leaves a half-written file beside the last whole checkpoint.
    (run_dir / "resume" / "checkpoint.npz.tmp").write_bytes(b"PK\x03\x04 cut short")

    out = subprocess.run(
        [*argv, "trainer.resume=true"], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed at step" in out.stdout

    client, runs = mlflow_runs(uri)
    (run,) = runs  # the same run, continued
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert 100 < int(run.data.tags["lrlab.resumed_at_step"]) <= killed_at
    steps = list(range(300))
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        assert [s for s, _ in mlflow_history(client, run, key)] == steps, key
    assert [s for s, _ in mlflow_history(client, run, "epoch/val_loss")] == [0, 1, 2]
    board = tensorboard_scalars(run_dir)
    assert [s for s, _ in board["train/lr"]] == steps
    assert [s for s, _ in board["epoch/val_loss"]] == [0, 1, 2]
    with open(run_dir / "steps.csv") as f:
        assert [int(line.split(",")[0]) for line in f.readlines()[1:]] == steps

    # The rate at every step is the schedule's at that step: the optimizer's step counter
    # came back with the model. (To float32 resolution: training compiles the schedule with
    # XLA, which moves the last bit; tests/test_schedules_contract.py.)
    cfg = compose_config("train", ["model=cnn", "trainer.epochs=3", *extra])
    schedule = from_config(cfg, steps_per_epoch=100, run_steps=300)
    lrs = [v for _, v in mlflow_history(client, run, "train/lr")]
    np.testing.assert_allclose(
        lrs, [float(schedule(k)) for k in steps], rtol=1e-6, atol=1e-7 * max(lrs)
    )
    assert not (run_dir / "resume").exists()  # a finished run has nothing to resume

    # And it trained on the very batches an uninterrupted run trains on: the same losses.
    argv, env = resumable_run(
        f"tracking.uri=sqlite:///{workdir}/straight.db",
        f"backend={backend}",
        *extra,
        folder="straight",
    )
    straight = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-3000:]
    other, (reference,) = mlflow_runs(f"sqlite:///{workdir}/straight.db")
    assert lrs == [v for _, v in mlflow_history(other, reference, "train/lr")]
    np.testing.assert_allclose(
        [v for _, v in mlflow_history(client, run, "train/loss")],
        [v for _, v in mlflow_history(other, reference, "train/loss")],
        rtol=1e-4,
    )


def interruptible_run(workdir, folder):
    """An MLP run of 2000 steps (10 epochs of 200) whose first periodic checkpoint comes
    at step 1000: a stop in its first seconds comes before it."""
    return trainer_command(
        "model=mlp",
        "trainer.epochs=10",
        "trainer.limit_train_batches=200",
        "trainer.checkpoint_every=1000",
        "dataset.val_size=1000",
        "tracking.flush_every_steps=20",
        "tracking.strict=true",
        f"tracking.uri=sqlite:///{workdir}/mlflow.db",
        "sink=[mlflow,tensorboard,csv]",
        f"hydra.run.dir={folder}",
    )


def stop_early(workdir, folder, stop):
    """Start `interruptible_run` in `folder` and `stop(process)` it once 40 steps are in its
    steps.csv; the process, ended."""
    argv, env = interruptible_run(workdir, folder)
    trainer = subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while steps_csv_rows(workdir / folder) < 40:
            assert trainer.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.02)
        stop(trainer)
        trainer.output, _ = trainer.communicate(timeout=120)
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)
    return trainer


def resume_and_check(workdir, folder, killed, resumed_at):
    """Resume the run in `folder`; it ends FINISHED in the same MLflow run with each of the
    2000 steps once in every store, and one epoch entry per whole epoch."""
    from tests.tracking_stores import tensorboard_scalars

    argv, env = interruptible_run(workdir, folder)
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # as a user runs it
    out = subprocess.run(
        [*argv, "trainer.resume=true"], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for notice in ("cuda", "absl::InitializeLog", "cpu_feature_guard"):  # TensorFlow's
        assert notice not in out.stdout + out.stderr, notice
    client, runs = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    (run,) = [r for r in runs if r.info.run_id == killed.info.run_id]
    assert run.info.status == "FINISHED"
    assert run.data.tags["lrlab.resumed_at_step"] == str(resumed_at)
    steps = list(range(2000))
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        assert [s for s, _ in mlflow_history(client, run, key)] == steps, key
    assert [s for s, _ in mlflow_history(client, run, "epoch/val_loss")] == list(range(10))
    board = tensorboard_scalars(workdir / folder)
    assert [s for s, _ in board["train/lr"]] == steps
    assert [s for s, _ in board["epoch/val_loss"]] == list(range(10))
    with open(workdir / folder / "steps.csv") as f:
        assert [int(line.split(",")[0]) for line in f.readlines()[1:]] == steps


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_where_it_stops_and_the_run_resumes_from_there(workdir):
    from trainer import resume

    stopped = stop_early(workdir, "run", lambda p: p.send_signal(signal.SIGINT))
    assert stopped.returncode == 130, stopped.output[-3000:]
    step = resume.load(resume.path_in(workdir / "run"))[0]["step"]
    assert 40 <= step < 1000, step  # where it stopped, not the last periodic checkpoint
    assert "continue it with: python -m trainer" in stopped.output
    assert "trainer.resume=true" in stopped.output
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "KILLED"
    assert run.data.tags["mlflow.note.content"].startswith(
        f"Interrupted (Ctrl-C) after {step} of 2000 steps; continue it with: python -m trainer"
    )
    assert [s for s, _ in mlflow_history(client, run, "train/lr")] == list(range(step))
    # The partial epoch is no epoch: no validation, no epoch metrics, no best model from it;
    # only the epochs that ended before the stop are (the writer's start can delay steps.csv,
    # and so the stop, past the first epoch's 200 steps on a busy machine).
    whole = list(range(step // 200))
    assert [s for s, _ in mlflow_history(client, run, "epoch/val_loss")] == whole
    assert [s for s, _ in mlflow_history(client, run, "epoch/train_loss")] == whole
    assert (workdir / "run" / "best.keras").exists() == bool(whole)
    resume_and_check(workdir, "run", run, step)


def assert_stopped_like_ctrl_c(workdir, stopped, name, code):
    """A run stopped by a signal named `name`: exit `code` with no traceback, a resume
    checkpoint at the step it stopped, the run KILLED with each step trained once and a
    description naming the signal; returns (run, step)."""
    from trainer import resume

    assert stopped.returncode == code, stopped.output[-3000:]
    assert "Traceback" not in stopped.output, stopped.output[-3000:]
    assert f"python -m trainer: interrupted ({name}); MLflow run" in stopped.output
    step = resume.load(resume.path_in(workdir / "run"))[0]["step"]
    assert 40 <= step < 1000, step  # where it stopped, not the last periodic checkpoint
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "KILLED"
    assert run.data.tags["mlflow.note.content"].startswith(
        f"Interrupted ({name}) after {step} of 2000 steps; continue it with: python -m trainer"
    )
    for key in ("train/lr", "train/loss"):
        assert [s for s, _ in mlflow_history(client, run, key)] == list(range(step)), key
    assert not (workdir / "run" / "mlflow_spool.jsonl").exists()  # every write uploaded
    return run, step


@pytest.mark.slow
def test_sigterm_to_the_process_group_stops_like_ctrl_c_and_the_run_resumes(workdir):
    # `docker stop`, `timeout` and Slurm: SIGTERM to every process of the job, the tracking
    # writer included, which must leave the ending to the trainer.
    stopped = stop_early(workdir, "run", lambda p: os.killpg(p.pid, signal.SIGTERM))
    run, step = assert_stopped_like_ctrl_c(workdir, stopped, "SIGTERM", 128 + signal.SIGTERM)
    resume_and_check(workdir, "run", run, step)


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm-trainer-alone", "sighup"]
)
def test_sigterm_or_sighup_to_the_trainer_alone_stops_like_ctrl_c(workdir, signum):
    stopped = stop_early(workdir, "run", lambda p: p.send_signal(signum))
    assert_stopped_like_ctrl_c(workdir, stopped, signal.Signals(signum).name, 128 + signum)


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(workdir):
    stopped = stop_early(workdir, "run", lambda p: os.killpg(p.pid, signal.SIGKILL))
    assert stopped.returncode == -signal.SIGKILL
    killed_at = steps_csv_rows(workdir / "run")
    assert killed_at < 1000, "killed after the first periodic checkpoint"
    _, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "RUNNING"  # SIGKILL: nothing closed it
    # Restarted from step 0 in the same MLflow run; each store keeps each step once.
    resume_and_check(workdir, "run", run, 0)


def test_resume_names_a_folder_without_checkpoint_and_changed_settings(workdir):
    # Both are found before TensorFlow is imported or any data loaded.
    uri = f"sqlite:///{workdir}/mlflow.db"
    argv, env = resumable_run(f"tracking.uri={uri}", "trainer.resume=true")
    out = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert f"trainer.resume=true, but {workdir}/run holds no run" in out.stderr
    assert "give the killed run's folder" in out.stderr

    # A checkpoint saved with other settings is not continued with these. (The settings are
    # compared before any variable is read: a model without variables stands in.)
    from tests.project import compose_config
    from trainer import resume

    overrides = [a for a in argv[3:] if not a.startswith("hydra.")]
    config = resume.comparable(compose_config("train", overrides))
    nothing = SimpleNamespace(
        trainable_variables=[],
        non_trainable_variables=[],
        optimizer=SimpleNamespace(variables=[]),
        metrics_variables=[],
    )
    saved = {"refs": {}, "config": {**config, "trainer.seed": "7"}}
    resume.save(resume.path_in(workdir / "run"), nothing, 50, {}, saved)
    out = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert f"trainer.resume=true continues the run in {workdir}/run with the same settings, " in (
        out.stderr
    )
    assert "but 1 differ: trainer.seed='42' (was '7')" in out.stderr
    assert "Loading" not in out.stdout and "mnist:" not in out.stdout  # no data was loaded
    assert not (workdir / "mlflow.db").exists()  # nothing logged


def test_resume_names_a_truncated_checkpoint_in_a_few_lines(workdir):
    import io

    argv, env = resumable_run(f"tracking.uri=sqlite:///{workdir}/mlflow.db", "trainer.resume=true")
    checkpoint = workdir / "run" / "resume" / "checkpoint.npz"
    checkpoint.parent.mkdir(parents=True)
    whole = io.BytesIO()
    np.savez(whole, weights=np.zeros(1000))
    checkpoint.write_bytes(whole.getvalue()[:300])  # a disk that filled, a copy cut short
    out = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert f"python -m trainer: error: {checkpoint} is not a readable lrlab checkpoint" in (
        out.stderr
    )
    assert "fix: start the run afresh" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3


def parallel_sweep(workdir, uri, trials):
    """A sweep of `trials` CLR trials of 1000 MLP steps each, all at once, each in its own
    process, a write every 5 steps; returns the finished process."""
    rates = ",".join(f"{r:.2g}" for r in np.geomspace(1e-3, 1e-2, trials))
    argv, env = trainer_command(
        "-m",
        "model=mlp",
        "schedule=clr",
        f"schedule.max_lr={rates}",
        "trainer.epochs=5",
        "trainer.limit_train_batches=200",
        "tracking.flush_every_steps=5",
        "tracking.strict=true",
        f"tracking.uri={uri}",
        "hydra/launcher=local_parallel",
        f"hydra.launcher.parallel={trials}",
        f"hydra.sweep.dir={workdir}/sweep",
    )
    return subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


def assert_trials_complete(uri, trials):
    client, runs = mlflow_runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("mode") == "sweep"]
    children = [r for r in runs if r is not parent]
    assert len(children) == trials and parent.info.status == "FINISHED"
    for run in children:
        assert run.info.status == "FINISHED"
        for key in ("train/lr", "train/loss", "train/mean_iou"):
            assert [s for s, _ in mlflow_history(client, run, key)] == list(range(1000)), key
    # They ran at the same time: most of them had their runs open at once. (Not always all:
    # the 8 processes start together, but on 2 cores one may finish its 1000 steps before
    # the slowest has loaded TensorFlow.)
    events = sorted(
        [(r.info.start_time, 1) for r in children] + [(r.info.end_time, -1) for r in children]
    )
    open_runs = peak = 0
    for _, change in events:
        open_runs += change
        peak = max(peak, open_runs)
    logging.getLogger(__name__).info("%d of %d runs open at once", peak, trials)
    assert peak > trials // 2, f"only {peak} of {trials} runs were open at once"


@pytest.mark.slow  # 8 TensorFlow processes on the cores at once: a few minutes
def test_eight_training_trials_at_once_against_the_server_on_postgresql_keep_every_point(
    workdir, postgres_database
):
    server = MlflowServer(postgres_database(), workdir / "artifacts").start()
    try:
        out = parallel_sweep(workdir, server.uri, 8)
        assert out.returncode == 0, out.stderr[-3000:]
        assert_trials_complete(server.uri, 8)
    finally:
        server.kill()


@pytest.mark.slow
def test_four_training_trials_at_once_on_one_sqlite_file_keep_every_point(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    out = parallel_sweep(workdir, uri, 4)
    assert out.returncode == 0, out.stderr[-3000:]
    assert_trials_complete(uri, 4)


@pytest.mark.slow
def test_five_first_runs_at_once_on_a_fresh_default_store_all_succeed(workdir):
    # Five terminals (or CI jobs) in one empty folder: the default store sqlite:///mlflow.db
    # does not exist yet, and MLflow's schema creation is not safe to run five times at once.
    argv, env = trainer_command(
        "model=mlp", "trainer.epochs=1", "trainer.limit_train_batches=5", "sink=[mlflow]"
    )
    processes = [
        subprocess.Popen(
            [*argv, f"hydra.run.dir=run{i}"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(5)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    client, runs = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert [r.info.status for r in runs] == ["FINISHED"] * 5
    for run in runs:
        assert [s for s, _ in mlflow_history(client, run, "train/lr")] == list(range(5))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (root may mount one): a run folder that fills up."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_named_and_the_run_ends_failed_with_every_step(workdir, tiny_disk):
    argv, env = trainer_command(
        "model=mlp",
        "trainer.epochs=1",
        "trainer.limit_train_batches=200",
        f"tracking.uri=sqlite:///{workdir}/mlflow.db",
        f"hydra.run.dir={tiny_disk}/run",
    )
    out = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "did not answer" not in text and "waiting for" not in text
    assert f"python -m trainer: no space left on device ({tiny_disk}/run" in text
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "FAILED"
    assert [s for s, _ in mlflow_history(client, run, "train/lr")] == list(range(200))
