"""The one-cycle policy (Smith & Topin 2018) with PyTorch's OneCycleLR conventions."""

import math

from keras import ops

from schedules.base import (
    Schedule,
    check_bool,
    check_choice,
    check_number,
    check_positive,
    fail,
    register,
)
from schedules.join import interpolate

ANNEAL_STRATEGIES = ("cos", "linear")


@register
class OneCycle(Schedule):
    """One cycle up to `max_lr` and down far below the start (steps).

    ```python
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    # phases (end step, from, to); each runs from the previous phase's end step:
    two_phase = [(pct_start * total_steps - 1, initial_lr, max_lr),
                 (total_steps - 1, max_lr, min_lr)]
    three_phase = [(pct_start * total_steps - 1, initial_lr, max_lr),
                   (2 * pct_start * total_steps - 2, max_lr, initial_lr),
                   (total_steps - 1, initial_lr, min_lr)]
    pct = (step - start) / (end - start)   # in the first phase whose end >= step
    cos:    lr = to + (from - to) / 2 * (1 + cos(pi * pct))
    linear: lr = from + (to - from) * pct
    ```

    The same values as PyTorch's `OneCycleLR` for steps 0 .. total_steps-1; past the end
    it holds `min_lr` where PyTorch raises. Momentum cycling is not part of a Keras
    schedule. Smith & Topin, "Super-Convergence", 2018.

    Args:
        max_lr: the peak rate, > 0.
        total_steps: length of the cycle, in steps (the config's null means the whole run).
        pct_start: fraction of the cycle spent rising, in (0, 1).
        anneal_strategy: "cos" or "linear".
        div_factor: `initial_lr = max_lr / div_factor`, > 0.
        final_div_factor: `min_lr = initial_lr / final_div_factor`, > 0.
        three_phase: come back down to `initial_lr` symmetrically before the final anneal.
    """

    lengths = ("total_steps",)

    def __init__(
        self,
        max_lr,
        total_steps,
        pct_start=0.3,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
    ):
        self.max_lr = check_positive("max_lr", max_lr)
        self.total_steps = check_positive("total_steps", total_steps)
        if not 0 < check_number("pct_start", pct_start) < 1:
            fail("pct_start", "in (0, 1)", pct_start)
        self.pct_start = pct_start
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ANNEAL_STRATEGIES)
        self.div_factor = check_positive("div_factor", div_factor)
        self.final_div_factor = check_positive("final_div_factor", final_div_factor)
        self.three_phase = check_bool("three_phase", three_phase)
        starts = [0.0, *[end for end, _, _ in self.phases()][:-1]]
        if any(end <= start for start, (end, _, _) in zip(starts, self.phases())):
            fail(
                "total_steps",
                f"long enough for every phase to last >= 1 step with "
                f"pct_start={pct_start} and three_phase={three_phase}",
                total_steps,
            )

    def phases(self):
        """[(end step, rate at the phase's start, rate at its end)], as PyTorch builds them."""
        initial = self.max_lr / self.div_factor
        low = initial / self.final_div_factor
        rise_end = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            return [
                (rise_end, initial, self.max_lr),
                (float(2 * self.pct_start * self.total_steps) - 2, self.max_lr, initial),
                (self.total_steps - 1.0, initial, low),
            ]
        return [(rise_end, initial, self.max_lr), (self.total_steps - 1.0, self.max_lr, low)]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)
        return (end - start) * pct + start

    def value(self, step):
        phases = self.phases()
        knots = [0.0] + [end for end, _, _ in phases]
        values = [phases[0][1]] + [end_lr for _, _, end_lr in phases]
        return interpolate(step, knots, values, self._anneal)
