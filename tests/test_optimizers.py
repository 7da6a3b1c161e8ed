"""lrlab's optimizers against their reference implementations, update for update."""

import itertools
import re

import keras
import numpy as np
import pytest

from trainer.optimizers.dadapt_adam import DAdaptAdam
from trainer.optimizers.prodigy import Prodigy
from trainer.optimizers.schedule_free import ScheduleFreeAdamW

STEPS = 50


def quadratic(seed=0, shape=(3, 4)):
    """A small problem with a known gradient: 0.5 * sum(a * (w - b) ** 2) + 0.05 * sum(w ** 4)
    (bounded below, with a gradient not linear in w); (initial w, gradient of w)."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.5, 2.0, shape), rng.normal(size=shape)
    return rng.normal(size=shape), lambda w: a * (w - b) + 0.2 * w**3


def test_schedule_free_adamw_is_the_reference_step_for_step():
    """50 steps in float64 beside `schedulefree.AdamWScheduleFree` (the paper's code), with
    its warmup and weight decay: y after every step, and x, to 1e-12 relative (float64
    round-off: the two order the same operations differently)."""
    torch = pytest.importorskip("torch")
    schedulefree = pytest.importorskip("schedulefree")
    w0, gradient = quadratic()
    peak, warmup = 2.0**-4, 8  # rates float32 holds exactly: the schedule is float32

    theirs = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    reference = schedulefree.AdamWScheduleFree(
        [theirs], lr=peak, warmup_steps=warmup, weight_decay=0.01, foreach=False
    )
    reference.train()

    ours = keras.Variable(w0, dtype="float64")
    optimizer = ScheduleFreeAdamW(
        # The reference's warmup, as a schedule: (k + 1) / warmup of the peak at step k.
        learning_rate=lambda: (
            peak
            * keras.ops.minimum(1.0, keras.ops.cast(optimizer.iterations + 1, "float32") / warmup)
        ),
        weight_decay=0.01,
    )
    for step in range(STEPS):
        theirs.grad = torch.tensor(gradient(theirs.detach().numpy()))
        reference.step()
        optimizer.apply([keras.ops.convert_to_tensor(gradient(ours.numpy()))], [ours])
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, err_msg=step)

    y = ours.numpy().copy()
    reference.eval()  # the reference's x
    with optimizer.evaluation_weights():
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12)
    np.testing.assert_array_equal(ours.numpy(), y)  # y put back as it was, bit for bit


def test_the_evaluation_weights_are_the_average_and_training_resumes_at_y_bit_for_bit():
    w0, gradient = quadratic(seed=1)
    ours = keras.Variable(w0, dtype="float32")
    optimizer = ScheduleFreeAdamW(learning_rate=0.05)
    for _ in range(10):
        optimizer.apply([keras.ops.convert_to_tensor(gradient(ours.numpy()), "float32")], [ours])
    y = ours.numpy().copy()
    z = next(v for v in optimizer.variables if v.name.endswith("_z")).numpy()
    with optimizer.evaluation_weights():
        x = ours.numpy().copy()
    np.testing.assert_allclose(x, (y - 0.1 * z) / 0.9, rtol=1e-6)
    assert np.abs(x - y).max() > 1e-3  # the two differ: which one is evaluated matters
    np.testing.assert_array_equal(ours.numpy(), y)


PARAMETER_FREE = {
    "prodigy": (Prodigy, "prodigy"),
    "dadapt_adam": (DAdaptAdam, "dadapt_adamw"),
}


@pytest.mark.parametrize("name", sorted(PARAMETER_FREE))
def test_parameter_free_optimizers_are_optax_contribs_update_for_update(name):
    """50 steps in float64 beside optax.contrib's own, with weight decay, on two variables
    (the estimate of D sums over all of them): the weights after every step to 1e-9
    relative (measured at most 3e-12 for Prodigy, 2e-11 for D-Adaptation: float64
    round-off, grown through the estimate of D; the issue asked for 1e-5), and D, the
    effective step size logged as train/lr."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")

    ours_cls, theirs_name = PARAMETER_FREE[name]
    problems = [quadratic(seed=2), quadratic(seed=3, shape=(5,))]
    ours = [keras.Variable(w0, dtype="float64") for w0, _ in problems]
    optimizer = ours_cls(weight_decay=0.01)
    with jax.enable_x64(True):  # scoped: jax.config stays as it was
        import jax.numpy as jnp

        tx = getattr(optax.contrib, theirs_name)(weight_decay=0.01)
        params = [jnp.asarray(w0, dtype=jnp.float64) for w0, _ in problems]
        state = tx.init(params)
        for step in range(STEPS):
            grads = [grad(np.asarray(p)) for p, (_, grad) in zip(params, problems)]
            updates, state = tx.update([jnp.asarray(g) for g in grads], state, params)
            params = optax.apply_updates(params, updates)
            optimizer.apply(
                [
                    keras.ops.convert_to_tensor(grad(v.numpy()))
                    for v, (_, grad) in zip(ours, problems)
                ],
                ours,
            )
            for mine, theirs in zip(ours, params):
                np.testing.assert_allclose(
                    mine.numpy(), np.asarray(theirs), rtol=1e-9, err_msg=step
                )
        estimate = float(np.asarray(state.estim_lr))
    assert estimate > 0.1  # D grew from 1e-6: the estimate is exercised, not constant
    assert float(optimizer.step_size()) == pytest.approx(estimate, rel=1e-6)


@pytest.mark.parametrize(
    "key,value,rule",
    [("beta_1", 1.0, "in (0, 1)"), ("beta_2", 1.0, "in [0, 1)"), ("epsilon", 0, "> 0")],
)
def test_schedule_free_adamw_names_a_bad_argument(key, value, rule):
    with pytest.raises(ValueError, match=re.escape(f"`{key}` must be {rule}")):
        ScheduleFreeAdamW(**{key: value})


def test_a_schedule_free_run_reports_and_keeps_the_averaged_weights(workdir):
    """Validation, the test set and the saved model see x; at the training weights y the
    numbers differ, so which one is reported matters."""
    import trainer
    from tests.project import compose_config
    from trainer.experiment import build

    cfg = compose_config(
        "train",
        [
            f"output_dir={workdir}/run",
            "sink=[csv]",
            "model=mlp",
            "optimizer=schedule_free_adamw",
            "schedule=constant",
            "trainer.epochs=2",
            "trainer.limit_train_batches=30",
        ],
    )
    final = trainer.run(cfg)
    data = build(cfg).dataset.load()
    x_model = keras.models.load_model(workdir / "run" / "model.keras")
    optimizer = x_model.optimizer
    assert isinstance(optimizer, ScheduleFreeAdamW) and int(optimizer.iterations) == 60

    def evaluated(model, x, y):
        return model.evaluate(x, y, batch_size=1000, verbose=0, return_dict=True)

    at_x = evaluated(x_model, data.x_test, data.y_test)
    assert at_x["loss"] == pytest.approx(final["test/loss"], rel=1e-5)
    assert evaluated(x_model, data.x_val, data.y_val)["loss"] == pytest.approx(
        final["val/loss"], rel=1e-5
    )  # the last epoch's validation, inside fit
    # The training weights, from x and the optimizer's z: y = beta_1 x + (1 - beta_1) z.
    zs = {v.name[: -len("_z")]: v for v in optimizer.variables if v.name.endswith("_z")}
    for variable in x_model.trainable_variables:
        z = zs[variable.path.replace("/", "_")]
        variable.assign(0.9 * variable + 0.1 * z)
    at_y = evaluated(x_model, data.x_test, data.y_test)
    assert abs(at_y["loss"] - at_x["loss"]) > 1e-3, (at_x, at_y)


def test_a_parameter_free_run_logs_its_estimated_step_size_as_the_rate(workdir):
    """train/lr is D * learning_rate(k): from d0 at step 0, never falling with a constant
    multiplier, and grown by orders of magnitude within a few dozen steps."""
    import csv

    import trainer
    from tests.project import compose_config

    cfg = compose_config(
        "train",
        [
            f"output_dir={workdir}/run",
            "sink=[csv]",
            "model=mlp",
            "optimizer=prodigy",
            "schedule=constant",
            "trainer.epochs=1",
            "trainer.limit_train_batches=40",
        ],
    )
    trainer.run(cfg)
    with open(workdir / "run" / "steps.csv") as f:
        rates = [float(row["lr"]) for row in csv.DictReader(f)]
    assert len(rates) == 40 and rates[0] == np.float32(1e-6)
    assert all(b >= a for a, b in itertools.pairwise(rates))
    assert rates[-1] > 100 * rates[0]
