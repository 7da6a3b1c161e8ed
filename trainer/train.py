"""One training run from a composed config: data, model, schedule, fit, test, track."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from metrics import MeanIoU
from trainer import export, resume, stopping
from trainer.callbacks import (
    BestCheckpoint,
    EarlyStop,
    EpochMetrics,
    ResumeCheckpoint,
    StopOnDivergence,
    StopOnInterrupt,
    TestCurve,
    TrainingInterrupted,
)
from trainer.config.build import from_config, instantiate_checked
from trainer.config.lengths import to_steps
from trainer.data import EpochBatches, batches
from trainer.recording import StepBuffer, recording
from trainer.report import plot_lr_and_loss, write_iou_table
from trainer.stopping import TrainingDiverged
from trainer.tracking import metadata
from trainer.tracking.recorder import StepRecorder
from trainer.tracking.run import TrackedRun
from trainer.tracking.sinks.base import RunInfo

log = logging.getLogger(__name__)


def run_length(t, train_samples, val_size):
    """(steps per epoch, total steps) of a run on `train_samples` less `val_size` samples."""
    steps_per_epoch = math.ceil((train_samples - val_size) / t.batch_size)
    if t.limit_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, t.limit_train_batches)
    return steps_per_epoch, t.epochs * steps_per_epoch


def check_objects(cfg, train_samples, build_schedule=True):
    """Build the schedule, optimizer and model once, before any data is loaded or run logged.

    Any bad key or value among them is a ConfigError naming it. `train_samples` (from the
    data files' headers) gives the run's length for `ep` and `dur`; None skips the schedule
    (its data must be downloaded first), as does `build_schedule=False` (an `auto` rate).
    """
    schedule = cfg.optimizer.learning_rate  # where the schedule is not built here
    if build_schedule and train_samples is not None:
        steps_per_epoch, run_steps = run_length(cfg.trainer, train_samples, cfg.dataset.val_size)
        schedule = from_config(cfg, steps_per_epoch=steps_per_epoch, run_steps=run_steps)
    if train_samples is not None:
        steps_per_epoch, steps = run_length(cfg.trainer, train_samples, cfg.dataset.val_size)
        for key in ("checkpoint_every", "test_every"):
            if cfg.trainer[key] is not None:
                to_steps(f"trainer.{key}", cfg.trainer[key], steps_per_epoch, steps)
    instantiate_checked("optimizer", cfg.optimizer, learning_rate=schedule)
    instantiate_checked("model", cfg.model)
    keras.backend.clear_session()


@dataclass(frozen=True)
class KeptModels:
    """Which models a run keeps, decided once from `trainer.models` (`policy`):

    - "all": the final `model.keras` and the best epoch's `best.keras` in the run folder, and
      the final model logged to MLflow as the run's model;
    - "best" (a sweep's trial, by default): the final `model.keras` only, which the sweep's
      summary keeps for its best trial and deletes for the others;
    - "none": no model file.
    """

    policy: str

    @classmethod
    def for_run(cls, setting, trial):
        """From the setting ("auto", "all", "best", "none") and whether the run is a trial."""
        if setting == "auto":
            return cls("best" if trial is not None else "all")
        if setting == "best" and trial is None:
            return cls("all")  # a single run is its own best
        return cls(setting)

    @property
    def best_epoch(self):
        return self.policy == "all"

    @property
    def final(self):
        return self.policy != "none"

    @property
    def logged(self):
        return self.policy == "all"


def prepare(cfg, choices, mode):
    """Seeded session, the dataset and its splits, the run's names and its tags."""
    keras.backend.clear_session()  # multirun jobs share the process
    keras.utils.set_random_seed(cfg.trainer.seed)
    dataset = instantiate(cfg.dataset)
    data = dataset.load()
    names = metadata.run_names(cfg, choices, dataset.name)
    return dataset, data, names, metadata.tags(cfg, names, data, mode)


def train(
    cfg: DictConfig,
    choices: dict | None = None,
    extra_callbacks=(),
    extra_tags=None,
    child_runs=(),
    trial=None,
    ending=None,
) -> dict:
    """Train, evaluate on the test set, and return the final metrics.

    Args:
        cfg: the composed config (`conf/train.yaml`).
        choices: the config group choices (`{"schedule": "sgdr", ...}`), for names and tags.
        extra_callbacks: more Keras callbacks for `fit` (the benchmark's timer, say).
        extra_tags: more MLflow tags (the range test that chose an `auto` rate, say).
        child_runs: refs of runs to show as children of this run (that range test's
            `TrackedRun.refs`).
        trial: the sweep trial this run is (`trainer.sweeps.trial.Trial`), or None.
        ending: a `trainer.tracking.run.Ending` the run fills as it closes, for the caller
            (how it ended, its refs), whether it returns or raises.

    Returns the final metrics, with `trained_steps`, `run_name` and the sinks' `refs`.
    """
    t = cfg.trainer
    dataset, data, names, tags = prepare(cfg, choices, "train")
    tags.update(extra_tags or {})
    steps_per_epoch, run_steps = run_length(t, len(data.x_train) + len(data.x_val), len(data.x_val))

    schedule_callbacks = []  # plateau reduction's, if configured
    schedule = from_config(
        cfg, steps_per_epoch=steps_per_epoch, run_steps=run_steps, callbacks=schedule_callbacks
    )
    optimizer = instantiate(cfg.optimizer, learning_rate=schedule)
    flush_every = cfg.tracking.flush_every_steps
    buffer = StepBuffer(
        StepRecorder.capacity(flush_every, t.steps_per_execution), dataset.num_classes
    )
    mean_iou = MeanIoU(dataset.num_classes)
    model = recording(instantiate(cfg.model), buffer, mean_iou)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", mean_iou],
        steps_per_execution=t.steps_per_execution,
        jit_compile=t.jit_compile,
    )

    run_name = metadata.run_name("train", names, trial)
    if trial is not None:
        tags.update(trial.tags())
    kept = KeptModels.for_run(t.models, trial)
    run_dir = Path(cfg.output_dir)
    log.info(
        "%s: %d epochs of %d steps (batch %d), %r",
        run_name,
        t.epochs,
        steps_per_epoch,
        t.batch_size,
        schedule,
    )

    groups = (*metadata.TRAINING_GROUPS, "lr_find") if child_runs else metadata.TRAINING_GROUPS
    checkpoint = resume.path_in(run_dir)
    start_step, saved = 0, None
    if t.resume:
        saved = resume.to_resume(cfg)
        start_step = saved[0]["step"]
        tags["lrlab.resumed_at_step"] = str(start_step)
    info = RunInfo(
        run_name,
        str(run_dir),
        inputs=metadata.dataset_inputs(dataset, data),
        children=tuple(child_runs),
        parent=trial.parent if trial is not None else None,
        resume=saved[0]["refs"] if saved else None,
    )
    params = metadata.params(cfg, groups)
    if trial is not None:
        params.update(trial.params())
    with TrackedRun(cfg.get("sink"), cfg.tracking.strict, info, params, tags, ending=ending) as run:
        divergence = StopOnDivergence(t.divergence_factor)
        recorder = StepRecorder(buffer, run.writer, flush_every, watchers=[divergence])
        recorder.recorded = start_step
        interrupt = StopOnInterrupt()
        callbacks = [recorder, divergence, EpochMetrics(run.writer), *extra_callbacks]
        curve = None
        if t.test_every is not None:
            every = to_steps("trainer.test_every", t.test_every, steps_per_epoch, run_steps)
            curve = TestCurve(
                data.x_test,
                data.y_test,
                every,
                t.eval_batch_size,
                run.writer,
                run_steps,
                start_step,
            )
            callbacks.append(curve)
        if t.checkpoint and kept.best_epoch:
            callbacks.append(BestCheckpoint(run_dir / "best.keras", divergence))
        early = None
        if t.early_stopping_patience is not None:
            early = EarlyStop(
                monitor="val_loss", patience=t.early_stopping_patience, restore_best_weights=True
            )
            callbacks.append(early)
        callbacks += schedule_callbacks
        # Stateful callbacks, saved with the model in a checkpoint for trainer.resume.
        parts = {type(cb).__name__: cb for cb in callbacks if hasattr(cb, "state")}
        saver = None
        if t.checkpoint_every is not None:
            every = to_steps(
                "trainer.checkpoint_every", t.checkpoint_every, steps_per_epoch, run_steps
            )
            saver = _resume_saver(cfg, run, recorder, divergence, parts, every, steps_per_epoch)
            callbacks.append(saver)  # after the others: it saves after every other epoch end
        callbacks.append(interrupt)  # its step end raises: every other callback saw the step
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        run.writer.artifacts([run_dir / "config.yaml"])
        if saved:
            # Keras creates the optimizer's and metrics' variables at the first step; this is
            # what fit itself calls to create them without training. Public ways cover the
            # optimizer alone (`optimizer.build`, keras-team/keras#19389), not the compiled
            # metrics, whose state the checkpoint restores too.
            model._symbolic_build(data_batch=(data.x_train[:1], data.y_train[:1]))
            resume.restore(model, *saved, parts, checkpoint)
            log.info("%s: resumed at step %d from %s", run_name, start_step, checkpoint)

        val_ds = batches(data.x_val, data.y_val, t.eval_batch_size) if len(data.x_val) else None
        epochs = EpochBatches(data.x_train, data.y_train, t.batch_size, steps_per_epoch, t.seed)
        history = {}
        try:
            history = _fit(model, epochs, val_ds, start_step, t.epochs, callbacks, early)
        except TrainingInterrupted:
            pass  # interrupt.requested: below, once every step is with the sinks
        finally:
            # Whatever ended training, every step trained so far reaches the sinks.
            recorder.drain()
            run.writer.flush()
            _log_curves(run, run_dir, run_name)
        if interrupt.requested:
            stopped = stopping.Stopped(interrupt.signum)
            _interrupted(run, model, saver, run_steps, metadata.describe(cfg, names), stopped)

        if divergence.step is not None:
            _diverged(run, divergence, run_name, metadata.describe(cfg, names))

        results = model.evaluate(
            batches(data.x_test, data.y_test, t.eval_batch_size), return_dict=True, verbose=0
        )
        ious = mean_iou.per_class()  # the test set's confusion matrix, from evaluate
        final = {f"test/{k}": float(v) for k, v in results.items()}
        final.update(
            {f"test/iou_class_{k}": float(v) for k, v in enumerate(ious) if not np.isnan(v)}
        )
        # The last epoch's validation metrics, what optimized_metric chooses by by default,
        # under that name too (also logged per epoch as epoch/val_*).
        last = {k: v[-1] for k, v in history.items() if v}
        final.update({f"val/{k[4:]}": float(v) for k, v in last.items() if k.startswith("val_")})
        run.writer.scalars(final, recorder.recorded)  # at the number of steps trained
        if curve is not None:  # what the test curve cost, for a benchmark to take out
            run.writer.scalars({"time/test_curve_s": curve.seconds}, recorder.recorded)
        write_iou_table(run_dir / "iou_per_class.csv", ious, dataset.class_names)
        artifacts = [run_dir / "iou_per_class.csv"]
        if kept.final:  # with "best", the sweep keeps it if this trial wins
            _save_model(model, data.x_test[:5], run_dir, mlflow=run.run_id is not None)
        if kept.logged:
            mlflow_dir = run_dir / export.FOLDER
            run.writer.model(
                "model",
                run_dir / "model.keras",
                mlflow_dir if mlflow_dir.exists() else None,
                recorder.recorded,
            )
            if (run_dir / "best.keras").exists():
                artifacts.append(run_dir / "best.keras")
        run.writer.artifacts(artifacts)
        run.writer.tags(
            {
                "mlflow.note.content": f"{metadata.describe(cfg, names)} Test accuracy "
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


def _save_model(model, example, run_dir, mlflow):
    """`model.keras` in the run folder and, for an MLflow sink to log as an MLflow model
    (`mlflow`), the same model in MLflow's format beside it (`mlflow_model/`)."""
    model.save(run_dir / "model.keras")
    if mlflow:
        export.mlflow_format(model, example, run_dir / export.FOLDER)


def _resume_saver(cfg, run, recorder, divergence, parts, every, steps_per_epoch):
    """The `trainer.resume` checkpoint callback: every step trained is in the stores before
    it saves, and a diverged model is never saved. It counts from the step the run starts
    at (`recorder.recorded`: a resumed run's first step)."""

    def before_save(step):
        recorder.drain(step)
        run.writer.flush()

    return ResumeCheckpoint(
        resume.path_in(Path(cfg.output_dir)),
        every,
        steps_per_epoch,
        parts,
        before_save,
        {"refs": run.refs, "config": resume.comparable(cfg)},
        healthy=lambda: divergence.step is None,
        start_step=recorder.recorded,
    )


def _fit(model, epochs, val_ds, start_step, total_epochs, callbacks, early):
    """Train from `start_step` to the end (see `_parts`); returns Keras' history, joined."""
    steps_per_epoch = epochs.steps_per_epoch
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
