"""Piecewise-constant rates between step boundaries."""

from keras import ops

from schedules.base import (
    Schedule,
    check_increasing_steps,
    check_non_negative,
    fail,
    register,
)


@register
class PiecewiseConstant(Schedule):
    """Piecewise-constant rates, with Keras' boundary convention (steps).

    ```python
    # values[i] holds while boundaries[i-1] < step <= boundaries[i]
    lr = values[sum(step > b for b in boundaries)]
    ```

    So `values[0]` is used up to and including step `boundaries[0]`, as in Keras'
    `PiecewiseConstantDecay`. PyTorch's `MultiStepLR` switches one step earlier
    (at `step >= milestone`).

    Args:
        boundaries: strictly increasing steps, >= 0.
        values: rates, one more than `boundaries`, each >= 0.
    """

    lengths = ("boundaries",)

    def __init__(self, boundaries, values):
        self.boundaries = check_increasing_steps("boundaries", boundaries)
        if not isinstance(values, (list, tuple)) or len(values) != len(self.boundaries) + 1:
            fail(
                "values",
                f"a list of {len(self.boundaries) + 1} rates (one more than "
                f"`boundaries`, which has {len(self.boundaries)})",
                values,
            )
        self.values = [check_non_negative("values", v) for v in values]

    def value(self, step):
        if not self.boundaries:
            return ops.zeros_like(step) + self.values[0]
        edges = ops.convert_to_tensor([float(b) for b in self.boundaries], "float32")
        index = ops.sum(ops.cast(ops.greater(step, edges), "int32"))
        return ops.take(ops.convert_to_tensor(self.values, "float32"), index)
