"""SGDR: cosine annealing with warm restarts, optional growing cycles and step drops."""

import math

from keras import ops

from schedules.base import (
    Schedule,
    check_increasing_steps,
    check_non_negative,
    check_positive,
    count_passed,
    fail,
    register,
)
from schedules.cosine import cosine_fraction


@register
class SGDR(Schedule):
    """Stochastic gradient descent with warm restarts (steps).

    Cycle `i` (from 0) lasts `T_i = first_cycle_steps * t_mult ** i` steps and starts at
    `S_i = first_cycle_steps * (t_mult ** i - 1) / (t_mult - 1)` (`i * first_cycle_steps`
    when `t_mult == 1`). With `t = step - S_i` inside cycle `i`:

    ```python
    peak = min_lr + (initial_lr - min_lr) * m_mul ** i
    lr = min_lr + (peak - min_lr) * (1 + cos(pi * t / T_i)) / 2
    lr *= reduction_factor ** sum(step >= r for r in reduction_steps)
    ```

    so every restart (`t = 0`) is back at the cycle's peak. With `min_lr=0` and no
    reductions this is Keras' `CosineDecayRestarts`, except at some restarts, where Keras'
    float32 logarithm rounds into the previous cycle and returns the minimum instead of
    the peak (e.g. step 98301 = 3 * (2**15 - 1) with first_cycle_steps=3, t_mult=2). PyTorch's
    `CosineAnnealingWarmRestarts` has no `m_mul` and no reductions.
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", 2017.

    Args:
        initial_lr: peak of the first cycle, > 0.
        first_cycle_steps: length of the first cycle, > 0.
        min_lr: floor every cycle anneals to, 0 <= min_lr <= initial_lr.
        t_mult: factor by which each cycle is longer than the previous one, >= 1.
        m_mul: factor by which each restart's peak height is lower, in (0, 1].
        reduction_steps: steps from which the whole curve is multiplied (again) by
            `reduction_factor`, strictly increasing.
        reduction_factor: the multiplier at each reduction step, in (0, 1].
    """

    lengths = ("first_cycle_steps", "reduction_steps")

    def __init__(
        self,
        initial_lr,
        first_cycle_steps,
        min_lr=0.0,
        t_mult=2.0,
        m_mul=1.0,
        reduction_steps=(),
        reduction_factor=0.1,
    ):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.first_cycle_steps = check_positive("first_cycle_steps", first_cycle_steps)
        self.min_lr = check_non_negative("min_lr", min_lr)
        if min_lr > initial_lr:
            fail("min_lr", f"<= initial_lr ({initial_lr})", min_lr)
        if check_positive("t_mult", t_mult) < 1:
            fail("t_mult", ">= 1", t_mult)
        self.t_mult = t_mult
        if not 0 < check_positive("m_mul", m_mul) <= 1:
            fail("m_mul", "in (0, 1]", m_mul)
        self.m_mul = m_mul
        self.reduction_steps = check_increasing_steps("reduction_steps", reduction_steps)
        if not 0 < check_positive("reduction_factor", reduction_factor) <= 1:
            fail("reduction_factor", "in (0, 1]", reduction_factor)
        self.reduction_factor = reduction_factor

    def __call__(self, step):
        index = self._cycle_index(ops.cast(step, "float64"))
        return ops.cast(
            self._rate(ops.cast(step, "float32"), ops.cast(index, "float32")), "float32"
        )

    def _cycle_index(self, step):
        """Index of the cycle holding `step` (float64: exact at restarts, even past 2**31)."""
        progress = step / float(self.first_cycle_steps)  # in units of the first cycle
        t_mult = float(self.t_mult)
        if t_mult == 1:
            return ops.floor(progress)

        def start(i):  # where cycle i begins, in units of the first cycle
            return (ops.power(t_mult, i) - 1.0) / (t_mult - 1.0)

        index = ops.maximum(ops.floor(ops.log1p(progress * (t_mult - 1.0)) / math.log(t_mult)), 0.0)
        # The closed form can land one cycle off at a restart; one step either way fixes it.
        index = ops.where(progress >= start(index + 1.0), index + 1.0, index)
        return ops.where(progress < start(index), index - 1.0, index)

    def _rate(self, step, index):
        # The fraction through the cycle in float32, written as Keras writes it, so that the
        # two agree to the last bit wherever Keras finds the right cycle.
        progress = step / ops.cast(self.first_cycle_steps, "float32")
        if self.t_mult == 1:
            completed = progress - index
        else:
            t_mult = ops.cast(self.t_mult, "float32")
            started = (1.0 - ops.power(t_mult, index)) / (1.0 - t_mult)
            completed = (progress - started) / ops.power(t_mult, index)
        completed = ops.clip(completed, 0.0, 1.0)
        amplitude = (1.0 - self.min_lr / self.initial_lr) * ops.power(
            ops.cast(self.m_mul, "float32"), index
        )
        floor = self.min_lr / self.initial_lr
        lr = ops.multiply(
            ops.convert_to_tensor(self.initial_lr, "float32"),
            amplitude * cosine_fraction(completed, 1.0) + floor,
        )
        if self.reduction_steps:
            drops = count_passed(step, self.reduction_steps)
            lr = lr * ops.power(ops.cast(self.reduction_factor, "float32"), drops)
        return lr
