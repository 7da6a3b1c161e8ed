"""Plateau reduction: a training callback, not a schedule.

`ReduceOnPlateau` watches an epoch metric and lowers the scale of the `Scaled` schedule it
wrapped (`wrap`), with Keras' `ReduceLROnPlateau` rules; the schedule itself stays a pure
function of the step. `plateau=reduce` wraps any schedule this way; a preview shows the
curve at scale 1, since only training produces the metric.
"""

import logging

import keras

from schedules.base import check_choice, check_non_negative, check_number, fail
from schedules.scaled import Scaled

log = logging.getLogger(__name__)


class ReduceOnPlateau(keras.callbacks.Callback):
    """Multiply the wrapped schedule's scale by `factor` when `monitor` stalls (epochs).

    `scale` starts at 1 and is multiplied by `factor` whenever `monitor` has not improved
    by more than `min_delta` for `patience` epochs; after a reduction, `cooldown` epochs
    pass before counting starts again (Keras' `ReduceLROnPlateau` rules). The rate never
    drops below `min_lr` through a reduction.

    Args:
        monitor: the epoch log key to watch (e.g. "val_loss").
        mode: "min" if lower is better, "max" if higher is.
        factor: multiplier per reduction, in (0, 1).
        patience: epochs without improvement before a reduction, >= 0.
        min_delta: the least change that counts as an improvement, >= 0.
        cooldown: epochs to wait after a reduction, >= 0.
        min_lr: the lowest rate a reduction may produce, >= 0.
    """

    def __init__(
        self,
        monitor="val_loss",
        mode="min",
        factor=0.1,
        patience=10,
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        super().__init__()
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
        self.scaled = None
        self._best = None
        self._wait = 0
        self._cooldown_left = 0

    def state(self):
        """What a resumed run needs (`trainer.resume`): the scale and the counters."""
        return {
            "scale": self.scaled.scale,
            "best": None if self._best is None else float(self._best),
            "wait": self._wait,
            "cooldown_left": self._cooldown_left,
        }

    def restore(self, state):
        self.scaled.scale = state["scale"]
        self._best, self._wait = state["best"], state["wait"]
        self._cooldown_left = state["cooldown_left"]

    def wrap(self, schedule):
        """`schedule` in a `Scaled` whose scale this callback lowers; returns the `Scaled`."""
        self.scaled = Scaled(schedule, min_lr=self.min_lr)
        return self.scaled

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"plateau.monitor={self.monitor!r} is not among this run's epoch metrics "
                f"{sorted(logs)}; set plateau.monitor to one of them."
            )
        if self.observe(float(logs[self.monitor])):
            log.info(
                "epoch %d: %s has not improved for %s epochs; learning-rate scale is now %.3g",
                epoch,
                self.monitor,
                self.patience,
                self.scaled.scale,
            )

    def observe(self, current):
        """Feed one epoch's value of `monitor`; returns True when it lowered the scale."""
        if self.scaled is None:
            raise RuntimeError("ReduceOnPlateau.wrap(schedule) first: there is no scale to lower")
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
        self.scaled.scale = self.scaled.scale * self.factor
        self._cooldown_left = self.cooldown
        self._wait = 0
        return True

    def _improved(self, current):
        if self.mode == "min":
            return current < self._best - self.min_delta
        return current > self._best + self.min_delta
