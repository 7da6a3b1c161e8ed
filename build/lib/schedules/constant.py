"""A constant learning rate: the baseline every other schedule is compared with."""

from keras import ops

from schedules.base import Schedule, check_positive, register


@register
class Constant(Schedule):
    """`lr(step) = lr` for every step.

    Args:
        lr: the learning rate, > 0.
    """

    def __init__(self, lr):
        self.lr = check_positive("lr", lr)

    def value(self, step):
        return ops.zeros_like(step) + self.lr
