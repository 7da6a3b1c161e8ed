"""Schedules joined one after another at step boundaries."""

from schedules.base import Schedule, check_increasing_steps, check_schedule, fail, register
from schedules.join import join


@register
class Sequence(Schedule):
    """Run `schedules[i]` from `boundaries[i-1]` (0 for the first) up to `boundaries[i]` (steps).

    ```python
    i = sum(step >= b for b in boundaries)
    start = boundaries[i - 1] if i > 0 else 0
    lr = schedules[i](step - start)      # each child counts steps from its own start
    ```

    As Optax's `join_schedules` and PyTorch's `SequentialLR` (milestones in steps here).

    Args:
        schedules: two or more schedules.
        boundaries: the steps where the next schedule takes over, strictly increasing,
            > 0, one fewer than `schedules`.
    """

    lengths = ("boundaries",)

    def __init__(self, schedules, boundaries):
        if not isinstance(schedules, (list, tuple)) or len(schedules) < 2:
            fail("schedules", "a list of at least two schedules", schedules)
        self.schedules = [check_schedule("schedules", s) for s in schedules]
        self.boundaries = check_increasing_steps("boundaries", boundaries)
        if len(self.boundaries) != len(self.schedules) - 1:
            fail(
                "boundaries",
                f"a list of {len(self.schedules) - 1} steps (one fewer than "
                f"`schedules`, which has {len(self.schedules)})",
                self.boundaries,
            )
        if self.boundaries[0] <= 0:
            fail("boundaries", "> 0 (the first schedule starts at step 0)", self.boundaries)

    def value(self, step):
        return join(step, self.schedules, self.boundaries)
