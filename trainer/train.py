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
from schedules import PlateauCallback, ReduceOnPlateau
from schedules.build import from_config
from trainer.data import batches
from trainer.recording import StepBuffer, recording
from trainer.report import plot_lr_and_loss, write_iou_table
from trainer.tracking.recorder import StepRecorder
from trainer.tracking.run import TrackedRun, command_line, flatten, git_commit

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run is marked FAILED with the step."""


def _prepare(cfg, choices, mode):
    """Seeded session, the dataset's splits, the run's names and its tags."""
    keras.backend.clear_session()  # multirun jobs share the process
    keras.utils.set_random_seed(cfg.trainer.seed)
    dataset = instantiate(cfg.dataset)
    data = dataset.load()
    choices = choices or {}
    names = {
        group: choices.get(group) or _target_name(cfg[group])
        for group in ("model", "dataset", "schedule", "optimizer")
    }
    names["dataset"] = dataset.name
    commit, dirty = git_commit()
    tags = {
        "lrlab.model": names["model"],
        "lrlab.dataset": names["dataset"],
        "lrlab.schedule": names["schedule"],
        "lrlab.optimizer": names["optimizer"],
        "lrlab.command": command_line(),
        "lrlab.data_source": data.source,
        "lrlab.data_sha256": data.checksum,
        "mode": mode,
        "mlflow.source.git.commit": commit,
        "lrlab.git_dirty": str(dirty).lower(),
    }
    return dataset, data, names, tags


def train(
    cfg: DictConfig, choices: dict | None = None, extra_callbacks=(), extra_tags=None
) -> dict:
    """Train, evaluate on the test set, and return the final metrics.

    Args:
        cfg: the composed config (`conf/train.yaml`).
        choices: the config group choices (`{"schedule": "sgdr", ...}`), for names and tags.
        extra_callbacks: more Keras callbacks for `fit` (the benchmark's timer, say).
        extra_tags: more MLflow tags (the range test that chose an `auto` rate, say).
    """
    t = cfg.trainer
    dataset, data, names, tags = _prepare(cfg, choices, "train")
    tags.update(extra_tags or {})
    steps_per_epoch = math.ceil(len(data.x_train) / t.batch_size)
    if t.limit_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, t.limit_train_batches)
    run_steps = t.epochs * steps_per_epoch

    schedule = from_config(cfg, steps_per_epoch=steps_per_epoch, run_steps=run_steps)
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

    run_name = f"{names['model']}-{names['dataset']}-{names['schedule']}"
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
        run.writer.scalars(final, recorder.recorded)  # at the number of steps trained
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


def find_lr(cfg: DictConfig, choices: dict | None = None, subfolder=None) -> dict:
    """Run the learning-rate range test as its own tracked run; returns the suggestions.

    Args:
        cfg: the composed config; `cfg.lr_find` holds the test's settings.
        choices: the config group choices, for names and tags.
        subfolder: put the run's files in this folder of `cfg.output_dir` (for `auto`).
    """
    from trainer.lr_find import plot, range_test

    t, f = cfg.trainer, cfg.lr_find
    dataset, data, names, tags = _prepare(cfg, choices, "lr_find")
    run_name = f"lr_find-{names['model']}-{names['dataset']}-{names['optimizer']}"
    run_dir = Path(cfg.output_dir) / (subfolder or "")
    params = flatten(
        {key: cfg[key] for key in ("dataset", "model", "optimizer", "trainer", "lr_find")}
    )
    with TrackedRun(cfg.tracking, run_dir, run_name, params, tags, step_csv=False) as run:
        result = range_test(
            instantiate(cfg.model),
            lambda lr: instantiate(cfg.optimizer, learning_rate=lr),
            batches(data.x_train, data.y_train, t.batch_size, shuffle_seed=t.seed),
            "sparse_categorical_crossentropy",
            dataset.num_classes,
            min_lr=f.min_lr,
            max_lr=f.max_lr,
            num_steps=f.num_steps,
            sweep=f.sweep,
            smoothing=f.smoothing,
            divergence_factor=f.divergence_factor,
        )
        for k, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            run.writer.scalars(
                {"lr_find/lr": lr, "lr_find/loss": loss, "lr_find/smoothed_loss": smoothed}, k
            )
        chosen = result.suggestions[f.suggestion]
        final = {
            "lr_find/suggested_lr": chosen,
            **{f"lr_find/suggested_lr_{rule}": v for rule, v in result.suggestions.items()},
            "lr_find/steps": float(len(result.lrs)),
        }
        run.writer.scalars({k: v for k, v in final.items() if math.isfinite(v)}, 0)
        np.savetxt(
            run_dir / "lr_find.csv",
            np.column_stack([result.lrs, result.losses, result.smoothed]),
            delimiter=",",
            header="lr,loss,smoothed_loss",
            comments="",
        )
        run.log_artifact(run_dir / "lr_find.csv")
        run.log_artifact(plot(result, run_dir / "lr_find.png", run_name, chosen=f.suggestion))
        run.set_tags({"lrlab.lr_find.stopped": result.stopped, "lrlab.lr_find.rule": f.suggestion})
        if not math.isfinite(chosen):
            run.failure = "no suggestion"
            raise ValueError(
                f"{run_name}: the range test gave no {f.suggestion!r} suggestion "
                f"({result.stopped} after {len(result.lrs)} steps); widen lr_find.min_lr.."
                "lr_find.max_lr or raise lr_find.num_steps."
            )
        log.info(
            "%s: suggested learning rate %.4g (%s); plot %s",
            run_name,
            chosen,
            f.suggestion,
            run_dir / "lr_find.png",
        )
        return {**final, "run_id": run.run_id, "stopped": result.stopped}


def _log_curves(run, run_dir, run_name):
    try:
        plot = plot_lr_and_loss(run_dir / "steps.csv", run_dir / "lr_and_loss.png", run_name)
        run.log_artifact(plot)
    except Exception as err:  # a plot must never hide the training outcome
        log.error("could not plot the learning-rate curve: %s", err)


def _target_name(node):
    target = node.get("_target_", "") if node is not None else ""
    return target.rsplit(".", 1)[-1].lower() or "unknown"
