"""Inverse-time decay: lr proportional to 1 / (1 + rate * t)."""

from keras import ops

from schedules.base import Schedule, check_bool, check_positive, register


@register
class InverseTimeDecay(Schedule):
    """Inverse-time decay (steps).

    ```python
    p = step / decay_steps            # floor(step / decay_steps) if staircase
    lr = initial_lr / (1 + decay_rate * p)
    ```

    Identical to Keras' `InverseTimeDecay`.

    Args:
        initial_lr: rate at step 0, > 0.
        decay_steps: steps per unit of `p`, > 0.
        decay_rate: how fast the rate falls, > 0.
        staircase: decay in whole `decay_steps` jumps instead of continuously.
    """

    lengths = ("decay_steps",)

    def __init__(self, initial_lr, decay_steps, decay_rate, staircase=False):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.decay_steps = check_positive("decay_steps", decay_steps)
        self.decay_rate = check_positive("decay_rate", decay_rate)
        self.staircase = check_bool("staircase", staircase)

    def value(self, step):
        p = step / ops.cast(self.decay_steps, "float32")
        if self.staircase:
            p = ops.floor(p)
        denominator = ops.add(1.0, ops.multiply(ops.cast(self.decay_rate, "float32"), p))
        return ops.divide(ops.convert_to_tensor(self.initial_lr, "float32"), denominator)
