"""Every Keras backend: the same curves, the same per-step record, the backend `auto` picks.

Keras picks its backend once per process, so each backend runs in a process of its own: the
schedule tests under `KERAS_BACKEND=jax` and `=torch`, and short trainings with `backend=`.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.project import ROOT, compose_config, run_trainer
from tests.tracking_stores import mlflow_history, mlflow_runs, tensorboard_scalars
from trainer import backends
from trainer.config.errors import ConfigError

OTHERS = [name for name in ("jax", "torch") if backends.installed(name)]


def assert_tests_pass_on(backend, *pytest_args, **env):
    """Run pytest with `pytest_args` in a process on `backend` (and `env`); all must pass."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout


@pytest.mark.parametrize("backend", OTHERS)
def test_every_family_matches_its_references_on(backend):
    """tests/test_schedules_exact.py (float64 references and golden values, every family)
    and the library twins (optax on JAX, torch.optim.lr_scheduler on PyTorch), on `backend`;
    and the training batches' order as a pure function of seed and epoch there.
    Keras' own schedules are compared with ours on TensorFlow only: Keras'
    PiecewiseConstantDecay cannot be vectorised on PyTorch."""
    assert_tests_pass_on(
        backend,
        "tests/test_schedules_exact.py",
        "tests/test_schedules_twins.py",
        "tests/test_data.py",
        "-k",
        "not equals_keras and (schedules or epoch_batches)",
    )


@pytest.mark.slow  # 40 s and 27 s: the default run has the same tests on TensorFlow
@pytest.mark.parametrize("backend", OTHERS)
def test_the_optimizers_match_their_references_and_swap_their_weights_on(backend):
    """tests/test_optimizers.py on `backend`: schedule-free AdamW against the reference
    package, Prodigy and D-Adaptation against optax.contrib (float64: JAX_ENABLE_X64), and a
    schedule-free run reporting its averaged weights."""
    assert_tests_pass_on(backend, "tests/test_optimizers.py", JAX_ENABLE_X64="1")


def test_auto_takes_the_fastest_measured_for_the_model_and_what_is_installed(monkeypatch):
    assert backends.choose("auto", "trainer.models.cnn").name == "tensorflow"
    mlp = backends.choose("auto", "trainer.models.mlp")
    assert mlp.name == ("jax" if backends.installed("jax") else "tensorflow")
    assert "auto" in mlp.reason
    # Without JAX the MLP falls back to the first backend installed, and says so.
    monkeypatch.setattr(backends, "installed", lambda name: name != "jax")
    fallback = backends.choose("auto", "trainer.models.mlp")
    assert fallback.name == "tensorflow" and "jax" in fallback.reason
    monkeypatch.setattr(backends, "installed", lambda name: name == "torch")
    assert backends.choose("auto", "trainer.models.cnn").name == "torch"


def test_a_backend_that_is_missing_or_misspelt_is_named_with_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match=r"backend must be one of .* backend='jaxx'"):
        backends.choose("jaxx")
    monkeypatch.setattr(backends, "installed", lambda name: name != "torch")
    with pytest.raises(ConfigError, match=r"torch is not installed") as err:
        backends.choose("torch")
    assert ".[torch]" in str(err.value)


def test_a_trial_with_a_share_of_a_gpu_keeps_to_that_share_of_its_memory_on_jax():
    assert backends.gpu_memory_env("jax", 0.25, {}) == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"}
    assert backends.gpu_memory_env("jax", 1, {}) == {}  # a whole GPU: JAX's own default
    assert backends.gpu_memory_env("jax", 0, {}) == {}
    assert backends.gpu_memory_env("tensorflow", 0.25, {}) == {}  # grows as it needs
    mine = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}
    assert backends.gpu_memory_env("jax", 0.25, mine) == {}  # the user's own setting wins


def test_keras_backend_sets_the_default(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert compose_config("train").backend == "jax"
    assert compose_config("train", ["backend=torch"]).backend == "torch"
    monkeypatch.delenv("KERAS_BACKEND")
    assert compose_config("train").backend == "tensorflow"


RUN = [
    "model=mlp",
    "dataset=fashion_mnist",
    "schedule=one_cycle",
    "trainer.epochs=2",
    "trainer.limit_train_batches=30",
    "trainer.checkpoint_every=20",
    "trainer.test_every=25",
    "tracking.flush_every_steps=8",
    "tracking.strict=true",
    "sink=[mlflow,tensorboard,csv]",
]


@pytest.mark.parametrize("backend", OTHERS)
def test_a_short_run_logs_every_step_once_with_the_schedules_rate_on(backend, workdir):
    tmp_path = workdir
    out = run_trainer(*RUN, f"backend={backend}", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Keras backend: {backend} (backend={backend})" in out.stdout + out.stderr
    client, (run,) = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "FINISHED"
    assert run.data.tags["lrlab.backend"] == backend
    assert run.data.params["backend"] == backend
    steps = list(range(60))
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        assert [s for s, _ in mlflow_history(client, run, key)] == steps, key
    board = tensorboard_scalars(tmp_path / "run")
    assert [s for s, _ in board["train/lr"]] == steps
    assert [s for s, _ in board["epoch/val_loss"]] == [0, 1]
    assert [s for s, _ in mlflow_history(client, run, "test/accuracy")] == [25, 50, 60]
    losses = [v for _, v in mlflow_history(client, run, "train/loss")]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-10:]) < np.mean(losses[:10])
    ious = [v for _, v in mlflow_history(client, run, "train/mean_iou")]
    assert all(0 <= v <= 1 for v in ious)

    # The rate at every step is the schedule's at that step (computed here on TensorFlow).
    from trainer.config.build import from_config

    cfg = compose_config("train", RUN)
    schedule = from_config(cfg, steps_per_epoch=30, run_steps=60)
    lrs = [v for _, v in mlflow_history(client, run, "train/lr")]
    np.testing.assert_allclose(
        lrs, [float(schedule(k)) for k in steps], rtol=1e-6, atol=1e-7 * max(lrs)
    )
    assert not (tmp_path / "run" / "resume").exists()  # a finished run has nothing to resume


def test_a_plateau_reduction_reaches_the_compiled_step_on_jax(workdir):
    """JAX compiles the step once: a scale the schedule kept to itself would stay at the
    value it was traced with. The optimizer carries it, so each reduction takes effect."""
    pytest.importorskip("jax")
    out = run_trainer(
        "backend=jax",
        "model=mlp",
        "schedule=constant",
        "plateau=reduce",
        "plateau.patience=0",
        "plateau.min_delta=100",  # no epoch improves by that much: a reduction every epoch
        "plateau.factor=0.5",
        "trainer.epochs=3",
        "trainer.limit_train_batches=10",
        "sink=[csv]",
        "hydra.run.dir=run",
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = (workdir / "run" / "steps.csv").read_text().splitlines()[1:]
    rates = [float(line.split(",")[1]) for line in lines]
    assert len(rates) == 30
    # The first epoch sets the best value; the second's end lowers the scale for the third.
    assert rates[:20] == [rates[0]] * 20 and rates[20:] == [rates[0] / 2] * 10
