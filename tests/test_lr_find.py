"""The learning-rate range test on real data: the sweep, untouched state, divergence, auto."""

import math

import keras
import numpy as np
import pytest

import trainer
from schedules import RangeTest
from tests.project import DATASETS
from tests.tracking_stores import mlflow_history, mlflow_runs, tensorboard_scalars
from trainer.batches import batches
from trainer.data import IdxDataset
from trainer.lr_find import range_test, smooth, suggest
from trainer.models import mlp


@pytest.fixture(scope="module")
def fashion():
    return IdxDataset("fashion_mnist", DATASETS / "fashion-mnist", "fashion_mnist").load()


def seeded_mlp():
    keras.utils.set_random_seed(0)
    return mlp()


def sweep(model, data, optimizer=keras.optimizers.SGD, **settings):
    keras.utils.set_random_seed(0)
    return range_test(
        model,
        lambda lr: optimizer(learning_rate=lr),
        batches(data.x_train, data.y_train, 32, shuffle_seed=0, repeat=True),
        "sparse_categorical_crossentropy",
        10,
        **settings,
    )


@pytest.mark.parametrize("kind", ["exponential", "linear"])
def test_the_sweep_uses_the_range_test_rates_step_by_step(fashion, kind):
    result = sweep(mlp(), fashion, min_lr=1e-5, max_lr=1e-2, num_steps=30, sweep=kind)
    assert result.stopped == "completed" and len(result.lrs) == 30
    expected = [float(RangeTest(1e-5, 1e-2, 30, kind)(k)) for k in range(30)]
    np.testing.assert_allclose(result.lrs, expected, rtol=1e-6)
    assert result.lrs[0] == pytest.approx(1e-5) and result.lrs[-1] == pytest.approx(1e-2)
    steps = np.diff(np.log(result.lrs)) if kind == "exponential" else np.diff(result.lrs)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-3)
    # Batch losses, not running means: they vary from batch to batch around ln(10).
    assert np.all(np.isfinite(result.losses)) and np.std(np.diff(result.losses)) > 1e-3


def test_the_model_and_its_optimizer_are_left_exactly_as_they_were(fashion):
    model = mlp()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(fashion.x_train[:64], fashion.y_train[:64], batch_size=32, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    optimizer_state = [v.numpy().copy() for v in model.optimizer.variables]
    sweep(model, fashion, optimizer=keras.optimizers.Adam, min_lr=1e-5, max_lr=1.0, num_steps=40)
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(optimizer_state, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert int(model.optimizer.iterations.numpy()) == 2


def test_divergence_stops_the_sweep_early(fashion):
    result = sweep(
        seeded_mlp(), fashion, min_lr=1e-4, max_lr=100.0, num_steps=150, divergence_factor=4.0
    )
    assert result.stopped == "diverged" and len(result.lrs) < 150
    # It stopped at the first step whose smoothed loss passed 4 x the best before it.
    best = np.minimum.accumulate(result.smoothed)
    assert result.smoothed[-1] > 4 * best[-2]
    assert np.all(result.smoothed[1:-1] <= 4 * best[:-2])


def test_a_recorded_sweep_smoothed_again_gives_the_sweeps_own_curve(fashion):
    result = sweep(seeded_mlp(), fashion, min_lr=1e-5, max_lr=10.0, num_steps=120)
    np.testing.assert_allclose(smooth(result.losses, 0.98), result.smoothed, rtol=1e-12)
    assert np.isnan(smooth(np.array([2.3, 2.2, np.inf, 1.0]), 0.9)[2:]).all()


def test_a_non_finite_loss_stops_the_sweep(fashion):
    # No divergence threshold: the rate climbs until the loss overflows.
    result = sweep(
        seeded_mlp(), fashion, min_lr=1e-4, max_lr=1e12, num_steps=150, divergence_factor=math.inf
    )
    assert result.stopped == "non-finite loss" and len(result.lrs) < 150
    assert np.isnan(result.smoothed[-1]) and np.all(np.isfinite(result.smoothed[:-1]))


def test_the_rules_on_a_curve_with_a_known_shape():
    lrs = np.logspace(-6, 1, 200)
    x = np.log10(lrs)
    # Flat until 1e-4, falls fastest at 1e-2 (a logistic in log rate), rises after 1.
    loss = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 2))) + np.where(x > 0, 5 * x**2, 0)
    rules = suggest(lrs, loss)
    assert rules["steepest"] == pytest.approx(1e-2, rel=0.1)
    best = lrs[np.argmin(loss)]
    assert rules["minimum"] == pytest.approx(best / 10)
    assert 1e-4 < rules["valley"] < best


def test_steepest_is_found_past_the_first_batches_noise(workdir, compose):
    # The classic Fashion-MNIST MLP with SGD, seed 4: its first two batch losses differ by
    # 0.06, so the smoothed loss falls there faster against log rate than in its real
    # descent (about 0.2 per unit of ln rate); steepest once suggested the sweep's first
    # rate, 1e-7. The rates worth training with lie around 0.05..0.5 (docs/results.md).
    cfg = compose(
        "train",
        [
            "experiment=fashion_mlp_sgd",
            "mode=lr_find",
            "trainer.seed=4",
            "sink=[csv]",
            f"output_dir={workdir}/run",
        ],
    )
    found = trainer.run(cfg)
    assert 0.02 < found["lr_find/suggested_lr_steepest"] < 0.5


def test_mode_lr_find_is_a_tracked_run(workdir, compose):
    cfg = compose(
        "train",
        [
            "mode=lr_find",
            "model=mlp",
            "optimizer=sgd",
            "lr_find.num_steps=60",
            f"output_dir={workdir}/run",
            f"tracking.uri=sqlite:///{workdir}/mlflow.db",
            "tracking.strict=true",
        ],
    )
    found = trainer.run(cfg)
    client, (run,) = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    assert run.data.tags["mode"] == "lr_find" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["lr_find.num_steps"] == "60" and params["optimizer.momentum"] == "0.0"
    assert run.data.tags["lrlab.target.optimizer"] == "keras.optimizers.SGD"
    assert params["model.num_classes"] == "10"  # resolved, not "${dataset.num_classes}"
    lrs = mlflow_history(client, run, "lr_find/lr")
    assert [s for s, _ in lrs] == list(range(int(found["lr_find/steps"])))
    assert len(mlflow_history(client, run, "lr_find/smoothed_loss")) == len(lrs)
    assert run.data.metrics["lr_find/suggested_lr"] == pytest.approx(found["lr_find/suggested_lr"])
    assert {"lr_find.png", "lr_find.csv"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
    assert len(tensorboard_scalars(workdir / "run")["lr_find/loss"]) == len(lrs)


@pytest.mark.slow
def test_max_lr_auto_trains_with_the_suggestion_and_records_it(workdir, compose):
    cfg = compose(
        "train",
        [
            "model=mlp",
            "schedule=one_cycle",
            "schedule.max_lr=auto",
            "lr_find.num_steps=60",
            "trainer.epochs=1",
            "trainer.limit_train_batches=12",
            f"output_dir={workdir}/run",
            f"tracking.uri=sqlite:///{workdir}/mlflow.db",
            "tracking.strict=true",
        ],
    )
    trainer.run(cfg)
    client, runs = mlflow_runs(f"sqlite:///{workdir}/mlflow.db")
    finder, training = runs
    assert finder.data.tags["mode"] == "lr_find" and training.data.tags["mode"] == "train"
    suggested = finder.data.metrics["lr_find/suggested_lr"]
    assert training.data.tags["lrlab.lr_find.run_id"] == finder.info.run_id
    # The MLflow UI shows the range test nested under the run it chose the rate for.
    assert finder.data.tags["mlflow.parentRunId"] == training.info.run_id
    assert training.data.params["lr_find.num_steps"] == "60"
    assert float(training.data.params["schedule.max_lr"]) == pytest.approx(suggested)
    # one-cycle peaks at max_lr: the rates actually used reach the suggestion.
    used = [v for _, v in mlflow_history(client, training, "train/lr")]
    assert max(used) == pytest.approx(suggested, rel=0.05)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["schedule=clr", "schedule.base_lr=auto"], "schedule.base_lr must be a number"),
        (["lr_find.smoothing=1.0"], "lr_find.smoothing must be in [0, 1)"),
        (["mode=lr_find", "schedule=one_cycle", "schedule.max_lr=auto"], "mode must be train"),
    ],
)
def test_bad_lr_find_settings_are_named(overrides, message, compose):
    from trainer.checks import check_config

    with pytest.raises(ValueError) as err:
        check_config(compose("train", overrides))
    assert message in str(err.value)
