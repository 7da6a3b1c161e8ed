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
from schedules.build import check_keys, from_config
from schedules.errors import ConfigError
from trainer.data import batches
from trainer.recording import StepBuffer, recording
from trainer.report import plot_lr_and_loss, write_iou_table
from trainer.tracking.recorder import StepRecorder
from trainer.tracking.run import TrackedRun, command_line, flatten, git_commit, source_tags

log = logging.getLogger(__name__)

# Group keys that say where or how an object is built, not what a user compares: tags or
# nothing rather than params (they would open MLflow's compare view on useless axes).
NOT_PARAMS = {"_target_", "dir", "keras_name", "class_names"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or exploded; the run is marked FAILED with the step."""


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
    for group in ("optimizer", "model"):
        check_keys(group, OmegaConf.to_container(cfg[group], resolve=True))
    schedule = 1e-3
    if build_schedule and train_samples is not None:
        steps_per_epoch, run_steps = run_length(cfg.trainer, train_samples, cfg.dataset.val_size)
        schedule = from_config(cfg, steps_per_epoch=steps_per_epoch, run_steps=run_steps)
    for group, kwargs in (("optimizer", {"learning_rate": schedule}), ("model", {})):
        try:
            instantiate(cfg[group], **kwargs)
        except Exception as err:
            cause = err.__cause__ or err
            raise ConfigError(f"{group} ({cfg[group]._target_}): {cause}") from err
    keras.backend.clear_session()


def params(cfg, with_lr_find=False):
    """What a user compares across runs, as MLflow params: the resolved group keys."""
    groups = ["dataset", "model", "optimizer", "schedule", "warmup", "plateau", "trainer"]
    if with_lr_find:
        groups.append("lr_find")
    values = {"mode": cfg.mode}
    for group in groups:
        node = cfg.get(group)
        if node is not None:
            values[group] = _without(OmegaConf.to_container(node, resolve=True))
    return flatten(values)


def _without(node):
    if isinstance(node, dict):
        return {k: _without(v) for k, v in node.items() if k not in NOT_PARAMS}
    if isinstance(node, list):
        return [_without(v) for v in node]
    return node


def _targets(cfg):
    """`lrlab.target.<group>` tags: the classes the run was built from."""
    return {
        f"lrlab.target.{group}": str(cfg[group]._target_)
        for group in ("dataset", "model", "optimizer", "schedule", "warmup", "plateau")
        if cfg.get(group) is not None and "_target_" in cfg[group]
    }


def _inputs(dataset, data):
    """The splits as MLflow dataset inputs, so the runs table's Dataset column shows them."""
    import warnings

    import mlflow.data

    source = data.source if "://" in data.source else Path(data.source).resolve().as_uri()
    inputs = []
    with warnings.catch_warnings():
        # MLflow finds two equal local-file source classes for a file:// URI and says so.
        warnings.simplefilter("ignore", UserWarning)
        for x, y, split, context in (
            (data.x_train, data.y_train, "train", "training"),
            (data.x_test, data.y_test, "test", "test"),
        ):
            name = f"{dataset.name}-{split}"
            digest = data.checksum[:8]
            found = mlflow.data.from_numpy(x, targets=y, source=source, name=name, digest=digest)
            inputs.append((found, context))
    return inputs


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
        **source_tags(),
        **_targets(cfg),
    }
    return dataset, data, names, tags


def train(
    cfg: DictConfig,
    choices: dict | None = None,
    extra_callbacks=(),
    extra_tags=None,
    child_runs=(),
) -> dict:
    """Train, evaluate on the test set, and return the final metrics.

    Args:
        cfg: the composed config (`conf/train.yaml`).
        choices: the config group choices (`{"schedule": "sgdr", ...}`), for names and tags.
        extra_callbacks: more Keras callbacks for `fit` (the benchmark's timer, say).
        extra_tags: more MLflow tags (the range test that chose an `auto` rate, say).
        child_runs: MLflow run ids to show as children of this run (that range test).
    """
    t = cfg.trainer
    dataset, data, names, tags = _prepare(cfg, choices, "train")
    tags.update(extra_tags or {})
    steps_per_epoch, run_steps = run_length(t, len(data.x_train) + len(data.x_val), len(data.x_val))

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

    run_params = params(cfg, with_lr_find=bool(child_runs))
    inputs = _inputs(dataset, data) if cfg.tracking.mlflow else ()
    with TrackedRun(cfg.tracking, run_dir, run_name, run_params, tags, inputs=inputs) as run:
        for child in child_runs:
            run.adopt(child)
        recorder = StepRecorder(
            buffer,
            run.writer,
            flush_every,
            checkpoint_path=run_dir / "best.keras" if t.checkpoint else None,
            divergence_factor=t.divergence_factor,
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

        if recorder.diverged_step is not None:
            run.failure = f"{recorder.diverged} at step {recorder.diverged_step}"
            run.set_tags(
                {
                    "lrlab.failed_at_step": str(recorder.diverged_step),
                    "lrlab.failure": recorder.diverged,
                    "mlflow.note.content": f"Diverged: {recorder.diverged} at step "
                    f"{recorder.diverged_step}. {_describe(cfg, names)}",
                }
            )
            raise TrainingDiverged(
                f"{run_name}: {recorder.diverged} at step {recorder.diverged_step}; "
                "the run is marked FAILED (lower the learning rate, or raise "
                "trainer.divergence_factor)."
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
        run.set_tags(
            {
                "mlflow.note.content": f"{_describe(cfg, names)} Test accuracy "
                f"{final['test/accuracy']:.2%} after {recorder.recorded} steps."
            }
        )
        final["trained_steps"] = recorder.recorded
        log.info(
            "%s: %s",
            run_name,
            ", ".join(
                f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4f}"
                for k, v in final.items()
                if not k.startswith("test/iou_class")
            ),
        )
        return final


def _describe(cfg, names):
    """One sentence for the run's description: what was trained, with what."""
    extras = [w for w in ("warmup", "plateau") if cfg.get(w) is not None]
    return (
        f"{names['model'].upper()} on {names['dataset']}, {names['optimizer']} at peak rate "
        f"{cfg.optimizer.learning_rate:g}, schedule {names['schedule']}"
        + (f" with {' and '.join(extras)}" if extras else "")
        + f", {cfg.trainer.epochs} epochs of batch {cfg.trainer.batch_size}."
    )


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
    values = flatten(
        {
            key: _without(OmegaConf.to_container(cfg[key], resolve=True))
            for key in ("dataset", "model", "optimizer", "trainer", "lr_find")
        }
    )
    with TrackedRun(cfg.tracking, run_dir, run_name, values, tags, step_csv=False) as run:
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
