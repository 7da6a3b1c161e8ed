"""The contract every configured schedule honours, from the real `conf/schedule` configs.

Each config is composed as the preview app composes it, with lengths shrunk so that its
curve changes within the few steps trained here (10 steps per epoch).
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from schedules.plateau import ReduceOnPlateau
from tests.project import SCHEDULE_NAMES, compose_config
from trainer.config.build import from_config

STEPS_PER_EPOCH = 10
RUN_STEPS = 60
# Lengths some configs give in steps, shrunk to the test's scale.
SMALL = {"clr": ["schedule.step_size=7"], "range_test": ["schedule.num_steps=50"]}
VARIANTS = [(name, ()) for name in SCHEDULE_NAMES] + [
    ("step", ("warmup=linear", "warmup.warmup_steps=0.5ep")),
    ("cosine", ("plateau=reduce",)),
]
IDS = [name + "".join(f"[{o}]" for o in extra) for name, extra in VARIANTS]


def build(name, extra=(), callbacks=None):
    cfg = compose_config("preview", [f"schedule={name}", *SMALL.get(name, []), *extra])
    return from_config(
        cfg, steps_per_epoch=STEPS_PER_EPOCH, run_steps=RUN_STEPS, callbacks=callbacks
    )


@keras.saving.register_keras_serializable(package="lrlab_tests")
def prediction_as_loss(y_true, y_pred):
    return keras.ops.mean(y_pred)


def probe_model(schedule):
    """A model whose single weight, reset to 0 before each step, ends each step at -lr.

    With input 1 and loss = the prediction, the gradient of the weight is exactly 1, so
    plain SGD leaves `0 - lr * 1`: the rate the optimizer actually used, bit for bit.
    """
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule),
        loss=prediction_as_loss,
        jit_compile=True,
    )
    return model


class RateRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.model.layers[0].kernel.assign([[0.0]])

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(-float(self.model.layers[0].kernel.numpy()[0, 0]))


def fit_rates(model, steps, epochs=1, callbacks=()):
    recorder = RateRecorder()
    x = np.ones((steps, 1), np.float32)
    model.fit(
        x,
        x,
        batch_size=1,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[recorder, *callbacks],
    )
    return np.array(recorder.rates)


@pytest.mark.parametrize("name,extra", VARIANTS, ids=IDS)
def test_contract(name, extra, tmp_path):
    schedule = build(name, extra)
    steps = np.arange(RUN_STEPS + 20)
    eager = np.array([schedule(int(k)).numpy() for k in steps])

    # float32, finite, non-negative, and not constant unless it is meant to be.
    assert schedule(0).dtype == "float32"
    assert np.all(np.isfinite(eager)) and np.all(eager >= 0)
    assert name == "constant" or len(set(eager.tolist())) > 1
    for big in (2**31 - 1, 2**40):
        value = schedule(tf.constant(big, tf.int64)).numpy()
        assert np.isfinite(value) and value >= 0, (big, value)

    # The same values under XLA, to float32 resolution: XLA fuses and rewrites ops (its
    # own cos, x / c as x * (1 / c)), which moves the last bit, i.e. 1e-7 of the peak
    # where a curve nears 0.
    xla = tf.function(schedule, jit_compile=True)
    compiled = np.array([xla(tf.constant(k, tf.int64)).numpy() for k in steps])
    tolerance = dict(rtol=1e-6, atol=1e-7 * eager.max())
    np.testing.assert_allclose(compiled, eager, **tolerance)

    # Inside model.fit (compiled with XLA) the update at step k uses schedule(k).
    model = probe_model(schedule)
    first = fit_rates(model, 25)
    np.testing.assert_allclose(first, eager[:25], **tolerance)

    # get_config round trip through JSON.
    blob = json.dumps(keras.saving.serialize_keras_object(schedule))
    revived = keras.saving.deserialize_keras_object(json.loads(blob))
    assert type(revived) is type(schedule)
    assert revived.get_config() == schedule.get_config()
    np.testing.assert_array_equal([revived(int(k)).numpy() for k in steps], eager)

    # A saved model reloads with its schedule and continues the same curve.
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert int(loaded.optimizer.iterations.numpy()) == 25
    more = fit_rates(loaded, 20)
    np.testing.assert_allclose(more, eager[25:45], **tolerance)


def test_plateau_lowers_the_curve_in_training_and_the_scale_is_saved(tmp_path):
    callbacks = []
    schedule = build(
        "constant",
        ("plateau=reduce", "plateau.monitor=loss", "plateau.patience=1", "plateau.factor=0.5"),
        callbacks,
    )
    (reducer,) = callbacks
    assert isinstance(reducer, ReduceOnPlateau) and reducer.scaled is schedule
    model = probe_model(schedule)
    # The probe's loss is 0 every epoch: no improvement, one reduction per epoch after the first.
    rates = fit_rates(model, 5, epochs=4, callbacks=callbacks)
    np.testing.assert_allclose(rates.reshape(4, 5)[:, 0], [1e-3, 1e-3, 5e-4, 2.5e-4], rtol=1e-6)
    assert schedule.scale == pytest.approx(0.125)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.optimizer._learning_rate.scale == pytest.approx(0.125)


@pytest.mark.parametrize("cooldown,reductions", [(0, [2, 4, 6, 8]), (2, [2, 5, 8])])
def test_plateau_patience_and_cooldown(cooldown, reductions):
    from schedules import Constant

    reducer = ReduceOnPlateau(factor=0.5, patience=2, cooldown=cooldown)
    sched = reducer.wrap(Constant(1.0))
    reduced = [epoch for epoch in range(9) if reducer.observe(1.0)]
    assert reduced == reductions  # Keras' ReduceLROnPlateau counts the same way
    assert sched.scale == 0.5 ** len(reductions)


def test_plateau_improvement_by_min_delta_resets_patience_and_min_lr_floors():
    from schedules import Constant

    reducer = ReduceOnPlateau(factor=0.5, patience=2, min_delta=0.1, min_lr=0.2)
    sched = reducer.wrap(Constant(1.0))
    # 0.95 is not better than 1.0 by min_delta; 0.85 is.
    history = [reducer.observe(v) for v in [1.0, 0.95, 0.85, 0.9, 0.9]]
    assert history == [False, False, False, False, True]
    assert float(sched(0)) == pytest.approx(0.5)
    for _ in range(4):
        reducer.observe(0.9)
    assert sched.scale == pytest.approx(0.125)
    assert float(sched(0)) == pytest.approx(0.2)  # 1.0 * 0.125 is below min_lr
    # The floor never lifts a curve that is already below min_lr by itself.
    low = ReduceOnPlateau(min_lr=0.2).wrap(Constant(0.1))
    assert float(low(0)) == pytest.approx(0.1)


def test_plateau_callback_names_a_missing_monitor():
    from schedules import Constant

    callback = ReduceOnPlateau(monitor="val_acc")
    callback.wrap(Constant(1.0))
    with pytest.raises(ValueError, match=r"plateau.monitor='val_acc'.*\['loss', 'val_loss'\]"):
        callback.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.0})
