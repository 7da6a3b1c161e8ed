"""Step decay: multiply by a factor every `step_size` steps (a staircase exponential)."""

from keras import ops

from schedules.base import (
    Schedule,
    check_decay_rate,
    check_non_negative,
    check_positive,
    register,
)


@register
class StepDecay(Schedule):
    """Step decay with a floor (steps).

    ```python
    lr = max(initial_lr * decay_rate ** floor(step / step_size), min_lr)
    ```

    The first drop happens at `step = step_size`, never at step 0. PyTorch's
    `StepLR(step_size, gamma)` counts in epochs; give `step_size: 1ep` (say) in the config for that.

    Args:
        initial_lr: rate for steps 0 .. step_size-1, > 0.
        decay_rate: factor applied at every multiple of `step_size`, in (0, 1].
        step_size: steps between drops, > 0.
        min_lr: floor, >= 0.
    """

    lengths = ("step_size",)

    def __init__(self, initial_lr, decay_rate, step_size, min_lr=0.0):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.decay_rate = check_decay_rate("decay_rate", decay_rate)
        self.step_size = check_positive("step_size", step_size)
        self.min_lr = check_non_negative("min_lr", min_lr)

    def value(self, step):
        drops = ops.floor(step / ops.cast(self.step_size, "float32"))
        decayed = self.initial_lr * ops.power(ops.cast(self.decay_rate, "float32"), drops)
        return ops.maximum(decayed, self.min_lr)
