"""One training run from a composed config: data, model, schedule, fit, test, track."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import keras
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from metrics import MeanIoU
from schedules import PlateauCallback, ReduceOnPlateau, build_schedule
from trainer.data import batches
from trainer.recording import StepBuffer, recording
from trainer.report import plot_lr_and_loss, write_iou_table
from trainer.tracking.recorder import StepRecorder
from trainer.tracking.run import TrackedRun, command_line, flatten, git_commit

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run is marked FAILED with the step."""


def train(cfg: DictConfig, choices: dict | None = None, extra_callbacks=()) -> dict:
    """Train, evaluate on the test set, and return the final metrics.

    Args:
        cfg: the composed config (`conf/train.yaml`).
        choices: the config group choices (`{"schedule": "sgdr", ...}`), for names and tags.
        extra_callbacks: more Keras callbacks for `fit` (the benchmark's timer, say).
    """
    t = cfg.trainer
    keras.backend.clear_session()  # multirun jobs share the process
    keras.utils.set_random_seed(t.seed)

    dataset = instantiate(cfg.dataset)
    data = dataset.load()
    steps_per_epoch = math.ceil(len(data.x_train) / t.batch_size)
    if t.limit_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, t.limit_train_batches)
    run_steps = t.epochs * steps_per_epoch

    schedule = build_schedule(
        cfg.schedule,
        cfg.get("warmup"),
        cfg.get("plateau"),
        steps_per_epoch=steps_per_epoch,
        run_steps=run_steps,
    )
    optimizer = instantiate(cfg.optimizer, learning_rate=schedule)
    flush_every = cfg.tracking.flush_every_steps
    # Room for 4 drain intervals and one chunk of steps (see StepRecorder).
    buffer = StepBuffer(4 * flush_every + t.steps_per_execution, dataset.num_classes)
    mean_iou = MeanIoU(dataset.num_classes)
    model = recording(instantiate(cfg.model), buffer, mean_iou)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", mean_iou],
        steps_per_execution=t.steps_per_execution,
        jit_compile=t.jit_compile,
    )

    choices = choices or {}
    names = {
        group: choices.get(group) or _target_name(cfg[group])
        for group in ("model", "dataset", "schedule", "optimizer")
    }
    names["dataset"] = dataset.name
    run_name = f"{names['model']}-{names['dataset']}-{names['schedule']}"
    commit, dirty = git_commit()
    tags = {
        "lrlab.model": names["model"],
        "lrlab.dataset": names["dataset"],
        "lrlab.schedule": names["schedule"],
        "lrlab.optimizer": names["optimizer"],
        "lrlab.command": command_line(),
        "lrlab.data_source": data.source,
        "lrlab.data_sha256": data.checksum,
        "lrlab.mode": "train",
        "mlflow.source.git.commit": commit,
        "lrlab.git_dirty": str(dirty).lower(),
    }
    run_dir = Path(cfg.output_dir)
    log.info(
        "%s: %d epochs of %d steps (batch %d), %r",
        run_name,
        t.epochs,
        steps_per_epoch,
        t.batch_size,
        schedule,
    )

    with TrackedRun(cfg.tracking, run_dir, run_name, flatten(cfg), tags) as run:
        recorder = StepRecorder(
            buffer,
            run.writer,
            flush_every,
            checkpoint_path=run_dir / "best.keras" if t.checkpoint else None,
        )
        callbacks = [recorder, *extra_callbacks]
        if t.early_stopping_patience is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss",
                    patience=t.early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        if isinstance(schedule, ReduceOnPlateau):
            callbacks.append(PlateauCallback(schedule))
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        run.log_artifact(run_dir / "config.yaml")

        train_ds = batches(
            data.x_train,
            data.y_train,
            t.batch_size,
            shuffle_seed=t.seed,
            limit=t.limit_train_batches,
        )
        val_ds = batches(data.x_val, data.y_val, t.eval_batch_size) if len(data.x_val) else None
        try:
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=t.epochs,
                callbacks=callbacks,
                shuffle=False,
                verbose=1 if sys.stdout.isatty() else 0,
            )
        finally:
            # Whatever ended training, every step trained so far reaches the sinks.
            recorder.drain()
            run.writer.flush()
            _log_curves(run, run_dir, run_name)

        if recorder.nan_step is not None:
            run.failure = f"non-finite loss at step {recorder.nan_step}"
            run.set_tags({"lrlab.failed_at_step": str(recorder.nan_step)})
            raise TrainingDiverged(
                f"{run_name}: the loss became non-finite at step "
                f"{recorder.nan_step}; the run is marked FAILED."
            )

        results = model.evaluate(
            batches(data.x_test, data.y_test, t.eval_batch_size), return_dict=True, verbose=0
        )
        ious = mean_iou.per_class()  # the test set's confusion matrix, from evaluate
        final = {f"test/{k}": float(v) for k, v in results.items()}
        final.update(
            {f"test/iou_class_{k}": float(v) for k, v in enumerate(ious) if not np.isnan(v)}
        )
        run.writer.scalars(final, run_steps)
        write_iou_table(run_dir / "iou_per_class.csv", ious, dataset.class_names)
        run.log_artifact(run_dir / "iou_per_class.csv")
        model.save(run_dir / "model.keras")
        run.log_artifact(run_dir / "model.keras")
        if t.checkpoint and (run_dir / "best.keras").exists():
            run.log_artifact(run_dir / "best.keras")
        final["trained_steps"] = recorder.recorded
        log.info(
            "%s: %s",
            run_name,
            ", ".join(
                f"{k}={v:.4f}" for k, v in final.items() if not k.startswith("test/iou_class")
            ),
        )
        return final


def _log_curves(run, run_dir, run_name):
    try:
        plot = plot_lr_and_loss(run_dir / "steps.csv", run_dir / "lr_and_loss.png", run_name)
        run.log_artifact(plot)
    except Exception as err:  # a plot must never hide the training outcome
        log.error("could not plot the learning-rate curve: %s", err)


def _target_name(node):
    target = node.get("_target_", "") if node is not None else ""
    return target.rsplit(".", 1)[-1].lower() or "unknown"
