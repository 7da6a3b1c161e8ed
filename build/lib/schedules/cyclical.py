"""Cyclical learning rates (Smith 2017): triangular, triangular2, exp_range, custom."""

import math

from keras import ops

from schedules.base import (
    Schedule,
    check_choice,
    check_non_negative,
    check_positive,
    fail,
    register,
)

MODES = ("triangular", "triangular2", "exp_range")
SCALE_MODES = ("cycle", "iterations")

# Scale functions by name: a config names one, and never stores a callable, so that the
# schedule stays serialisable. Each takes the cycle number (from 1) or the step, as a
# float32 tensor, and returns the factor applied to the amplitude.
SCALE_FUNCTIONS = {}


def register_scale_fn(name):
    """Decorator: make a scale function available to `CyclicalLR(scale_fn=name)`."""

    def add(fn):
        if name in SCALE_FUNCTIONS:
            raise ValueError(f"A CLR scale function named {name!r} is already registered.")
        SCALE_FUNCTIONS[name] = fn
        return fn

    return add


@register_scale_fn("sine")
def sine(x):
    """`0.5 * (1 + sin(x * pi / 2))`, the example in bckenstler's CLR."""
    return 0.5 * (1.0 + ops.sin(x * (math.pi / 2)))


@register
class CyclicalLR(Schedule):
    """Cyclical learning rate between `base_lr` and `max_lr` (steps).

    ```python
    cycle = floor(1 + step / (2 * step_size))          # counts from 1
    x = abs(step / step_size - 2 * cycle + 1)
    lr = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale
    # scale: triangular 1; triangular2 1 / 2 ** (cycle - 1); exp_range gamma ** step;
    # scale_fn: SCALE_FUNCTIONS[scale_fn](cycle or step, as scale_mode says)
    ```

    So `lr(0) = base_lr` and the first peak is at `step = step_size`. Smith, "Cyclical
    Learning Rates for Training Neural Networks", WACV 2017; the same formula as
    bckenstler's Keras CLR and PyTorch's `CyclicLR` (which counts `step_size_up`).

    Args:
        base_lr: the lower bound of every cycle, >= 0.
        max_lr: the peak of the first cycle, >= base_lr and > 0.
        step_size: half a cycle, in steps, > 0 (Smith suggests 2 to 8 epochs' steps).
        mode: "triangular", "triangular2" or "exp_range".
        gamma: the per-step factor of `exp_range`, in (0, 1].
        scale_fn: name of a registered scale function; overrides `mode`.
        scale_mode: what `scale_fn` receives: "cycle" or "iterations" (the step).
    """

    lengths = ("step_size",)

    def __init__(
        self,
        base_lr,
        max_lr,
        step_size,
        mode="triangular",
        gamma=1.0,
        scale_fn=None,
        scale_mode="cycle",
    ):
        self.base_lr = check_non_negative("base_lr", base_lr)
        self.max_lr = check_positive("max_lr", max_lr)
        if max_lr < base_lr:
            fail("max_lr", f">= base_lr ({base_lr})", max_lr)
        self.step_size = check_positive("step_size", step_size)
        self.mode = check_choice("mode", mode, MODES)
        if not 0 < check_positive("gamma", gamma) <= 1:
            fail("gamma", "in (0, 1]", gamma)
        self.gamma = gamma
        if scale_fn is not None:
            check_choice("scale_fn", scale_fn, SCALE_FUNCTIONS)
        self.scale_fn = scale_fn
        self.scale_mode = check_choice("scale_mode", scale_mode, SCALE_MODES)

    def _scale(self, step, cycle):
        if self.scale_fn is not None:
            x = cycle if self.scale_mode == "cycle" else step
            return SCALE_FUNCTIONS[self.scale_fn](x)
        if self.mode == "triangular2":
            return ops.power(0.5, cycle - 1.0)
        if self.mode == "exp_range":
            # exp(step * log(gamma)) with the log taken in float64: gamma rounded to
            # float32 and raised to the step-th power drifts (0.2% at 1e5 steps for 0.99994).
            return ops.exp(step * math.log(self.gamma))
        return ops.ones_like(step)

    def value(self, step):
        half = ops.cast(self.step_size, "float32")
        cycle = ops.floor(1.0 + step / (2.0 * half))
        # |step / half - 2 cycle + 1| with the subtraction done first, in whole steps, so
        # that one rounding remains (and XLA's reciprocal rewrite cannot cancel into it).
        x = ops.abs(step - (2.0 * cycle - 1.0) * half) / half
        amplitude = (self.max_lr - self.base_lr) * ops.maximum(0.0, 1.0 - x)
        return self.base_lr + amplitude * self._scale(step, cycle)
