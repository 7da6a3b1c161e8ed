"""`python -m trainer` end to end on real data: a few steps, then read MLflow and TensorBoard."""

import csv
import json
import re
import signal
import subprocess
import time

import numpy as np
import pytest

import trainer
from tests.project import compose_config, run_trainer, trainer_command
from tests.tracking_stores import (
    assert_logged_model,
    mlflow_history,
    mlflow_runs,
    tensorboard_scalars,
    tensorboard_text,
)
from trainer.config.build import from_config
from trainer.train import TrainingDiverged

STEP_KEYS = ("train/lr", "train/loss", "train/mean_iou")


def small(tmp_path, *overrides, batches=12, epochs=2):
    """The real config with a few steps per epoch, logging into tmp_path."""
    return compose_config(
        "train",
        [
            f"output_dir={tmp_path}/run",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            "tracking.strict=true",
            f"trainer.limit_train_batches={batches}",
            f"trainer.epochs={epochs}",
            "tracking.flush_every_steps=5",
            *overrides,
        ],
    )


def expected_rates(cfg, steps):
    t = cfg.trainer
    schedule = from_config(
        cfg, steps_per_epoch=t.limit_train_batches, run_steps=t.epochs * t.limit_train_batches
    )
    return np.array([float(schedule(k)) for k in range(steps)])


def assert_rates(actual, expected):
    # The train step runs under XLA, the expectation eagerly: equal to float32
    # resolution (1e-7 of the peak where a curve nears 0), as in the contract test.
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7 * np.max(expected))


def read_steps_csv(path):
    with open(path) as f:
        return [row for row in csv.DictReader(f)]


def assert_every_step_once(tmp_path, run, client, steps):
    for key in STEP_KEYS:
        points = mlflow_history(client, run, key)
        assert [s for s, _ in points] == list(range(steps)), key
    scalars = tensorboard_scalars(tmp_path / "run")
    for key in STEP_KEYS:
        assert [s for s, _ in scalars[key]] == list(range(steps)), key
    rows = read_steps_csv(tmp_path / "run" / "steps.csv")
    assert [int(r["step"]) for r in rows] == list(range(steps))
    return scalars


@pytest.mark.parametrize(
    "overrides,name",
    [
        (("schedule=sgdr", "schedule.first_cycle_steps=0.5ep"), "cnn-mnist-sgdr"),
        (
            (
                "dataset=fashion_mnist",
                "model=mlp",
                "optimizer=sgd",
                "schedule=step",
                "schedule.step_size=1ep",
            ),
            "mlp-fashion_mnist-step",
        ),
    ],
)
def test_end_to_end(workdir, overrides, name):
    cfg = small(workdir, *overrides)
    choices = {
        "model": cfg.model._target_.rsplit(".", 1)[1],
        "schedule": overrides[0].split("=")[1]
        if "schedule" in overrides[0]
        else overrides[3].split("=")[1],
    }
    results = trainer.run(cfg, choices)
    steps = 24
    assert results["trained_steps"] == steps
    assert 0.1 < results["test/accuracy"] <= 1 and np.isfinite(results["test/loss"])

    client, runs = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    (run,) = runs
    # The setup's name, then the time it started: runs of one setup are told apart.
    assert run.info.status == "FINISHED"
    assert re.fullmatch(rf"{name} \d\d-\d\d \d\d:\d\d:\d\d", run.info.run_name), run.info.run_name
    scalars = assert_every_step_once(workdir, run, client, steps)

    # train/lr is the schedule's value at each step, in MLflow and TensorBoard alike.
    want = expected_rates(cfg, steps)
    assert_rates([v for _, v in mlflow_history(client, run, "train/lr")], want)
    assert_rates([v for _, v in scalars["train/lr"]], want)
    # Batch losses, not Keras' running mean: the first is the untrained model's ~ln(10).
    losses = [v for _, v in mlflow_history(client, run, "train/loss")]
    assert losses[0] == pytest.approx(np.log(10), rel=0.1)
    assert all(0 <= v <= 1 for _, v in mlflow_history(client, run, "train/mean_iou"))

    for key in (
        "train_loss",
        "train_accuracy",
        "train_mean_iou",
        "val_loss",
        "val_accuracy",
        "val_mean_iou",
        "duration_s",
        "steps_per_sec",
    ):
        assert [s for s, _ in mlflow_history(client, run, f"epoch/{key}")] == [0, 1], key
    metrics = run.data.metrics
    assert metrics["test/accuracy"] == pytest.approx(results["test/accuracy"])
    # For optimized_metric, the last epoch's validation metrics come back too.
    last_val = mlflow_history(client, run, "epoch/val_accuracy")[-1][1]
    assert results["val/accuracy"] == pytest.approx(last_val)
    assert all(f"test/iou_class_{k}" in metrics for k in range(10))
    assert "test/mean_iou" in scalars

    params, tags = run.data.params, run.data.tags
    # Params are what a user compares: no _target_ paths, folders or range-test settings.
    assert params["trainer.batch_size"] == "32" and params["dataset.name"] == cfg.dataset.name
    assert params["optimizer.learning_rate"] == str(cfg.optimizer.learning_rate)
    assert not [k for k in params if k.endswith("_target_") or k.endswith(".dir")]
    assert not [k for k in params if k.startswith(("lr_find.", "tracking.", "output_dir"))]
    assert tags["lrlab.target.schedule"] == cfg.schedule._target_
    assert (
        tags["lrlab.schedule"] == choices["schedule"] and tags["lrlab.dataset"] == cfg.dataset.name
    )
    assert len(tags["mlflow.source.git.commit"]) in (40, 7) and tags["lrlab.command"]
    assert len(tags["lrlab.data_sha256"]) == 64
    # What MLflow's UI reads: the experiment's kind, the source, the description, the data.
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.source.name"].startswith("python -m trainer")
    assert "/" not in tags["mlflow.source.name"]  # the UI shows what follows the last /
    assert f"{results['test/accuracy']:.2%}" in tags["mlflow.note.content"]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{cfg.dataset.name}-train", f"{cfg.dataset.name}-test"}
    train_input = inputs[f"{cfg.dataset.name}-train"].dataset
    assert train_input.digest == tags["lrlab.data_sha256"][:8]
    assert json.loads(train_input.profile)["features_shape"] == [55000, 28, 28]
    # TensorBoard's Text tab holds the same params as a table.
    assert "| trainer.batch_size | 32 |" in tensorboard_text(workdir / "run", "params")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "lr_and_loss.png", "iou_per_class.csv", "best.keras"} <= artifacts
    # The final model is an MLflow model of the run (the Models column, the registry): it
    # loads with Keras alone and predicts what the run folder's model.keras predicts.
    assert "model.keras" not in artifacts
    assert_logged_model(client, run, workdir / "run" / "model.keras", steps)


@pytest.mark.slow
def test_steps_per_execution_4_logs_every_step_once_with_its_rate(workdir):
    cfg = small(
        workdir,
        "model=mlp",
        "schedule=clr",
        "schedule.step_size=3",
        "trainer.steps_per_execution=4",
        "tracking.flush_every_steps=7",
        batches=10,
        epochs=3,
    )
    trainer.run(cfg)
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert_every_step_once(workdir, run, client, 30)
    assert_rates([v for _, v in mlflow_history(client, run, "train/lr")], expected_rates(cfg, 30))


@pytest.mark.slow
def test_the_test_curve_measures_the_model_at_its_steps_and_leaves_training_alone(workdir):
    # The same MLP run twice, with and without trainer.test_every=4 (20 steps), and a
    # third run that stops after 4 steps: the curve's point at step 4 is that run's test
    # result, and the curve changes no training step or epoch metric.
    def run(name, *overrides, batches=10, epochs=2):
        (workdir / name).mkdir()
        cfg = small(
            workdir / name,
            "model=mlp",
            "schedule=constant",
            *overrides,
            batches=batches,
            epochs=epochs,
        )
        results = trainer.run(cfg)
        client, (found,) = mlflow_runs(f"sqlite:///{workdir}/{name}/mlflow.db")
        return results, client, found

    results, client, curved = run("curve", "trainer.test_every=4")
    plain_results, plain_client, plain = run("plain")
    short, _, _ = run("short", batches=4, epochs=1)

    accuracy = mlflow_history(client, curved, "test/accuracy")
    loss = mlflow_history(client, curved, "test/loss")
    assert [s for s, _ in accuracy] == [4, 8, 12, 16, 20] == [s for s, _ in loss]
    assert accuracy[-1][1] == pytest.approx(results["test/accuracy"])
    assert accuracy[0][1] == pytest.approx(short["test/accuracy"], abs=1e-4)
    assert loss[0][1] == pytest.approx(short["test/loss"], rel=1e-4)
    assert [s for s, _ in mlflow_history(plain_client, plain, "test/accuracy")] == [20]
    assert curved.data.metrics["time/test_curve_s"] > 0
    for key in ("epoch/train_accuracy", "epoch/train_loss", "epoch/val_accuracy"):
        assert mlflow_history(client, curved, key) == mlflow_history(plain_client, plain, key)
    steps = [read_steps_csv(workdir / name / "run" / "steps.csv") for name in ("curve", "plain")]
    assert [r["loss"] for r in steps[0]] == [r["loss"] for r in steps[1]]
    assert results["test/accuracy"] == plain_results["test/accuracy"]


@pytest.mark.slow
def test_same_seed_same_per_step_losses(workdir):
    losses = []
    for attempt in range(2):
        out = workdir / f"seed{attempt}"
        cfg = small(
            out,
            "model=mlp",
            "sink=[csv]",
            "trainer.checkpoint=false",
            batches=15,
            epochs=2,
        )
        trainer.run(cfg)
        losses.append([r["loss"] for r in read_steps_csv(out / "run" / "steps.csv")])
    assert len(losses[0]) == 30 and losses[0] == losses[1]


@pytest.mark.slow
def test_nan_loss_stops_and_marks_the_run_failed_with_the_step(workdir):
    cfg = small(
        workdir,
        "model=mlp",
        "optimizer=sgd",
        "schedule=constant",
        "schedule.lr=1e9",
        "trainer.divergence_factor=null",
        batches=40,
        epochs=3,
    )
    with pytest.raises(TrainingDiverged, match=r"non-finite at step \d+ \(learning rate 1e\+09\)"):
        trainer.run(cfg)
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "FAILED"
    nan_step = int(run.data.tags["lrlab.failed_at_step"])
    assert float(run.data.tags["lrlab.failed_at_lr"]) == 1e9
    losses = mlflow_history(client, run, "train/loss")
    assert np.all(np.isfinite([v for _, v in losses[:nan_step]]))
    assert not np.isfinite(losses[nan_step][1])
    # Stopped within the epoch it diverged in, and every trained step is logged once.
    assert len(losses) < 120
    assert_every_step_once(workdir, run, client, len(losses))


@pytest.mark.slow
def test_an_exploding_loss_stops_as_diverged_and_saves_no_checkpoint(workdir):
    # Adam at 10: the loss grows far above its start without reaching NaN.
    cfg = small(workdir, "model=mlp", "schedule=constant", "optimizer.learning_rate=10", batches=30)
    with pytest.raises(TrainingDiverged, match="the loss exploded"):
        trainer.run(cfg)
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "FAILED" and "exploded" in run.data.tags["lrlab.failure"]
    step = int(run.data.tags["lrlab.failed_at_step"])
    losses = [v for _, v in mlflow_history(client, run, "train/loss")]
    assert losses[step] > 10 * losses[0] and max(losses[:step]) <= 10 * losses[0]
    assert np.isfinite(losses[step])
    assert not (workdir / "run" / "best.keras").exists()
    assert_every_step_once(workdir, run, client, len(losses))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_a_diverged_run_ends_the_command_with_one_line_not_a_traceback(workdir, backend):
    # On JAX and PyTorch Keras clips the probabilities, so the loss of this run stays
    # between 13 and 16.1 (never NaN, never 10 x the first 2.3): the cap stops it.
    pytest.importorskip(backend)
    out = run_trainer(
        f"backend={backend}",
        "model=mlp",
        "schedule=constant",
        "schedule.lr=1e10",  # NaN or an explosion at step 1
        "trainer.epochs=1",
        "trainer.limit_train_batches=20",
        f"tracking.uri=sqlite:///{workdir}/mlflow.db",
        cwd=workdir,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m trainer: mlp-mnist-constant "), last
    assert "at step 1 (learning rate 1e+10); the run is marked FAILED (lower the" in last
    _, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "FAILED"
    assert run.data.tags["lrlab.failed_at_step"] == "1"
    assert run.data.tags["lrlab.backend"] == backend


def test_the_explosion_threshold_is_capped_where_the_loss_is_bounded():
    from trainer.callbacks import StopOnDivergence

    def watched(losses, factor, ceiling=None):
        stop = StopOnDivergence(factor, ceiling)
        stop.set_model(type("Model", (), {"stop_training": False})())
        n = len(losses)
        stop.observe({"step": np.arange(n), "lr": np.full(n, 1e10), "loss": np.array(losses)})
        return stop

    diverged = [2.30, 13.1, 15.1, 16.1]  # JAX at lr=1e10: the loss is at most 16.12
    assert watched(diverged, 10.0).step is None  # 23 is out of the loss's reach
    capped = watched(diverged, 10.0, ceiling=16.118)
    assert capped.step == 1 and "above 8.059, half the most" in capped.reason
    # Below the cap the factor rules as before; null still means NaN only.
    low = watched([2.3, 6.0, 7.0, 7.5], 3.0, ceiling=16.118)
    assert low.step == 2 and "3 x the first step's 2.3" in low.reason
    assert watched(diverged, None, ceiling=16.118).step is None


@pytest.mark.slow
def test_an_exception_keeps_every_step_and_marks_the_run_failed(workdir):
    # A plateau monitor that names no metric raises at the first epoch end.
    cfg = small(workdir, "model=mlp", "plateau=reduce", "plateau.monitor=val_acc", batches=9)
    with pytest.raises(ValueError, match=r"plateau\.monitor='val_acc'"):
        trainer.run(cfg)
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "FAILED"
    assert_every_step_once(workdir, run, client, 9)


@pytest.mark.slow  # 20 s; tests/test_reliability.py has Ctrl-C and SIGTERM in depth (slow too)
def test_ctrl_c_keeps_every_step_and_marks_the_run_killed(workdir):
    argv, env = trainer_command(
        "model=mlp",
        "trainer.epochs=50",
        f"output_dir={workdir}/run",
        f"tracking.uri=sqlite:///{workdir}/mlflow.db",
        "tracking.flush_every_steps=20",
        "trainer.limit_train_batches=200",
    )
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    steps_csv = workdir / "run" / "steps.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (
        not steps_csv.exists() or len(read_steps_csv(steps_csv)) < 60
    ):
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    # One line says what became of the run, instead of a traceback.
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert re.match(
        r"python -m trainer: interrupted \(Ctrl-C\); MLflow run mlp-mnist-cosine [\d:\- ]+ \(", last
    )
    assert "saved as KILLED" in last
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "KILLED", output
    trained = len(read_steps_csv(steps_csv))
    assert 60 <= trained < 50 * 200
    assert_every_step_once(workdir, run, client, trained)


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=mnist_cnn_cosine"],
        ["experiment=fashion_mlp_sgd"],
        ["dataset=fashion_mnist", "model=mlp", "optimizer=sgd", "schedule=step"],
        ["warmup=linear", "plateau=reduce"],
    ],
)
def test_config_composes(overrides, compose):
    cfg = compose("train", overrides)
    assert cfg.model._target_.startswith("trainer.models.")
    assert cfg.model.num_classes == cfg.dataset.num_classes == 10


@pytest.mark.slow
def test_logs_to_an_mlflow_server_named_by_the_environment(workdir, mlflow_server):
    out = run_trainer(
        "model=mlp",
        "trainer.epochs=1",
        "trainer.limit_train_batches=15",
        f"output_dir={workdir}/run",
        MLFLOW_TRACKING_URI=mlflow_server,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client, (run,) = mlflow_runs(mlflow_server)
    assert run.info.status == "FINISHED"
    assert [s for s, _ in mlflow_history(client, run, "train/loss")] == list(range(15))
    assert_logged_model(client, run, workdir / "run" / "model.keras", 15)


@pytest.mark.slow
def test_the_console_shows_lrlab_messages_not_tensorflow_notices(workdir):
    argv, env = trainer_command(
        "model=mlp",
        "trainer.epochs=1",
        "trainer.limit_train_batches=5",
        f"output_dir={workdir}/run",
        f"tracking.uri=sqlite:///{workdir}/mlflow.db",
    )
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # as a user runs it
    out = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    for notice in ("oneDNN", "cuInit", "cuda", "absl::InitializeLog", "cpu_feature_guard"):
        assert notice not in console, notice
    assert "trained_steps=5" in console and "trained_steps=5." not in console


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize(
    "dataset,model,bar", [("mnist", "cnn", 0.975), ("fashion_mnist", "mlp", 0.82)]
)
def test_one_full_epoch_with_the_defaults_clears_the_bar(
    workdir, optimizer, dataset, model, bar, compose
):
    # The defaults matrix's promise (bench/defaults.py runs every family), for the default
    # schedule: no rate override, one whole epoch on the real data.
    cfg = compose(
        "train",
        [
            f"dataset={dataset}",
            f"model={model}",
            f"optimizer={optimizer}",
            "trainer.epochs=1",
            f"output_dir={workdir}/run",
            f"tracking.uri=sqlite:///{workdir}/mlflow.db",
            "tracking.strict=true",
        ],
    )
    results = trainer.run(cfg, {"dataset": dataset, "model": model, "optimizer": optimizer})
    assert results["trained_steps"] == 1719
    assert results["test/accuracy"] >= bar


@pytest.mark.slow
def test_a_diverged_run_keeps_its_last_good_resume_checkpoint(workdir):
    # The range test's sweep takes Adam's rate from 1e-7 to 10 over 60 steps: it trains,
    # then explodes. Checkpoints every 5 steps stop at the last one before the bad step.
    from trainer import resume

    cfg = small(
        workdir,
        "model=mlp",
        "schedule=range_test",
        "schedule.num_steps=60",
        "trainer.checkpoint_every=5",
        batches=60,
    )
    with pytest.raises(TrainingDiverged):
        trainer.run(cfg)
    _, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.info.status == "FAILED"
    failed_at = int(run.data.tags["lrlab.failed_at_step"])
    meta, _ = resume.load(resume.path_in(workdir / "run"))
    assert 0 < meta["step"] <= failed_at and meta["step"] % 5 == 0
    assert failed_at - meta["step"] < 5 + cfg.tracking.flush_every_steps
