"""The contract every lrlab schedule follows, and the argument checks they share.

A schedule maps the optimizer step (updates done so far, 0-based) to the learning rate
used for the next update. Subclasses implement `value(step)` with `step` already a
float32 tensor; `__call__` does the casting so that every family returns a float32
scalar, eagerly, inside `tf.function` and under XLA alike.
"""

from __future__ import annotations

import inspect
import itertools
import math
import numbers

import keras
from keras import ops

from schedules.errors import ArgumentError

PACKAGE = "lrlab"


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """Base class: casting, config mirroring and (de)serialisation of child schedules."""

    # Constructor arguments that are lengths in steps; a config may give them with a unit
    # ("2ep", "0.3dur"), converted by `trainer.config.build` before the class sees them.
    lengths = ()

    def __call__(self, step):
        step = ops.cast(step, "float32")
        return ops.cast(self.value(step), "float32")

    def value(self, step):  # pragma: no cover - the abstract hook
        raise NotImplementedError(f"{type(self).__name__} must implement value(step)")

    def get_config(self):
        """The constructor arguments as plain Python values (child schedules as dicts)."""
        params = inspect.signature(type(self).__init__).parameters
        return {name: _plain(getattr(self, name)) for name in params if name != "self"}

    @classmethod
    def from_config(cls, config):
        return cls(**{key: _revive(value) for key, value in config.items()})

    def __repr__(self):
        params = inspect.signature(type(self).__init__).parameters
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in params if k != "self")
        return f"{type(self).__name__}({args})"


def register(cls):
    """Register a schedule class so that saved models reload with it."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def _plain(value):
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return keras.saving.serialize_keras_object(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _revive(value):
    if isinstance(value, dict) and "class_name" in value:
        return keras.saving.deserialize_keras_object(value)
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


# --- argument checks -------------------------------------------------------------------
# Each raises ValueError in Keras' message shape, naming the key, the rule and the value.


def fail(name, rule, value):
    raise ArgumentError(name, rule, value)


def check_number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        fail(name, "a finite number", value)
    return value


def check_positive(name, value):
    if check_number(name, value) <= 0:
        fail(name, "> 0", value)
    return value


def check_non_negative(name, value):
    if check_number(name, value) < 0:
        fail(name, ">= 0", value)
    return value


def check_decay_rate(name, value):
    """A multiplicative decay factor: in (0, 1]."""
    if not 0 < check_number(name, value) <= 1:
        fail(name, "in (0, 1]", value)
    return value


def check_choice(name, value, choices):
    if value not in choices:
        fail(name, f"one of {sorted(choices)}", value)
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        fail(name, "true or false", value)
    return value


def check_increasing_steps(name, values, allow_empty=True):
    """A list of non-negative step numbers in strictly increasing order."""
    if not isinstance(values, (list, tuple)) or (not values and not allow_empty):
        fail(name, "a list of steps" + ("" if allow_empty else " (at least one)"), values)
    for v in values:
        check_non_negative(name, v)
    if any(b <= a for a, b in itertools.pairwise(values)):
        fail(name, "strictly increasing", list(values))
    return list(values)


def check_schedule(name, value):
    if not isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        fail(name, "a LearningRateSchedule (a config with a `_target_`)", value)
    return value


def count_passed(step, boundaries):
    """How many of `boundaries` are <= step, as float32 (0 for an empty list)."""
    if not boundaries:
        return ops.zeros((), "float32")
    edges = ops.convert_to_tensor([float(b) for b in boundaries], "float32")
    return ops.sum(ops.cast(ops.greater_equal(step, edges), "float32"))
