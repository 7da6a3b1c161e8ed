"""Choice lists of schedule arguments that the apps check before TensorFlow loads.

Stated once: the schedule classes validate against these, and `trainer.checks` reads them
to answer a bad config key in under a second.
"""

# schedules.RangeTest's sweeps (and so the range test's `lr_find.sweep`).
RANGE_TEST_SWEEPS = ("exponential", "linear")
