"""The `callbacks` config group (conf/callbacks/): the optional callbacks of a training run.

Each entry of the group is a spec, instantiated by `trainer.experiment.build` before any
data loads (so a bad length fails there, naming its key), that makes its Keras callback for
a run with `make(run)`, or None where its setting is off. `run` is the `RunContext` that
`trainer.train` opens: the writer, the data, where the run stands. Adding a callback is a
spec (here or anywhere importable) and one YAML; `callbacks=[...]` picks them.

Not in the group, because the run is built around them: the per-step recorder, the
divergence stop (the recorder watches every step for it, and neither checkpoint saves a
diverged model), the Ctrl-C/SIGTERM stop, and plateau reduction (part of the schedule it
scales: `plateau=reduce`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainer.config.lengths import to_steps


class RunLength:
    """Steps per epoch and in all (None before a download tells them), for lengths in `ep`
    and `dur`. (A plain class, not a dataclass: Hydra would turn a dataclass argument of
    `instantiate` into a config node.)"""

    __slots__ = ("run_steps", "steps_per_epoch")

    def __init__(self, steps_per_epoch, run_steps):
        self.steps_per_epoch, self.run_steps = steps_per_epoch, run_steps

    def __eq__(self, other):
        return isinstance(other, RunLength) and (self.steps_per_epoch, self.run_steps) == (
            other.steps_per_epoch,
            other.run_steps,
        )

    def __hash__(self):
        return hash((self.steps_per_epoch, self.run_steps))

    def __repr__(self):
        return f"RunLength({self.steps_per_epoch} steps/epoch, {self.run_steps} steps)"

    def steps(self, key, value):
        """`value` (steps, "2ep", "0.1dur") in steps; None stays None."""
        if value is None or self.steps_per_epoch is None:
            return value
        return to_steps(key, value, self.steps_per_epoch, self.run_steps)


@dataclass
class RunContext:
    """What a spec may use to make its callback: the run's writer and data, its folder, the
    step it starts at, its length, the divergence stop, the models it keeps, and the
    stateful callbacks a resume checkpoint saves (filled once all are made)."""

    writer: object
    data: object
    run_dir: Path
    start_step: int
    length: RunLength
    eval_batch_size: int
    divergence: object
    kept: object
    resume_meta: dict
    before_save: object
    parts: dict = field(default_factory=dict)


class TestCurve:
    """`trainer.test_every`: the test set's accuracy and loss every so often (steps or a
    length with its unit), logged at the step; None: off."""

    __test__ = False  # a class named Test*, not a test

    def __init__(self, every, length: RunLength):
        self.every = length.steps("trainer.test_every", every)

    def make(self, run):
        if self.every is None:
            return None
        from trainer.callbacks import TestCurve

        return TestCurve(
            run.data.x_test,
            run.data.y_test,
            self.every,
            run.eval_batch_size,
            run.writer,
            run.length.run_steps,
            run.start_step,
        )


class EpochMetrics:
    """Each epoch's Keras metrics as `epoch/*`, with its duration and speed."""

    def __init__(self, length: RunLength):
        pass

    def make(self, run):
        from trainer.callbacks import EpochMetrics

        return EpochMetrics(run.writer)


class BestCheckpoint:
    """`trainer.checkpoint`: the best-val_loss model as `best.keras` (runs that keep all
    their models: not a sweep's trials)."""

    def __init__(self, enabled, length: RunLength):
        self.enabled = enabled

    def make(self, run):
        if not (self.enabled and run.kept.best_epoch):
            return None
        from trainer.callbacks import BestCheckpoint

        return BestCheckpoint(run.run_dir / "best.keras", run.divergence)


class EarlyStopping:
    """`trainer.early_stopping_patience`: stop after that many epochs without a lower
    val_loss, and keep the best weights; None: off."""

    def __init__(self, patience, length: RunLength):
        self.patience = patience

    def make(self, run):
        if self.patience is None:
            return None
        from trainer.callbacks import EarlyStop

        return EarlyStop(monitor="val_loss", patience=self.patience, restore_best_weights=True)


class ResumeCheckpoint:
    """`trainer.checkpoint_every`: the whole training state for `trainer.resume`, every so
    often (steps or a length); None: never. It saves after the other callbacks' epoch end
    (the run puts it last) and holds their state (`run.parts`)."""

    def __init__(self, every, length: RunLength):
        self.every = length.steps("trainer.checkpoint_every", every)
        self.steps_per_epoch = length.steps_per_epoch

    def make(self, run):
        if self.every is None:
            return None
        from trainer import resume
        from trainer.callbacks import ResumeCheckpoint

        return ResumeCheckpoint(
            resume.path_in(run.run_dir),
            self.every,
            run.parts,
            run.before_save,
            run.resume_meta,
            healthy=lambda: run.divergence.step is None,
            start_step=run.start_step,
        )
