"""The learning-rate range test's sweep: from `min_lr` to `max_lr` over `num_steps` steps."""

import math

from keras import ops

from schedules.base import Schedule, check_choice, check_positive, fail, register
from schedules.choices import RANGE_TEST_SWEEPS as SWEEPS


@register
class RangeTest(Schedule):
    """The rate of the LR range test (Smith 2017, section 3.3), rising every step (steps).

    ```python
    t = min(step, num_steps - 1) / (num_steps - 1)
    exponential: lr = min_lr * (max_lr / min_lr) ** t
    linear:      lr = min_lr + (max_lr - min_lr) * t
    ```

    `max_lr` is reached at step `num_steps - 1` and held after it.

    Args:
        min_lr: the first rate, > 0.
        max_lr: the last rate, > min_lr.
        num_steps: length of the sweep, >= 2.
        sweep: "exponential" (even steps in log rate, the usual choice) or "linear".
    """

    lengths = ("num_steps",)

    def __init__(self, min_lr, max_lr, num_steps, sweep="exponential"):
        self.min_lr = check_positive("min_lr", min_lr)
        self.max_lr = check_positive("max_lr", max_lr)
        if max_lr <= min_lr:
            fail("max_lr", f"> min_lr ({min_lr})", max_lr)
        if check_positive("num_steps", num_steps) < 2:
            fail("num_steps", ">= 2", num_steps)
        self.num_steps = num_steps
        self.sweep = check_choice("sweep", sweep, SWEEPS)

    def value(self, step):
        # In float64: over 8 decades the exponent reaches |16|, where one float32 ulp is
        # already 2e-6 of the rate, and eager and XLA round it differently.
        t = ops.minimum(ops.cast(step, "float64"), self.num_steps - 1.0) / (self.num_steps - 1.0)
        if self.sweep == "exponential":
            return ops.exp(math.log(self.min_lr) + t * math.log(self.max_lr / self.min_lr))
        return self.min_lr + (self.max_lr - self.min_lr) * t
