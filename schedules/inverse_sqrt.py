"""Inverse square root decay after a linear warmup: the Transformer's schedule."""

from keras import ops

from schedules.base import Schedule, check_non_negative, check_positive, register
from schedules.join import join, ramp


@register
class InverseSqrt(Schedule):
    """Linear warmup, then `initial_lr` decaying as one over the square root of the step.

    ```python
    if step < warmup_steps:
        lr = warmup_start_lr + (initial_lr - warmup_start_lr) * step / warmup_steps
    else:
        lr = initial_lr * sqrt(timescale / (timescale + step - warmup_steps))
    ```

    With `timescale = warmup_steps` this is `initial_lr * sqrt(warmup_steps / step)`, the
    schedule of "Attention Is All You Need" (Vaswani et al., 2017, eq. 3, with the peak as a
    rate) and fairseq's `inverse_sqrt`; Hugging Face's `get_inverse_sqrt_schedule` is the
    same curve. It never reaches zero: the rate at `step` is `initial_lr / sqrt(1 + (step -
    warmup_steps) / timescale)`.

    Args:
        initial_lr: peak rate, reached at the end of the warmup, > 0.
        timescale: steps after the warmup over which the rate falls to `initial_lr /
            sqrt(2)`, > 0.
        warmup_steps: length of the linear warmup, >= 0 (0: none).
        warmup_start_lr: rate at step 0 when there is a warmup, >= 0.
    """

    lengths = ("warmup_steps", "timescale")

    def __init__(self, initial_lr, timescale, warmup_steps=0, warmup_start_lr=0.0):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.timescale = check_positive("timescale", timescale)
        self.warmup_steps = check_non_negative("warmup_steps", warmup_steps)
        self.warmup_start_lr = check_non_negative("warmup_start_lr", warmup_start_lr)

    def value(self, step):
        peak = ops.convert_to_tensor(self.initial_lr, "float32")
        timescale = ops.convert_to_tensor(float(self.timescale), "float32")

        def decayed(t):
            return peak * ops.sqrt(timescale / (timescale + t))

        if not self.warmup_steps:
            return decayed(step)
        up = ramp(self.warmup_start_lr, peak, self.warmup_steps)
        return join(step, [up, decayed], [self.warmup_steps])
