"""A linear warmup in front of any schedule."""

from keras import ops

from schedules.base import Schedule, check_non_negative, check_positive, check_schedule, register
from schedules.join import join, ramp


@register
class LinearWarmup(Schedule):
    """Ramp linearly from `start_lr` to where `schedule` begins, then run `schedule` (steps).

    ```python
    if step < warmup_steps:
        lr = start_lr + (schedule(0) - start_lr) * step / warmup_steps
    else:
        lr = schedule(step - warmup_steps)    # the wrapped schedule counts from 0
    ```

    Goyal et al., "Accurate, Large Minibatch SGD", 2017. Optax's `join_schedules` joins
    the same way; PyTorch's `LinearLR` + `SequentialLR` is the equivalent pairing.

    Args:
        schedule: the schedule that follows the warmup.
        warmup_steps: length of the ramp, > 0.
        start_lr: rate at step 0, >= 0.
    """

    lengths = ("warmup_steps",)

    def __init__(self, schedule, warmup_steps, start_lr=0.0):
        self.schedule = check_schedule("schedule", schedule)
        self.warmup_steps = check_positive("warmup_steps", warmup_steps)
        self.start_lr = check_non_negative("start_lr", start_lr)

    def value(self, step):
        target = self.schedule(ops.zeros((), "float32"))
        up = ramp(self.start_lr, target, self.warmup_steps)
        return join(step, [up, self.schedule], [self.warmup_steps])
