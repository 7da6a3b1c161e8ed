"""REX: a decay that stays high longer than linear and drops to its floor at the end."""

from keras import ops

from schedules.base import (
    Schedule,
    check_non_negative,
    check_number,
    check_positive,
    fail,
    register,
)
from schedules.join import join, ramp


@register
class Rex(Schedule):
    """Linear warmup, then REX from `initial_lr` to `min_lr` over `decay_steps` (steps).

    ```python
    if step < warmup_steps:
        lr = warmup_start_lr + (initial_lr - warmup_start_lr) * step / warmup_steps
    else:
        p = min(step - warmup_steps, decay_steps) / decay_steps
        lr = min_lr + (initial_lr - min_lr) * (1 - p) / (1 - beta * p)
    ```

    `beta=0.5` is REX as published, `(1 - p) / (1/2 + (1 - p)/2)` (Chen, Wolfe & Kyrillidis,
    "REX: Revisiting Budgeted Training with an Improved Schedule", MLSys 2022, eq. 2);
    `beta=0` is linear decay, and `beta` towards 1 holds the rate longer (init2winit's
    generalisation). `min_lr` is held after the decay.

    Args:
        initial_lr: peak rate, reached at the end of the warmup, > 0.
        decay_steps: length of the decay after the warmup, > 0.
        min_lr: rate at the end of the decay, 0 <= min_lr <= initial_lr.
        beta: the profile's bend, 0 <= beta < 1.
        warmup_steps: length of the linear warmup, >= 0 (0: none).
        warmup_start_lr: rate at step 0 when there is a warmup, >= 0.
    """

    lengths = ("warmup_steps", "decay_steps")

    def __init__(
        self, initial_lr, decay_steps, min_lr=0.0, beta=0.5, warmup_steps=0, warmup_start_lr=0.0
    ):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.decay_steps = check_positive("decay_steps", decay_steps)
        self.min_lr = check_non_negative("min_lr", min_lr)
        if min_lr > initial_lr:
            fail("min_lr", f"<= initial_lr ({initial_lr})", min_lr)
        if not 0 <= check_number("beta", beta) < 1:
            fail("beta", "in [0, 1)", beta)
        self.beta = beta
        self.warmup_steps = check_non_negative("warmup_steps", warmup_steps)
        self.warmup_start_lr = check_non_negative("warmup_start_lr", warmup_start_lr)

    def value(self, step):
        peak = ops.convert_to_tensor(self.initial_lr, "float32")
        length = ops.convert_to_tensor(float(self.decay_steps), "float32")

        def decayed(t):
            p = ops.minimum(t / length, 1.0)  # after the division: XLA rounds x / c up past 1
            return self.min_lr + (peak - self.min_lr) * (1.0 - p) / (1.0 - self.beta * p)

        if not self.warmup_steps:
            return decayed(step)
        up = ramp(self.warmup_start_lr, peak, self.warmup_steps)
        return join(step, [up, decayed], [self.warmup_steps])
