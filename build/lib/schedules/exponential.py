"""Exponential decay, continuous or staircase, with a floor."""

from keras import ops

from schedules.base import (
    Schedule,
    check_bool,
    check_decay_rate,
    check_non_negative,
    check_positive,
    register,
)


@register
class ExponentialDecay(Schedule):
    """Exponential decay with an optional staircase and a floor (steps).

    ```python
    p = step / decay_steps            # floor(step / decay_steps) if staircase
    lr = max(initial_lr * decay_rate ** p, min_lr)
    ```

    With `min_lr=0` this is Keras' `ExponentialDecay` value for value; PyTorch's
    `ExponentialLR(gamma)` is `decay_steps=1` (per step) or one epoch's steps with
    `staircase=True` (per epoch).

    Args:
        initial_lr: rate at step 0, > 0.
        decay_steps: steps over which the rate is multiplied by `decay_rate`, > 0.
        decay_rate: factor per `decay_steps`, in (0, 1].
        staircase: decay in whole `decay_steps` jumps instead of continuously.
        min_lr: floor; the rate never goes below it, >= 0.
    """

    lengths = ("decay_steps",)

    def __init__(self, initial_lr, decay_steps, decay_rate, staircase=False, min_lr=0.0):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.decay_steps = check_positive("decay_steps", decay_steps)
        self.decay_rate = check_decay_rate("decay_rate", decay_rate)
        self.staircase = check_bool("staircase", staircase)
        self.min_lr = check_non_negative("min_lr", min_lr)

    def value(self, step):
        # Same op order as keras.optimizers.schedules.ExponentialDecay, so that the two
        # agree to the last float32 bit.
        p = step / ops.cast(self.decay_steps, "float32")
        if self.staircase:
            p = ops.floor(p)
        decayed = ops.multiply(
            ops.convert_to_tensor(self.initial_lr, "float32"),
            ops.power(ops.cast(self.decay_rate, "float32"), p),
        )
        return ops.maximum(decayed, self.min_lr)
