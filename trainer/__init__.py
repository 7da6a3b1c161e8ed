"""lrlab's trainer: `python -m trainer` trains a model with a schedule, tracked per step.

`run(cfg)` builds the run once (`trainer.experiment.build`: every check before TensorFlow
is imported, data is loaded or an MLflow run starts, so that bad input fails fast with a
`ConfigError` and leaves no run behind), then hands it to its task (`task=train`, the
default, or `task=lr_find`).
"""

import trainer.names  # noqa: F401  (registers ${run_label:...}, which conf/train.yaml uses)


def run(cfg, choices=None, extra_callbacks=(), trial=None, ending=None):
    """Train (or, with `task=lr_find`, run the range test) from a composed `conf/train.yaml`.

    A schedule key set to `auto` (`max_lr`, `initial_lr`) runs the range test first and
    trains with its suggestion; the range test's run becomes a child of the training run.
    `trial` (a `trainer.sweeps.trial.Trial`) makes the run a sweep's child run; `ending` (a
    `trainer.tracking.run.Ending`) says how the run ended, also when this raises.
    Returns the final metrics as a dict.
    """
    from trainer.experiment import build

    experiment = build(cfg, choices, trial=trial, extra_callbacks=extra_callbacks)
    return experiment.task.run(experiment, ending=ending)
