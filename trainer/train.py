"""One training run from a composed config: data, model, schedule, fit, test, track."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from metrics import MeanIoU
from trainer import export, resume, stopping
from trainer.backends import crossentropy_ceiling
from trainer.batches import EpochBatches, batches
from trainer.callback_group import RunContext
from trainer.callbacks import (
    EarlyStop,
    ResumeCheckpoint,
    StopOnDivergence,
    StopOnInterrupt,
    TestCurve,
    TrainingInterrupted,
    ValidateAtEvaluationWeights,
)
from trainer.optimizers import evaluation_weights
from trainer.recording import StepBuffer, recording
from trainer.report import plot_lr_and_loss, write_iou_table
from trainer.stopping import TrainingDiverged
from trainer.tracking import metadata
from trainer.tracking.recorder import StepRecorder
from trainer.tracking.run import TrackedRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """An experiment's data, loaded, and what the run says about itself from it."""

    data: object  # trainer.data.Splits
    names: dict  # {"model": "cnn", ...}, for names
    tags: dict

    @classmethod
    def load(cls, experiment):
        cfg = experiment.cfg
        data = experiment.dataset.load()
        names = metadata.run_names(cfg, experiment.choices, experiment.dataset.name)
        return cls(data, names, metadata.tags(cfg, names, data, experiment.task.name))


def train(experiment, loaded=None, extra_tags=None, child_runs=(), ending=None) -> dict:
    """Train, evaluate on the test set, and return the final metrics.

    Args:
        experiment: the built run (`trainer.experiment.build`).
        loaded: its data, if already loaded (`Loaded.load`).
        extra_tags: more MLflow tags (the range test that chose an `auto` rate, say).
        child_runs: refs of runs to show as children of this run (that range test's
            `TrackedRun.refs`).
        ending: a `trainer.tracking.run.Ending` the run fills as it closes, for the caller
            (how it ended, its refs), whether it returns or raises.

    Returns the final metrics, with `trained_steps`, `run_name` and the sinks' `refs`.
    """
    loaded = loaded or Loaded.load(experiment)
    data = loaded.data
    if experiment.optimizer is None:  # its length needed the downloaded data
        experiment = experiment.with_schedule(len(data.x_train) + len(data.x_val))
    t, run_dir = experiment.settings, Path(experiment.cfg.output_dir)
    model, buffer, mean_iou = _compiled(experiment)
    groups = (*metadata.TRAINING_GROUPS, "lr_find") if child_runs else metadata.TRAINING_GROUPS
    opened = metadata.opening(experiment, loaded, "train", groups, run_dir, child_runs, extra_tags)
    log.info(
        "%s: %d epochs of %d steps (batch %d), %r",
        opened.name,
        t.epochs,
        experiment.length.steps_per_epoch,
        t.batch_size,
        experiment.schedule,
    )
    strict = experiment.cfg.tracking.strict
    with TrackedRun(
        experiment.sinks, strict, opened.info, opened.params, opened.tags, ending=ending
    ) as run:
        parts = _Callbacks(experiment, run, buffer, data, run_dir)
        _save_config(run, experiment.cfg, run_dir)
        if experiment.resume_from:
            _restore(model, experiment.resume_from, parts, data, run_dir, opened.name)
        history = {}
        try:
            history = _fit(model, experiment, data, parts.start_step, parts.all)
        except TrainingInterrupted:
            pass  # parts.interrupt.requested: below, once every step is with the sinks
        finally:
            # Whatever ended training, every step trained so far reaches the sinks.
            parts.recorder.drain()
            run.writer.flush()
            _log_curves(run, run_dir, opened.name)
        if parts.interrupt.requested:
            _interrupted(run, model, parts, experiment.length.run_steps, opened.description)
        if parts.divergence.step is not None:
            _diverged(run, parts.divergence, opened.name, opened.description)

        steps = parts.recorder.recorded
        with evaluation_weights(model):  # schedule-free: the average x, tested and kept
            final = _evaluate(model, mean_iou, data, t.eval_batch_size, history)
            run.writer.scalars(final, steps)  # at the number of steps trained
            if parts.curve is not None:  # what the test curve cost, for a benchmark
                run.writer.scalars({"time/test_curve_s": parts.curve.seconds}, steps)
            _keep(run, model, experiment, run_dir, data, mean_iou, steps)
        run.writer.tags(metadata.finished_note(opened.description, final["test/accuracy"], steps))
        final["trained_steps"] = steps
        resume.remove(run_dir)  # a finished run has nothing to resume
        log.info("%s: %s", opened.name, _shown(final))
        return {
            **final,
            "run_name": opened.name,
            "refs": run.refs,
            "models": experiment.kept.policy,
        }


def _compiled(experiment):
    """The experiment's model in a `RecordingModel` that writes each step's row into a
    device buffer, compiled with its optimizer: (model, buffer, the MeanIoU metric)."""
    import keras

    t, classes = experiment.settings, experiment.dataset.num_classes
    rows = StepRecorder.capacity(experiment.cfg.tracking.flush_every_steps, t.steps_per_execution)
    buffer, mean_iou = StepBuffer(rows, classes), MeanIoU(classes)
    loss = keras.losses.SparseCategoricalCrossentropy()
    model = recording(experiment.model, buffer, mean_iou, loss)
    model.compile(
        optimizer=experiment.optimizer,
        loss=loss,
        metrics=["accuracy", mean_iou],
        steps_per_execution=t.steps_per_execution,
        jit_compile=t.jit_compile,
    )
    # Built now rather than inside the first traced step (TensorFlow builds it there): the
    # recorded rate of a parameter-free optimizer reads its estimate before the update.
    model.optimizer.build(model.trainable_variables)
    return model, buffer, mean_iou


class _Callbacks:
    """A run's callbacks, in the order they must see each step: the per-step recorder, the
    divergence stop, the caller's, each spec of the `callbacks` group, plateau reduction's,
    the resume checkpoint (after every other epoch end, so that it saves their state), and
    the Ctrl-C/SIGTERM stop (its step end raises: every other callback saw the step)."""

    def __init__(self, experiment, run, buffer, data, run_dir):
        t, saved = experiment.settings, experiment.resume_from
        self.start_step = saved[0]["step"] if saved else 0
        self.divergence = StopOnDivergence(t.divergence_factor, crossentropy_ceiling())
        flush_every = experiment.cfg.tracking.flush_every_steps
        self.recorder = StepRecorder(buffer, run.writer, flush_every, watchers=[self.divergence])
        self.recorder.recorded = self.start_step
        self.interrupt = StopOnInterrupt()

        def before_save(step):  # every step trained is in the stores before a checkpoint
            self.recorder.drain(step)
            run.writer.flush()

        context = RunContext(
            writer=run.writer,
            data=data,
            run_dir=run_dir,
            start_step=self.start_step,
            length=experiment.length,
            eval_batch_size=t.eval_batch_size,
            divergence=self.divergence,
            kept=experiment.kept,
            resume_meta={"refs": run.refs, "config": resume.comparable(experiment.cfg)},
            before_save=before_save,
        )
        chosen = [made for spec in experiment.callbacks if (made := spec.make(context))]
        saver = [cb for cb in chosen if isinstance(cb, ResumeCheckpoint)]
        self.all = [
            self.recorder,
            self.divergence,
            ValidateAtEvaluationWeights(),
            *experiment.extra_callbacks,  # a benchmark's epoch timer: before any saving
            *(cb for cb in chosen if cb not in saver),
            *experiment.schedule_callbacks,
            *saver,  # it saves the state the others have at the end of an epoch
        ]
        # Stateful callbacks, saved with the model in a checkpoint for trainer.resume.
        self.parts = context.parts
        self.parts.update({type(cb).__name__: cb for cb in self.all if hasattr(cb, "state")})
        self.all.append(self.interrupt)
        self.saver = _first(self.all, ResumeCheckpoint)
        self.curve = _first(self.all, TestCurve)


def _save_config(run, cfg, run_dir):
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    run.writer.artifacts([run_dir / "config.yaml"])


def _restore(model, saved, callbacks, data, run_dir, run_name):
    """The model's, optimizer's, metrics' and callbacks' state from the resume checkpoint."""
    # Keras creates the optimizer's and metrics' variables at the first step; this is what
    # fit itself calls to create them without training. Public ways cover the optimizer
    # alone (`optimizer.build`, keras-team/keras#19389), not the compiled metrics, whose
    # state the checkpoint restores too.
    model._symbolic_build(data_batch=(data.x_train[:1], data.y_train[:1]))
    checkpoint = resume.path_in(run_dir)
    resume.restore(model, *saved, callbacks.parts, checkpoint)
    log.info("%s: resumed at step %d from %s", run_name, callbacks.start_step, checkpoint)


def _shown(final):
    return ", ".join(
        f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4f}"
        for k, v in final.items()
        if not k.startswith("test/iou_class")
    )


def _first(callbacks, kind):
    return next((cb for cb in callbacks if isinstance(cb, kind)), None)


def _evaluate(model, mean_iou, data, batch_size, history):
    """The test set's metrics and per-class IoU, and the last epoch's validation metrics
    (what `optimized_metric` chooses by by default; also logged per epoch as epoch/val_*)."""
    results = model.evaluate(
        batches(data.x_test, data.y_test, batch_size), return_dict=True, verbose=0
    )
    ious = mean_iou.per_class()  # the test set's confusion matrix, from evaluate
    final = {f"test/{k}": float(v) for k, v in results.items()}
    final.update({f"test/iou_class_{k}": float(v) for k, v in enumerate(ious) if not np.isnan(v)})
    last = {k: v[-1] for k, v in history.items() if v}
    final.update({f"val/{k[4:]}": float(v) for k, v in last.items() if k.startswith("val_")})
    return final


def _keep(run, model, experiment, run_dir, data, mean_iou, step):
    """The per-class IoU table, and the models the experiment keeps (`kept`), in the run
    folder and the sinks."""
    kept, names = experiment.kept, experiment.dataset.class_names
    write_iou_table(run_dir / "iou_per_class.csv", mean_iou.per_class(), names)
    artifacts = [run_dir / "iou_per_class.csv"]
    if kept.final:  # with "best", the sweep keeps it if this trial wins
        _save_model(model, data.x_test[:5], run_dir, mlflow=run.run_id is not None)
    if kept.logged:
        mlflow_dir = run_dir / export.FOLDER
        run.writer.model(
            "model", run_dir / "model.keras", mlflow_dir if mlflow_dir.exists() else None, step
        )
        if (run_dir / "best.keras").exists():
            artifacts.append(run_dir / "best.keras")
    run.writer.artifacts(artifacts)


def _save_model(model, example, run_dir, mlflow):
    """`model.keras` in the run folder and, for an MLflow sink to log as an MLflow model
    (`mlflow`), the same model in MLflow's format beside it (`mlflow_model/`)."""
    model.save(run_dir / "model.keras")
    if mlflow:
        export.mlflow_format(model, example, run_dir / export.FOLDER)


def _fit(model, experiment, data, start_step, callbacks):
    """Train from `start_step` to the end (see `_parts`); returns Keras' history, joined."""
    t, steps_per_epoch = experiment.settings, experiment.length.steps_per_epoch
    epochs = EpochBatches(data.x_train, data.y_train, t.batch_size, steps_per_epoch, t.seed)
    val_ds = batches(data.x_val, data.y_val, t.eval_batch_size) if len(data.x_val) else None
    early = _first(callbacks, EarlyStop)
    history = {}
    parts_of_run = _parts(start_step, steps_per_epoch, t.epochs)
    for i, (first_epoch, last_epoch, skip) in enumerate(parts_of_run):
        if early is not None:
            early.last_part = i == len(parts_of_run) - 1
            if i:
                early.restore(early.state())  # Keras' on_train_begin resets it
        fitted = model.fit(
            epochs.dataset(skip),
            validation_data=val_ds,
            initial_epoch=first_epoch,
            epochs=last_epoch,
            callbacks=[epochs.callback, *callbacks],
            shuffle=False,  # the batches come shuffled by seed and epoch
            verbose=1 if sys.stdout.isatty() else 0,
        )
        for key, values in fitted.history.items():
            history.setdefault(key, []).extend(values)
        if model.stop_training:
            break
    return history


def _interrupted(run, model, callbacks, run_steps, description):
    """After a Ctrl-C, SIGTERM or SIGHUP: a resume checkpoint at the step training stopped,
    the run's description, the command that continues it; then `stopping.Stopped` (a
    KeyboardInterrupt: the run ends KILLED)."""
    from trainer.tracking.run import command_line

    stopped, saver = stopping.Stopped(callbacks.interrupt.signum), callbacks.saver
    step = int(model.optimizer.iterations.numpy())
    how = "no checkpoint (trainer.checkpoint_every=null)"
    if saver is not None and saver.healthy():
        if saver.last != step or not saver.path.exists():
            saver.save(step)
        again = command_line(
            [a for a in sys.argv[1:] if not a.startswith(("hydra.run.dir=", "trainer.resume="))]
            + [f"hydra.run.dir={saver.path.parent.parent}", "trainer.resume=true"]
        )
        how = f"continue it with: {again}"
        log.warning("interrupted at step %d of %d; %s", step, run_steps, how)
    run.writer.tags(
        {
            "lrlab.interrupted_at_step": str(step),
            **metadata.interrupted_note(stopped.name, step, run_steps, how, description),
        }
    )
    raise stopped


def _diverged(run, divergence, run_name, description):
    """Mark the run FAILED with the step and rate where training diverged, and raise."""
    where = f"at step {divergence.step} (learning rate {divergence.rate:.4g})"
    run.failure = f"{divergence.reason} {where}"
    run.writer.tags(
        {
            "lrlab.failed_at_step": str(divergence.step),
            "lrlab.failed_at_lr": f"{divergence.rate:.6g}",
            "lrlab.failure": divergence.reason,
            **metadata.diverged_note(divergence.reason, where, description),
        }
    )
    raise TrainingDiverged(
        f"{run_name}: {divergence.reason} {where}; the run is marked FAILED (lower "
        "the learning rate, or raise trainer.divergence_factor; null stops on NaN only)."
    )


def _parts(start_step, steps_per_epoch, epochs):
    """The `fit` calls that train from `start_step` on: (first epoch, epoch to stop before,
    batches of the first epoch already trained). One for a new run; a run resumed mid-epoch
    first trains the rest of that epoch (Keras takes an epoch's length from its first), then
    the epochs after it."""
    epoch, into = divmod(start_step, steps_per_epoch)
    parts = []
    if into:
        parts.append((epoch, epoch + 1, into))
        epoch += 1
    if epoch < epochs:
        parts.append((epoch, epochs, 0))
    return parts


def _log_curves(run, run_dir, run_name):
    """lr_and_loss.png from the CSV sink's steps.csv (no CSV sink, no plot)."""
    csv_path = run.refs.get("csv", {}).get("path")
    if csv_path is None or not Path(csv_path).exists():
        log.info("no steps.csv (sink.csv is off, or no step was trained): no lr_and_loss.png")
        return
    try:
        run.writer.artifacts([plot_lr_and_loss(csv_path, run_dir / "lr_and_loss.png", run_name)])
    except Exception as err:  # a plot must never hide the training outcome
        log.error("could not plot the learning-rate curve: %s", err)
