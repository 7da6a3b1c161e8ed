"""Polynomial decay to an end rate, optionally cycling."""

from keras import ops

from schedules.base import (
    Schedule,
    check_bool,
    check_non_negative,
    check_positive,
    register,
)


@register
class PolynomialDecay(Schedule):
    """Polynomial decay from `initial_lr` to `end_lr` over `decay_steps` (steps).

    ```python
    if cycle:   # restart with a longer period, the first multiple of decay_steps > step
        decay_steps = decay_steps * max(1, ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    lr = (initial_lr - end_lr) * (1 - step / decay_steps) ** power + end_lr
    ```

    Identical to Keras' `PolynomialDecay`. `power=1` is PyTorch's `LinearLR`-style ramp
    down; PyTorch's `PolynomialLR` has no `end_lr` and no cycling.

    Args:
        initial_lr: rate at step 0, > 0.
        decay_steps: length of the decay, > 0.
        end_lr: rate reached at `decay_steps` and held after it, >= 0.
        power: exponent of the polynomial, > 0.
        cycle: restart the decay after `decay_steps` instead of holding `end_lr`.
    """

    lengths = ("decay_steps",)

    def __init__(self, initial_lr, decay_steps, end_lr, power=1.0, cycle=False):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.decay_steps = check_positive("decay_steps", decay_steps)
        self.end_lr = check_non_negative("end_lr", end_lr)
        self.power = check_positive("power", power)
        self.cycle = check_bool("cycle", cycle)

    def value(self, step):
        # Keras' op order, so that the two agree to the last float32 bit.
        decay_steps = ops.cast(self.decay_steps, "float32")
        if self.cycle:
            multiplier = ops.where(ops.equal(step, 0), 1.0, ops.ceil(step / self.decay_steps))
            decay_steps = ops.multiply(decay_steps, multiplier)
        else:
            step = ops.minimum(step, decay_steps)
        p = ops.divide(step, decay_steps)
        return ops.add(
            ops.multiply(
                ops.convert_to_tensor(self.initial_lr, "float32") - self.end_lr,
                ops.power(1 - p, ops.cast(self.power, "float32")),
            ),
            self.end_lr,
        )
