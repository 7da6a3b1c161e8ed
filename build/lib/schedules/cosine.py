"""Cosine annealing to a floor, with an optional linear warmup in front."""

import math

from keras import ops

from schedules.base import Schedule, check_non_negative, check_positive, fail, register
from schedules.join import join, ramp


def cosine_fraction(t, period):
    """`(1 + cos(pi * t / period)) / 2`: 1 at t=0, 0 at t=period (float32 tensors)."""
    completed = ops.divide(t, period)
    return 0.5 * (1.0 + ops.cos(ops.multiply(ops.convert_to_tensor(math.pi, "float32"), completed)))


@register
class CosineDecay(Schedule):
    """Linear warmup, then cosine annealing from `initial_lr` to `min_lr` (steps).

    ```python
    if step < warmup_steps:
        lr = warmup_start_lr + (initial_lr - warmup_start_lr) * step / warmup_steps
    else:
        t = min(step - warmup_steps, decay_steps)
        lr = min_lr + (initial_lr - min_lr) * (1 + cos(pi * t / decay_steps)) / 2
    ```

    `min_lr` is held after the decay. This is Keras' `CosineDecay(warmup_start_lr,
    decay_steps, alpha=min_lr / initial_lr, warmup_target=initial_lr, warmup_steps)`
    with the floor given as a rate rather than a fraction, and PyTorch's
    `CosineAnnealingLR(T_max=decay_steps, eta_min=min_lr)` without its restart-free
    periodic continuation past `T_max`. Loshchilov & Hutter, "SGDR", ICLR 2017, eq. 5.

    Args:
        initial_lr: peak rate, reached at the end of the warmup, > 0.
        decay_steps: length of the cosine after the warmup, > 0.
        min_lr: rate at the end of the decay, 0 <= min_lr <= initial_lr.
        warmup_steps: length of the linear warmup, >= 0 (0: no warmup).
        warmup_start_lr: rate at step 0 when there is a warmup, >= 0.
    """

    lengths = ("warmup_steps", "decay_steps")

    def __init__(self, initial_lr, decay_steps, min_lr=0.0, warmup_steps=0, warmup_start_lr=0.0):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.decay_steps = check_positive("decay_steps", decay_steps)
        self.min_lr = check_non_negative("min_lr", min_lr)
        if min_lr > initial_lr:
            fail("min_lr", f"<= initial_lr ({initial_lr})", min_lr)
        self.warmup_steps = check_non_negative("warmup_steps", warmup_steps)
        self.warmup_start_lr = check_non_negative("warmup_start_lr", warmup_start_lr)

    def value(self, step):
        initial = ops.convert_to_tensor(self.initial_lr, "float32")
        decay_steps = ops.cast(self.decay_steps, "float32")
        # Written as Keras writes it (a fraction `alpha` of the peak) so that the two
        # agree to the last float32 bit; it equals min + (initial - min) * cosine.
        alpha = self.min_lr / self.initial_lr
        step = ops.minimum(step, decay_steps + self.warmup_steps)

        def decayed(t):
            return ops.multiply(initial, (1 - alpha) * cosine_fraction(t, decay_steps) + alpha)

        if not self.warmup_steps:
            return decayed(step)
        up = ramp(self.warmup_start_lr, initial, self.warmup_steps)
        return join(step, [up, decayed], [self.warmup_steps])
