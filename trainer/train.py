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
from trainer.callback_group import RunContext
from trainer.callbacks import (
    EarlyStop,
    ResumeCheckpoint,
    StopOnDivergence,
    StopOnInterrupt,
    TestCurve,
    TrainingInterrupted,
)
from trainer.data import EpochBatches, batches
from trainer.recording import StepBuffer, recording
from trainer.report import plot_lr_and_loss, write_iou_table
from trainer.stopping import TrainingDiverged
from trainer.tracking import metadata
from trainer.tracking.recorder import StepRecorder
from trainer.tracking.run import TrackedRun
from trainer.tracking.sinks.base import RunInfo

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
    cfg, t, trial, kept = experiment.cfg, experiment.settings, experiment.trial, experiment.kept
    tags = {**loaded.tags, **(extra_tags or {})}
    length = experiment.length
    dataset = experiment.dataset

    flush_every = cfg.tracking.flush_every_steps
    buffer = StepBuffer(
        StepRecorder.capacity(flush_every, t.steps_per_execution), dataset.num_classes
    )
    mean_iou = MeanIoU(dataset.num_classes)
    model = recording(experiment.model, buffer, mean_iou)
    model.compile(
        optimizer=experiment.optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", mean_iou],
        steps_per_execution=t.steps_per_execution,
        jit_compile=t.jit_compile,
    )

    run_name = metadata.run_name("train", loaded.names, trial)
    description = metadata.describe(cfg, loaded.names)
    if trial is not None:
        tags.update(trial.tags())
    run_dir = Path(cfg.output_dir)
    log.info(
        "%s: %d epochs of %d steps (batch %d), %r",
        run_name,
        t.epochs,
        length.steps_per_epoch,
        t.batch_size,
        experiment.schedule,
    )

    groups = (*metadata.TRAINING_GROUPS, "lr_find") if child_runs else metadata.TRAINING_GROUPS
    checkpoint = resume.path_in(run_dir)
    saved = experiment.resume_from
    start_step = saved[0]["step"] if saved else 0
    if saved:
        tags["lrlab.resumed_at_step"] = str(start_step)
    info = RunInfo(
        run_name,
        str(run_dir),
        inputs=metadata.dataset_inputs(dataset, data),
        children=tuple(child_runs),
        parent=trial.parent if trial is not None else None,
        resume=saved[0]["refs"] if saved else None,
    )
    params = metadata.params(cfg, "train", groups)
    if trial is not None:
        params.update(trial.params())
    strict = cfg.tracking.strict
    with TrackedRun(experiment.sinks, strict, info, params, tags, ending=ending) as run:
        divergence = StopOnDivergence(t.divergence_factor)
        recorder = StepRecorder(buffer, run.writer, flush_every, watchers=[divergence])
        recorder.recorded = start_step
        interrupt = StopOnInterrupt()

        def before_save(step):  # every step trained is in the stores before a checkpoint
            recorder.drain(step)
            run.writer.flush()

        context = RunContext(
            writer=run.writer,
            data=data,
            run_dir=run_dir,
            start_step=start_step,
            length=length,
            eval_batch_size=t.eval_batch_size,
            divergence=divergence,
            kept=kept,
            resume_meta={"refs": run.refs, "config": resume.comparable(cfg)},
            before_save=before_save,
        )
        chosen = [made for spec in experiment.callbacks if (made := spec.make(context))]
        # The resume checkpoint saves after every other callback's epoch end.
        chosen.sort(key=lambda cb: isinstance(cb, ResumeCheckpoint))
        callbacks = [
            recorder,
            divergence,
            *chosen,
            *experiment.schedule_callbacks,
            *experiment.extra_callbacks,
        ]
        # Stateful callbacks, saved with the model in a checkpoint for trainer.resume.
        context.parts.update({type(cb).__name__: cb for cb in callbacks if hasattr(cb, "state")})
        callbacks.append(interrupt)  # its step end raises: every other callback saw the step
        saver = _first(callbacks, ResumeCheckpoint)
        curve = _first(callbacks, TestCurve)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        run.writer.artifacts([run_dir / "config.yaml"])
        if saved:
            # Keras creates the optimizer's and metrics' variables at the first step; this is
            # what fit itself calls to create them without training. Public ways cover the
            # optimizer alone (`optimizer.build`, keras-team/keras#19389), not the compiled
            # metrics, whose state the checkpoint restores too.
            model._symbolic_build(data_batch=(data.x_train[:1], data.y_train[:1]))
            resume.restore(model, *saved, context.parts, checkpoint)
            log.info("%s: resumed at step %d from %s", run_name, start_step, checkpoint)

        val_ds = batches(data.x_val, data.y_val, t.eval_batch_size) if len(data.x_val) else None
        epochs = EpochBatches(
            data.x_train, data.y_train, t.batch_size, length.steps_per_epoch, t.seed
        )
        history = {}
        try:
            history = _fit(model, epochs, val_ds, start_step, t.epochs, callbacks)
        except TrainingInterrupted:
            pass  # interrupt.requested: below, once every step is with the sinks
        finally:
            # Whatever ended training, every step trained so far reaches the sinks.
            recorder.drain()
            run.writer.flush()
            _log_curves(run, run_dir, run_name)
        if interrupt.requested:
            stopped = stopping.Stopped(interrupt.signum)
            _interrupted(run, model, saver, length.run_steps, description, stopped)

        if divergence.step is not None:
            _diverged(run, divergence, run_name, description)

        final = _evaluate(model, mean_iou, data, t.eval_batch_size, history)
        run.writer.scalars(final, recorder.recorded)  # at the number of steps trained
        if curve is not None:  # what the test curve cost, for a benchmark to take out
            run.writer.scalars({"time/test_curve_s": curve.seconds}, recorder.recorded)
        _keep(run, model, kept, run_dir, data, mean_iou, dataset, recorder.recorded)
        run.writer.tags(
            {
                "mlflow.note.content": f"{description} Test accuracy "
                f"{final['test/accuracy']:.2%} after {recorder.recorded} steps."
            }
        )
        final["trained_steps"] = recorder.recorded
        if checkpoint.exists():  # a finished run has nothing to resume
            checkpoint.unlink()
            checkpoint.parent.rmdir()
        log.info(
            "%s: %s",
            run_name,
            ", ".join(
                f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4f}"
                for k, v in final.items()
                if not k.startswith("test/iou_class")
            ),
        )
        return {**final, "run_name": run_name, "refs": run.refs, "models": kept.policy}


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


def _keep(run, model, kept, run_dir, data, mean_iou, dataset, step):
    """The per-class IoU table, and the models `kept` says to keep, in the run folder and
    the sinks."""
    write_iou_table(run_dir / "iou_per_class.csv", mean_iou.per_class(), dataset.class_names)
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


def _fit(model, epochs, val_ds, start_step, total_epochs, callbacks):
    """Train from `start_step` to the end (see `_parts`); returns Keras' history, joined."""
    steps_per_epoch = epochs.steps_per_epoch
    early = _first(callbacks, EarlyStop)
    history = {}
    parts_of_run = _parts(start_step, steps_per_epoch, total_epochs)
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


def _interrupted(run, model, saver, run_steps, description, stopped):
    """After a Ctrl-C, SIGTERM or SIGHUP: a resume checkpoint at the step training stopped,
    the run's description, the command that continues it; then `stopped` (a
    KeyboardInterrupt: the run ends KILLED)."""
    from trainer.tracking.run import command_line

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
            "mlflow.note.content": f"Interrupted ({stopped.name}) after {step} of {run_steps} "
            f"steps; {how}. {description}",
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
            "mlflow.note.content": f"Diverged: {divergence.reason} {where}. {description}",
        }
    )
    raise TrainingDiverged(
        f"{run_name}: {divergence.reason} {where}; the run is marked FAILED (lower "
        "the learning rate, or raise trainer.divergence_factor)."
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
