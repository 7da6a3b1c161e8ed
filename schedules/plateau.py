"""Plateau reduction on top of any schedule, through a scale variable the schedule reads.

Keras' `ReduceLROnPlateau` assigns `optimizer.learning_rate`, which an optimizer built on a
schedule refuses. Here the schedule multiplies its child's curve by a non-trainable
variable, and `PlateauCallback` lowers that variable when the monitored metric stalls.
"""

import logging

import keras
from keras import ops

from schedules.base import (
    Schedule,
    check_choice,
    check_non_negative,
    check_number,
    check_positive,
    check_schedule,
    fail,
    register,
)

log = logging.getLogger(__name__)


@register
class ReduceOnPlateau(Schedule):
    """`schedule`'s curve times a scale that drops by `factor` on each plateau (steps).

    ```python
    lr = min(schedule(step), max(schedule(step) * scale, min_lr))
    ```

    The reduction never takes the rate below `min_lr`, nor lifts a curve that is already
    below it. `scale` starts at 1 and is multiplied by `factor` whenever `monitor` has not
    improved by more than `min_delta` for `patience` epochs; after a reduction, `cooldown`
    epochs pass before counting starts again (Keras' `ReduceLROnPlateau` rules).

    Args:
        schedule: the curve to scale.
        monitor: the epoch log key to watch (e.g. "val_loss").
        mode: "min" if lower is better, "max" if higher is.
        factor: multiplier per reduction, in (0, 1).
        patience: epochs without improvement before a reduction, >= 0.
        min_delta: the least change that counts as an improvement, >= 0.
        cooldown: epochs to wait after a reduction, >= 0.
        min_lr: the lowest rate a reduction may produce, >= 0.
        scale: the current scale (1 for a new run; saved so a reloaded model continues).
    """

    def __init__(
        self,
        schedule,
        monitor="val_loss",
        mode="min",
        factor=0.1,
        patience=10,
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
        scale=1.0,
    ):
        self.schedule = check_schedule("schedule", schedule)
        if not isinstance(monitor, str) or not monitor:
            fail("monitor", "the name of an epoch metric such as 'val_loss'", monitor)
        self.monitor = monitor
        self.mode = check_choice("mode", mode, ("min", "max"))
        if not 0 < check_number("factor", factor) < 1:
            fail("factor", "in (0, 1)", factor)
        self.factor = factor
        self.patience = check_non_negative("patience", patience)
        self.min_delta = check_non_negative("min_delta", min_delta)
        self.cooldown = check_non_negative("cooldown", cooldown)
        self.min_lr = check_non_negative("min_lr", min_lr)
        check_positive("scale", scale)
        self._scale = keras.Variable(scale, dtype="float32", trainable=False, name="plateau_scale")
        self._best = None
        self._wait = 0
        self._cooldown_left = 0

    @property
    def scale(self):
        return float(keras.ops.convert_to_numpy(self._scale))

    def value(self, step):
        base = self.schedule(step)
        return ops.minimum(base, ops.maximum(base * self._scale, self.min_lr))

    def observe(self, current):
        """Feed one epoch's value of `monitor`; returns True when it lowered the scale."""
        if self._cooldown_left > 0:
            self._cooldown_left -= 1
            self._wait = 0
        if self._best is None or self._improved(current):
            self._best = current
            self._wait = 0
            return False
        if self._cooldown_left > 0:
            return False
        self._wait += 1
        if self._wait < self.patience:
            return False
        self._scale.assign(self.scale * self.factor)
        self._cooldown_left = self.cooldown
        self._wait = 0
        return True

    def _improved(self, current):
        if self.mode == "min":
            return current < self._best - self.min_delta
        return current > self._best + self.min_delta


class PlateauCallback(keras.callbacks.Callback):
    """Feeds each epoch's `schedule.monitor` value to a `ReduceOnPlateau` schedule."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        key = self.schedule.monitor
        if key not in logs:
            raise ValueError(
                f"plateau.monitor={key!r} is not among this run's epoch metrics "
                f"{sorted(logs)}; set plateau.monitor to one of them."
            )
        if self.schedule.observe(float(logs[key])):
            log.info(
                "epoch %d: %s has not improved for %s epochs; learning-rate scale is now %.3g",
                epoch,
                key,
                self.schedule.patience,
                self.schedule.scale,
            )
