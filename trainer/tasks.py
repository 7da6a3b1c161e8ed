"""What `python -m trainer` does with a built experiment: the `task` group (conf/task/).

A task is chosen by `task=<name>` (or `mode=<name>`, the same); adding one is a class here
(or anywhere importable) with `name`, `trains` and `run(experiment)`, plus one YAML naming
it. Nothing heavy is imported until a task runs: the config checks instantiate it first.
"""

from __future__ import annotations


class Task:
    """A task: `run(experiment)` returns the run's final metrics as a dict."""

    name = "task"
    trains = False  # whether it trains the configured schedule (and returns val/test metrics)

    def run(self, experiment, ending=None):
        """`ending` (a `trainer.tracking.run.Ending`) learns how the run ended."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Train(Task):
    """Train with the schedule, evaluate on the test set. A schedule key set to `auto` runs
    the range test first and trains with its suggestion (`trainer.lr_find`)."""

    name = "train"
    trains = True

    def run(self, experiment, ending=None):
        from trainer import lr_find
        from trainer.train import train

        if experiment.auto_keys:
            return lr_find.train_at_suggestion(experiment, ending=ending)
        return train(experiment, ending=ending)


class LrFind(Task):
    """The learning-rate range test as its own run (`lr_find.*`)."""

    name = "lr_find"

    def run(self, experiment, ending=None):
        from trainer import lr_find

        return lr_find.find_lr(experiment, ending=ending)
