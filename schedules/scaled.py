"""A schedule times a scale that something outside the schedule lowers (plateau reduction).

The curve stays a pure function of the step: `Scaled` multiplies its child's value by a
non-trainable variable that only a training callback (`schedules.plateau.ReduceOnPlateau`)
assigns between epochs. It is what an optimizer built on a schedule allows: Keras'
`ReduceLROnPlateau` assigns `optimizer.learning_rate` instead, which such an optimizer
refuses.
"""

import keras
from keras import ops

from schedules.base import Schedule, check_non_negative, check_positive, check_schedule, register


@register
class Scaled(Schedule):
    """`schedule`'s curve times `scale`, never reduced below `min_lr` (steps).

    ```python
    lr = min(schedule(step), max(schedule(step) * scale, min_lr))
    ```

    The scale never takes the rate below `min_lr`, nor lifts a curve that is already below
    it. `scale` is saved with the model, so a reloaded model continues at its scale.

    Args:
        schedule: the curve to scale.
        min_lr: the lowest rate a scale < 1 may produce, >= 0.
        scale: the scale to start at, > 0 (1 for a new run).
    """

    def __init__(self, schedule, min_lr=0.0, scale=1.0):
        self.schedule = check_schedule("schedule", schedule)
        self.min_lr = check_non_negative("min_lr", min_lr)
        check_positive("scale", scale)
        self._scale = keras.Variable(scale, dtype="float32", trainable=False, name="lr_scale")

    def track_in(self, optimizer):
        """Keep the scale as one of `optimizer`'s variables (returns self).

        On JAX the train step is a pure function of the variables Keras passes through it
        (the model's, the optimizer's, the metrics'); a variable of the schedule's own would
        be read once, when the step is traced, and a later reduction never seen
        (keras-team/keras-core#213 is that trap for a whole schedule). Tracked by the
        optimizer, the scale is passed in with its state on every backend, and saved with it.
        """
        value = self.scale
        self._scale = optimizer.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(value),
            dtype="float32",
            name="lr_scale",
        )
        return self

    @property
    def scale(self):
        return float(keras.ops.convert_to_numpy(self._scale))

    @scale.setter
    def scale(self, value):
        self._scale.assign(check_positive("scale", value))

    def value(self, step):
        base = self.schedule(step)
        return ops.minimum(base, ops.maximum(base * self._scale, self.min_lr))
