"""`python -m trainer -m ...`: one parent run per sweep, every trial a child, a summary at
the end; failures recorded and the sweep goes on; Ctrl-C ends the parent KILLED."""

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.project import run_trainer, trainer_command
from tests.tracking_stores import (
    assert_logged_model,
    mlflow_history,
    mlflow_runs,
    tensorboard_hparams,
)


def sweep_args(workdir, *overrides, epochs=2):
    return [
        "-m",
        "model=mlp",
        f"trainer.epochs={epochs}",
        "trainer.limit_train_batches=8",
        "tracking.flush_every_steps=4",
        f"tracking.uri=sqlite:///{workdir}/mlflow.db",
        f"hydra.sweep.dir={workdir}/sweep",
        *overrides,
    ]


def parent_and_trials(workdir):
    client, runs = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    (parent,) = [r for r in runs if r.data.tags.get("mode") == "sweep"]
    trials = sorted(
        (r for r in runs if r is not parent), key=lambda r: int(r.data.tags["lrlab.sweep.trial"])
    )
    return client, parent, trials


def read_trials_csv(workdir):
    with open(workdir / "sweep" / "trials.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_grid_sweep_is_one_parent_run_with_a_child_per_trial_and_a_summary(workdir):
    out = run_trainer(
        *sweep_args(
            workdir, "schedule=clr", "schedule.max_lr=1e-3,3e-3", "schedule.step_size=range(3,7,3)"
        ),
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client, parent, trials = parent_and_trials(workdir)
    assert parent.info.status == "FINISHED"
    # Named short (setup, swept keys, time); the space and the fixed overrides as params.
    assert re.fullmatch(
        r"sweep mlp-mnist max_lr,step_size \d\d-\d\d \d\d:\d\d", parent.info.run_name
    )
    assert parent.data.params["space.schedule.max_lr"] == "1e-3,3e-3"
    assert parent.data.params["space.schedule.step_size"] == "range(3,7,3)"
    assert parent.data.params["override.schedule"] == "clr"
    assert parent.data.tags["lrlab.sweep.optimized_metric"] == "val/accuracy"
    sweep_id = parent.data.tags["lrlab.sweep.id"]

    # Four children, told apart by name (the swept values first, as the runs list cuts long
    # names), each linked to the parent and tagged with the sweep.
    names = [r.info.run_name for r in trials]
    assert names == [
        "max_lr=0.001 step_size=3 #0 mlp-mnist-clr",
        "max_lr=0.001 step_size=6 #1 mlp-mnist-clr",
        "max_lr=0.003 step_size=3 #2 mlp-mnist-clr",
        "max_lr=0.003 step_size=6 #3 mlp-mnist-clr",
    ]
    for number, run in enumerate(trials):
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["lrlab.sweep.id"] == sweep_id and tags["lrlab.sweep.trial"] == str(number)
        # One copy of each value among the params; the group choice has its own.
        assert params["override.schedule"] == "clr"
        assert not any(k.startswith("override.schedule.") for k in params)
        # The Source is the single run that reproduces the trial, not the sweep's command.
        step_size = (3, 6)[number % 2]
        rate = ("0.001", "0.003")[number // 2]
        for key in ("mlflow.source.name", "lrlab.command"):
            command = tags[key].split()
            assert command[:3] == ["python", "-m", "trainer"] and "-m" not in command[3:]
            assert {f"schedule.max_lr={rate}", f"schedule.step_size={step_size}"} <= set(command)
        assert f"hydra.sweep.dir={workdir}/sweep" not in tags["lrlab.command"]
        assert [s for s, _ in mlflow_history(client, run, "train/lr")] == list(range(16))
        # Models stay out of the trials' MLflow artifacts.
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "model.keras" not in artifacts and "best.keras" not in artifacts
        assert not client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )

    # The summary: every trial in trials.csv, the best as tags and metrics, the plot, the
    # best trial's model (the only one kept on disk).
    rows = read_trials_csv(workdir)
    assert [r["status"] for r in rows] == ["FINISHED"] * 4
    assert [r["run_name"] for r in rows] == names
    # The best trial by validation accuracy (the test set only reports).
    accuracy = [float(r["val/accuracy"]) for r in rows]
    best = max(range(4), key=accuracy.__getitem__)
    assert parent.data.tags["lrlab.sweep.best_trial"] == str(best)
    assert parent.data.tags["lrlab.sweep.best_run_id"] == trials[best].info.run_id
    assert parent.data.metrics["best/val/accuracy"] == pytest.approx(accuracy[best])
    assert parent.data.metrics["best/test/accuracy"] == pytest.approx(
        float(rows[best]["test/accuracy"])
    )
    assert parent.data.metrics["sweep/trials"] == 4 and parent.data.metrics["sweep/failed"] == 0
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "sweep_curves.png"} <= parent_artifacts
    kept = sorted(p.parent.name for p in (workdir / "sweep").glob("*/model.keras"))
    assert kept == [f"{best}_mlp-mnist-clr"]
    assert len(list((workdir / "sweep").glob("*/mlflow_model"))) == 1
    # The best trial's model is the parent's MLflow model `best_trial` (for the registry).
    best_model = workdir / "sweep" / kept[0] / "model.keras"
    assert_logged_model(client, parent, best_model, 16, name="best_trial")
    assert not list((workdir / "sweep").glob("*/best.keras"))
    # TensorBoard finds every trial under the sweep folder, and its HParams dashboard
    # compares them by hyperparameter (numbers as numbers).
    assert len(list((workdir / "sweep").glob("*/tensorboard/events.*"))) == 4
    assert not (workdir / "sweep" / "tensorboard").exists()  # the parent's best/* are not
    rates = sorted(
        tensorboard_hparams(folder)["schedule.max_lr"]
        for folder in (workdir / "sweep").glob("*_mlp-mnist-clr")
    )
    assert rates == [0.001, 0.001, 0.003, 0.003]


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_sweep_goes_on(workdir):
    # -1 is an invalid rate (refused before training); 10 makes the loss explode.
    out = run_trainer(
        *sweep_args(workdir, "schedule=constant", "optimizer.learning_rate=10,-1,1e-3"),
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    _, parent, trials = parent_and_trials(workdir)
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in trials] == ["FAILED", "FAILED", "FINISHED"]
    assert "exploded" in trials[0].data.tags["lrlab.failure"]
    assert "optimizer.learning_rate must be a number > 0" in trials[1].data.tags["lrlab.failure"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    rows = read_trials_csv(workdir)
    assert [r["status"] for r in rows] == ["FAILED", "FAILED", "FINISHED"]
    assert "ConfigError" in rows[1]["error"] and "TrainingDiverged" in rows[0]["error"]
    assert parent.data.tags["lrlab.sweep.failed_trials"] == "0,1"
    assert parent.data.tags["lrlab.sweep.best_trial"] == "2"


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, signal.SIGTERM],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_ends_the_parent_killed_with_the_summary_of_the_trials_done(workdir, signum):
    argv, env = trainer_command(
        *sweep_args(workdir, "schedule=constant", "trainer.seed=1,2,3", epochs=40)
    )
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = workdir / "sweep" / "0_mlp-mnist-constant" / "trial.json"
    second = workdir / "sweep" / "1_mlp-mnist-constant" / "steps.csv"
    deadline = time.time() + 240
    while time.time() < deadline and not (first.exists() and second.exists()):
        time.sleep(0.5)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}[signum]
    assert last.startswith(f"python -m trainer: interrupted ({name}); MLflow run "), last
    assert "the sweep's parent run ended KILLED with 2 trials" in last, last
    _, parent, trials = parent_and_trials(workdir)
    assert parent.info.status == "KILLED"
    assert [r.info.status for r in trials] == ["FINISHED", "KILLED"]
    assert [r["status"] for r in read_trials_csv(workdir)] == ["FINISHED", "KILLED"]
    assert json.loads(first.read_text())["status"] == "FINISHED"
    assert not (workdir / "sweep" / "2_mlp-mnist-constant").exists()


@pytest.mark.parametrize(
    "preset", ["clr_optuna", "one_cycle_optuna", "sgdr_optuna", "schedule_optuna"]
)
def test_the_search_presets_choose_on_validation_with_the_optuna_sweeper(preset):
    from hydra import compose, initialize_config_dir

    from tests.project import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"sweep={preset}"], return_hydra_config=True)
    assert cfg.optimized_metric == "val/accuracy"
    assert cfg.hydra.sweeper._target_.endswith("LrlabOptunaSweeper")
    assert "optimizer.learning_rate" in cfg.hydra.sweeper.params
    assert cfg.hydra.sweeper.sampler.seed == 42


def optuna_study(name, storage):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_an_optuna_search_prunes_poor_trials_and_records_them(workdir, backend):
    # The trials run in the sweep's process (Hydra's basic launcher): on JAX and PyTorch the
    # backend must be started before a trial makes its pruning callback, a Keras class.
    pytest.importorskip(backend)
    storage = f"sqlite:///{workdir}/optuna.db"
    # A threshold pruner makes the outcome certain: at 1e-7 the validation accuracy after
    # the first epoch is near chance (pruned); at 3e-3 it is well above 0.3 (finished).
    out = run_trainer(
        *sweep_args(
            workdir,
            "hydra/sweeper=lrlab_optuna",
            "schedule=constant",
            "optimizer.learning_rate=choice(3e-3, 1e-7)",
            "hydra.sweeper.n_trials=4",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=pruning",
            "~hydra.sweeper.pruner",
            "+hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 0.3}",
            f"backend={backend}",
            epochs=3,
        ),
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client, parent, trials = parent_and_trials(workdir)
    assert parent.info.status == "FINISHED" and len(trials) == 4
    study = optuna_study("pruning", storage)
    states = {t.number: t.state.name for t in study.trials}
    rates = {t.number: t.params["optimizer.learning_rate"] for t in study.trials}
    assert set(rates.values()) == {3e-3, 1e-7}  # both values were tried
    for run in trials:
        number = int(run.data.tags["lrlab.optuna.trial"])
        assert run.data.tags["lrlab.optuna.study"] == "pruning"
        assert run.data.tags["lrlab.backend"] == backend
        assert float(run.data.params["optimizer.learning_rate"]) == rates[number]
        if rates[number] == 1e-7:
            # Pruned after the first epoch: KILLED in MLflow, PRUNED in Optuna.
            assert states[number] == "PRUNED"
            assert run.info.status == "KILLED"
            assert run.data.tags["lrlab.pruned"] == "true"
            assert run.data.tags["lrlab.pruned_at_epoch"] == "0"
            assert [s for s, _ in mlflow_history(client, run, "train/lr")] == list(range(8))
        else:
            assert states[number] == "COMPLETE" and run.info.status == "FINISHED"
            value = study.trials[number].value  # the last epoch's validation accuracy
            assert value == pytest.approx(run.data.metrics["epoch/val_accuracy"])
    rows = read_trials_csv(workdir)
    assert {r["status"] for r in rows} == {"PRUNED", "FINISHED"}
    pruned = sum(r["status"] == "PRUNED" for r in rows)
    assert parent.data.metrics["sweep/pruned"] == pruned
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optuna_history.png", "optuna_parallel_coordinate.png"} <= artifacts


@pytest.fixture
def postgres_url(postgres_database):
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    return postgres_database()


def test_an_optuna_storage_that_does_not_answer_is_named_at_once(workdir):
    from tests.project import free_port

    storage = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"
    out = run_trainer(
        *sweep_args(workdir, "hydra/sweeper=lrlab_optuna", "hydra.sweeper.n_trials=1"),
        "optimizer.learning_rate=tag(log, interval(1e-4, 1e-2))",
        f"hydra.sweeper.storage={storage}",
        cwd=workdir,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "being created elsewhere" not in text
    assert f"error: hydra.sweeper.storage={storage}: no database answers there" in text
    assert "Connection refused" in text and "fix: start it" in text


def test_a_ray_address_that_does_not_answer_is_named_before_any_run(workdir):
    from tests.project import free_port

    address = f"127.0.0.1:{free_port()}"
    out = run_trainer(
        *sweep_args(workdir, "schedule=clr", "schedule.max_lr=1e-3,3e-3"),
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={address}",
        cwd=workdir,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert f"error: hydra.launcher.ray.init.address={address}: no Ray head answers there" in (
        out.stderr
    )
    assert "fix: start the head" in out.stderr
    assert not (workdir / "mlflow.db").exists()  # no parent run left RUNNING


def test_the_sweepers_sampler_draws_each_trial_from_its_own_seed():
    # The configured sampler (TPE, seed 42) as the sweeper builds it: processes asking one
    # study for trials at once get different ones, and a study is the same from its seed.
    import optuna
    from hydra import compose, initialize_config_dir

    from tests.project import CONF
    from trainer.sweeps.optuna_search import sampler

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", ["hydra/sweeper=lrlab_optuna"], return_hydra_config=True)
    node = cfg.hydra.sweeper.sampler
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}

    def asked(study, n):
        return [study.ask(space).params["lr"] for _ in range(n)]

    storage = optuna.storages.InMemoryStorage()
    a, b = (
        optuna.create_study(
            study_name="joined", storage=storage, sampler=sampler(node), load_if_exists=True
        )
        for _ in range(2)
    )
    joined = [x for pair in zip(asked(a, 3), asked(b, 3)) for x in pair]
    assert len(set(joined)) == 6
    alone = [optuna.create_study(sampler=sampler(node)) for _ in range(2)]
    assert asked(alone[0], 4) == asked(alone[1], 4)


@pytest.mark.slow
def test_two_processes_join_one_optuna_study_on_postgresql(workdir, postgres_url):
    runs = []
    for machine in ("a", "b"):
        argv, env = trainer_command(
            "-m",
            "model=mlp",
            "hydra/sweeper=lrlab_optuna",
            "schedule=constant",
            "optimizer.learning_rate=tag(log, interval(1e-4, 1e-2))",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage={postgres_url}",
            "hydra.sweeper.study_name=shared",
            "trainer.epochs=1",
            "trainer.limit_train_batches=6",
            f"tracking.uri=sqlite:///{workdir}/{machine}.db",
            f"hydra.sweep.dir={workdir}/{machine}",
        )
        runs.append(
            subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for proc in runs:
        output, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, output[-3000:]
    study = optuna_study("shared", postgres_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    # Both seeded with 42, yet four different trials: the seed is per trial, not per process.
    assert len({t.params["optimizer.learning_rate"] for t in study.trials}) == 4
    by_sweep = {}
    for t in study.trials:
        by_sweep.setdefault(t.user_attrs["lrlab.sweep.id"], []).append(t.user_attrs["lrlab.job"])
    assert sorted(map(sorted, by_sweep.values())) == [[0, 1], [0, 1]]
    # Each machine's trials are children of its own parent run, in its own store.
    for machine in ("a", "b"):
        _, runs_there = mlflow_runs(f"sqlite:///{workdir}/{machine}.db")
        (parent,) = [r for r in runs_there if r.data.tags.get("mode") == "sweep"]
        children = [r for r in runs_there if r is not parent]
        assert len(children) == 2
        assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
        assert {r.data.tags["lrlab.optuna.study"] for r in children} == {"shared"}


@pytest.mark.slow
def test_parallel_trials_run_in_fresh_processes_and_lose_no_point(workdir):
    out = run_trainer(
        *sweep_args(
            workdir,
            "hydra/launcher=local_parallel",
            "schedule=clr",
            "schedule.max_lr=1e-3,3e-3",
            "tracking.flush_every_steps=2",  # many small writes: both trials on one SQLite
            epochs=3,
        ),
        cwd=workdir,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client, parent, trials = parent_and_trials(workdir)
    assert parent.info.status == "FINISHED" and len(trials) == 2
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        for key in ("train/lr", "train/loss", "train/mean_iou"):
            assert [s for s, _ in mlflow_history(client, run, key)] == list(range(24)), key
    # They ran at the same time, each in its own process with one TensorFlow thread.
    first, second = trials
    assert second.info.start_time < first.info.end_time
    logs = [(workdir / "sweep" / f"{n}_mlp-mnist-clr" / "__main__.log").read_text() for n in (0, 1)]
    assert all("TensorFlow: 1 thread(s) per op" in log for log in logs)
    pids = {
        json.loads((workdir / "sweep" / f"{n}_mlp-mnist-clr" / "trial.json").read_text())["pid"]
        for n in (0, 1)
    }
    assert len(pids) == 2  # (the basic launcher runs every trial in one process)


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, to_group",
    [
        (signal.SIGTERM, False),  # docker stop, Slurm, systemd: the sweep's own process
        (signal.SIGINT, True),  # Ctrl-C at a terminal
        (signal.SIGTERM, True),  # timeout, killpg
    ],
    ids=["sigterm-to-the-sweep", "ctrl-c-to-the-group", "sigterm-to-the-group"],
)
def test_a_stopped_parallel_sweep_closes_its_running_trials_killed(workdir, signum, to_group):
    argv, env = trainer_command(
        *sweep_args(
            workdir,
            "hydra/launcher=local_parallel",
            "schedule=constant",
            "trainer.seed=1,2,3",
            epochs=400,
        )
    )
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    sweep = workdir / "sweep"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(sweep.glob("*/steps.csv"))) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signum) if to_group else proc.send_signal(signum)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signum, output[-3000:]
    # Neither the trials nor submitit's wrappers print a traceback.
    assert "Traceback" not in output, output[-3000:]
    name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}[signum]
    last = output.strip().splitlines()[-1]
    assert last == (
        f"python -m trainer: interrupted ({name}); the sweep's parent run ended KILLED with 2 "
        "trials (0 finished, 0 failed, 2 killed)"
    ), last
    # The trials were stopped, not left training as orphans: no process of the sweep is left.
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            assert str(sweep).encode() not in (entry / "cmdline").read_bytes(), entry
    client, parent, trials = parent_and_trials(workdir)
    assert parent.info.status == "KILLED"
    assert [r.info.status for r in trials] == ["KILLED", "KILLED"]
    assert [r["status"] for r in read_trials_csv(workdir)] == ["KILLED", "KILLED"]
    for run in trials:
        steps = [s for s, _ in mlflow_history(client, run, "train/lr")]
        assert steps == list(range(len(steps))) and steps, run.info.run_name  # each step once
    for n in (0, 1):
        assert (sweep / f"{n}_mlp-mnist-constant" / "resume" / "checkpoint.npz").is_file()
    assert not (sweep / "2_mlp-mnist-constant").exists()


@pytest.mark.slow
def test_parallel_trials_against_an_mlflow_server_lose_no_point(workdir, mlflow_server):
    args = [a for a in sweep_args(workdir, epochs=3) if not a.startswith("tracking.uri=")]
    out = run_trainer(
        *args,
        "hydra/launcher=local_parallel",
        "schedule=clr",
        "schedule.max_lr=1e-3,3e-3",
        "tracking.flush_every_steps=2",
        "tracking.strict=true",  # a sink error fails the run (MLflow printing on stdout did)
        cwd=workdir,
        timeout=600,
        MLFLOW_TRACKING_URI=mlflow_server,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client, runs = mlflow_runs(mlflow_server)
    (parent,) = [r for r in runs if r.data.tags.get("mode") == "sweep"]
    trials = [r for r in runs if r is not parent]
    assert len(trials) == 2 and parent.info.status == "FINISHED"
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        for key in ("train/lr", "train/loss", "train/mean_iou"):
            assert [s for s, _ in mlflow_history(client, run, key)] == list(range(24)), key
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


@pytest.mark.slow
def test_failed_trials_are_failed_in_optuna_with_their_error(workdir):
    """Also: with local_parallel and no `n_jobs`, the sweeper fills the launcher's two slots
    (the trials overlap in time)."""
    storage = f"sqlite:///{workdir}/optuna.db"
    out = run_trainer(
        *sweep_args(
            workdir,
            "hydra/launcher=local_parallel",
            "hydra/sweeper=lrlab_optuna",
            "schedule=constant",
            "optimizer.learning_rate=choice(-1, -2)",  # refused before training
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=failing",
        ),
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna_study("failing", storage)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    for t in study.trials:
        assert "optimizer.learning_rate must be a number > 0" in t.user_attrs["lrlab.error"]
    _, parent, trials = parent_and_trials(workdir)
    assert [r.info.status for r in trials] == ["FAILED", "FAILED"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/failed"] == 2
    first, second = sorted(
        (json.loads(p.read_text()) for p in workdir.rglob("trial.json")),
        key=lambda t: t["started_at"],
    )
    assert second["started_at"] < first["started_at"] + first["wall_s"], "ran one at a time"


@pytest.fixture
def ray_head(workdir, datasets):
    """A local Ray cluster (head only, 2 CPUs) started as a user would, from a folder of its
    own (its workers' working folder), stopped afterwards."""
    import shutil
    import socket
    import sys
    from pathlib import Path

    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LRLAB_DATA_DIR": str(datasets), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    (workdir / "node").mkdir()
    start = subprocess.run(
        [
            ray,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        cwd=workdir / "node",
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert start.returncode == 0, start.stdout + start.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow  # a Ray cluster's start and stop: about 35 s; CI runs it with -m slow
def test_a_sweep_on_a_ray_cluster(workdir, ray_head):
    # No tracking.uri: the launching process logs to its default, ./mlflow.db, and the trials,
    # which run in the Ray node's own folder, must log there too, beside their parent.
    args = [a for a in sweep_args(workdir) if not a.startswith("tracking.uri=")]
    out = run_trainer(
        *args,
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={ray_head}",
        "schedule=clr",
        "schedule.max_lr=1e-3,3e-3",
        cwd=workdir,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client, parent, trials = parent_and_trials(workdir)
    assert parent.info.status == "FINISHED" and len(trials) == 2
    assert parent.data.tags["lrlab.sweep.launcher"].endswith("RayLauncher")
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert [s for s, _ in mlflow_history(client, run, "train/lr")] == list(range(16))
    records = [json.loads(p.read_text()) for p in sorted((workdir / "sweep").glob("*/trial.json"))]
    assert len({r["pid"] for r in records}) == 2  # a fresh Ray worker per trial
    assert [r["status"] for r in read_trials_csv(workdir)] == ["FINISHED", "FINISHED"]
    assert not (workdir / "node" / "mlflow.db").exists()


def test_a_sweep_without_a_validation_split_must_choose_on_the_test_set(compose):
    from trainer.checks import check_config
    from trainer.config.errors import ConfigError

    cfg = compose("train", ["dataset.val_size=0"])
    check_config(cfg)  # a single run returns its metric to no one
    with pytest.raises(ConfigError, match="optimized_metric must be a test/ metric in a sweep"):
        check_config(cfg, in_sweep=True)
    check_config(compose("train", ["dataset.val_size=0", "optimized_metric=test/loss"]), True)
