"""Warmup-stable-decay (WSD): a constant rate, then a short cooldown."""

import itertools
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
from schedules.join import join, ramp

SHAPES = ("linear", "cosine", "1-sqrt")


def cooldown_fraction(p, shape):
    """How much of the way from `min_lr` to the peak is left at progress `p` in [0, 1] of
    the cooldown: 1 at p=0, 0 at p=1 (float32 tensors)."""
    if shape == "linear":
        return 1.0 - p
    if shape == "cosine":
        pi = ops.convert_to_tensor(math.pi, "float32")
        return 0.5 * (1.0 + ops.cos(ops.multiply(pi, p)))
    return 1.0 - ops.sqrt(p)  # "1-sqrt"


@register
class WarmupStableDecay(Schedule):
    """Linear warmup, `initial_lr` for `stable_steps`, then a cooldown to `min_lr` (steps).

    ```python
    if step < warmup_steps:
        lr = warmup_start_lr + (initial_lr - warmup_start_lr) * step / warmup_steps
    elif step < warmup_steps + stable_steps:
        lr = initial_lr
    else:
        p = min(step - warmup_steps - stable_steps, decay_steps) / decay_steps
        lr = min_lr + (initial_lr - min_lr) * f(p)
    # f(p) = 1 - p (linear), (1 + cos(pi * p)) / 2 (cosine), 1 - sqrt(p) (1-sqrt)
    ```

    `min_lr` is held after the cooldown; `decay_steps=0` never cools down (a constant rate
    after the warmup). Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond
    Fixed Training Durations", 2024 (the 1-sqrt cooldown, eq. 1); Hu et al., "MiniCPM",
    2024. Hugging Face's `get_wsd_schedule(num_warmup_steps, num_decay_steps,
    num_stable_steps, decay_type, min_lr_ratio)` with `warmup_type="linear"` and
    `num_cycles=0.5` is this curve with `min_lr = min_lr_ratio * initial_lr` and
    `warmup_start_lr = min_lr` (its warmup starts at the floor). `stable_steps=0`,
    `decay_shape="linear"` and `min_lr=0` is linear decay to zero (Bergsma et al.,
    "Straight to Zero", ICLR 2025).

    Because the stable phase does not depend on where the run ends, a cooldown can start
    from any checkpoint of the constant-rate trunk.

    Args:
        initial_lr: the rate of the stable phase (the peak), > 0.
        stable_steps: length of the constant phase after the warmup, >= 0.
        decay_steps: length of the cooldown after the stable phase, >= 0.
        decay_shape: "1-sqrt", "linear" or "cosine".
        min_lr: rate at the end of the cooldown, 0 <= min_lr <= initial_lr.
        warmup_steps: length of the linear warmup, >= 0 (0: none).
        warmup_start_lr: rate at step 0 when there is a warmup, >= 0.
    """

    lengths = ("warmup_steps", "stable_steps", "decay_steps")

    def __init__(
        self,
        initial_lr,
        stable_steps,
        decay_steps,
        decay_shape="1-sqrt",
        min_lr=0.0,
        warmup_steps=0,
        warmup_start_lr=0.0,
    ):
        self.initial_lr = check_positive("initial_lr", initial_lr)
        self.stable_steps = check_non_negative("stable_steps", stable_steps)
        self.decay_steps = check_non_negative("decay_steps", decay_steps)
        self.decay_shape = check_choice("decay_shape", decay_shape, SHAPES)
        self.min_lr = check_non_negative("min_lr", min_lr)
        if min_lr > initial_lr:
            fail("min_lr", f"<= initial_lr ({initial_lr})", min_lr)
        self.warmup_steps = check_non_negative("warmup_steps", warmup_steps)
        self.warmup_start_lr = check_non_negative("warmup_start_lr", warmup_start_lr)

    def value(self, step):
        peak = ops.convert_to_tensor(self.initial_lr, "float32")

        def stable(t):
            return ops.zeros_like(t) + peak

        def cooldown(t):
            length = ops.convert_to_tensor(float(self.decay_steps), "float32")
            p = ops.minimum(t / length, 1.0)  # after the division: XLA rounds x / c up past 1
            return self.min_lr + (peak - self.min_lr) * cooldown_fraction(p, self.decay_shape)

        phases = []  # (length in steps, piece); the last one lasts for ever
        if self.warmup_steps:
            phases.append((self.warmup_steps, ramp(self.warmup_start_lr, peak, self.warmup_steps)))
        if self.decay_steps:
            if self.stable_steps:
                phases.append((self.stable_steps, stable))
            phases.append((None, cooldown))
        else:
            phases.append((None, stable))
        boundaries = list(itertools.accumulate(length for length, _ in phases[:-1]))
        return join(step, [piece for _, piece in phases], boundaries)
