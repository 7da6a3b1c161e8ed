"""What a run says about itself in MLflow: its names, params, tags, dataset inputs and
description (`opening`), and every note (`mlflow.note.content`) a run or sweep ends with.

Params are what a user compares across runs (the resolved group keys); where and how an
object was built (`_target_` paths, folders) goes to tags or nowhere, so MLflow's compare
view opens on useful axes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from trainer.names import label
from trainer.tracking.run import command_line, flatten, git_commit, source_tags
from trainer.tracking.sinks.base import DatasetInput, RunInfo

# Group keys that say where or how an object is built, not what a user compares.
NOT_PARAMS = {"_target_", "dir", "folder", "keras_name", "class_names"}
TRAINING_GROUPS = ("dataset", "model", "optimizer", "schedule", "warmup", "plateau", "trainer")


NOTE = "mlflow.note.content"  # MLflow's run description


@dataclass(frozen=True)
class Opening:
    """What a run starts with: its name and one-sentence description, and what its sinks
    are started with (`info`, `params`, `tags`)."""

    name: str
    description: str
    info: RunInfo
    params: dict
    tags: dict


def opening(experiment, loaded, mode, groups, run_dir, children=(), extra_tags=None):
    """The `Opening` of an experiment's run of `mode` ("train", "lr_find") from its loaded
    data (`trainer.train.Loaded`): `groups` are logged as params; a sweep's trial adds its
    own tags and params and its parent; a resumed run continues its earlier self."""
    trial, saved = experiment.trial, experiment.resume_from if mode == "train" else None
    name = run_name(mode, loaded.names, trial)
    tags = {**loaded.tags, "mode": mode, **(extra_tags or {})}
    values = params(experiment.cfg, mode, groups)
    if trial is not None:
        tags.update(trial.tags())
        values.update(trial.params())
    if saved:
        tags["lrlab.resumed_at_step"] = str(saved[0]["step"])
    tags["lrlab.backend"] = experiment.backend.name  # the Keras backend, and why that one
    tags["lrlab.backend_reason"] = experiment.backend.reason
    values["backend"] = experiment.backend.name
    info = RunInfo(
        name,
        str(run_dir),
        inputs=dataset_inputs(experiment.dataset, loaded.data) if mode == "train" else (),
        children=tuple(children),
        parent=trial.parent if trial is not None else None,
        resume=saved[0]["refs"] if saved else None,
    )
    return Opening(name, describe(experiment.cfg, loaded.names), info, values, tags)


def finished_note(description, accuracy, steps):
    return {NOTE: f"{description} Test accuracy {accuracy:.2%} after {steps} steps."}


def interrupted_note(how_stopped, step, run_steps, how_to_continue, description):
    return {
        NOTE: f"Interrupted ({how_stopped}) after {step} of {run_steps} steps; "
        f"{how_to_continue}. {description}"
    }


def diverged_note(reason, where, description):
    return {NOTE: f"Diverged: {reason} {where}. {description}"}


def pruned_note(epoch, monitor, value):
    return {NOTE: f"Pruned by Optuna after epoch {epoch} ({monitor}={value})."}


def failed_trial_note(number, err):
    return {NOTE: f"Trial #{number} failed before training: {err}"}


def sweep_note(swept, task):
    return {NOTE: f"Sweep over {', '.join(swept) or 'nothing'}: {' '.join(task)}"}


def sweep_summary_note(summary, best_overrides):
    return {NOTE: f"{summary}. Best overrides: {' '.join(best_overrides)}"}


def run_names(cfg, choices, dataset_name):
    """{"model": "cnn", "dataset": "mnist", "schedule": ..., "optimizer": ...}, for names."""
    choices = choices or {}
    names = {
        group: choices.get(group) or _target_name(cfg[group])
        for group in ("model", "dataset", "schedule", "optimizer")
    }
    names["dataset"] = dataset_name
    return names


def run_name(mode, names, trial=None):
    """The MLflow run's name: a sweep's trial leads with its swept values (`Trial.run_name`);
    a single run ends with the time it started (`cnn-mnist-sgdr 12-07 14:03:27`), so that
    runs of the same setup are told apart in the runs list."""
    if trial is not None:
        return trial.run_name(label(mode, names))
    return f"{label(mode, names)} {time.strftime('%m-%d %H:%M:%S')}"


def params(cfg, mode, groups=TRAINING_GROUPS):
    """The resolved keys of `groups` and the task (`mode`: "train", "lr_find"), flattened
    for MLflow; not
    `trainer.resume`, which says how a process started, not what the run is (a resumed run
    logs the params of the run it continues, which MLflow lets no one change)."""
    values = {"mode": mode}
    for group in groups:
        node = cfg.get(group)
        if node is not None:
            values[group] = _without(OmegaConf.to_container(node, resolve=True))
    values = flatten(values)
    values.pop("trainer.resume", None)
    return values


def tags(cfg, names, data, mode):
    """What the run is and where it came from: names, command, data checksum, commit."""
    commit, dirty = git_commit()
    return {
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
        **{
            f"lrlab.target.{group}": str(cfg[group]._target_)
            for group in ("dataset", "model", "optimizer", "schedule", "warmup", "plateau")
            if cfg.get(group) is not None and "_target_" in cfg[group]
        },
    }


def dataset_inputs(dataset, data):
    """The splits as dataset inputs (MLflow's Dataset column), described without the arrays."""
    source = data.source if "://" in data.source else Path(data.source).resolve().as_uri()
    return tuple(
        DatasetInput(
            name=f"{dataset.name}-{split}",
            context=context,
            source=source,
            digest=data.checksum[:8],
            features_shape=tuple(x.shape),
            features_dtype=str(x.dtype),
            targets_shape=tuple(y.shape),
            targets_dtype=str(y.dtype),
        )
        for x, y, split, context in (
            (data.x_train, data.y_train, "train", "training"),
            (data.x_test, data.y_test, "test", "test"),
        )
    )


def describe(cfg, names):
    """One sentence for the run's description: what was trained, with what."""
    extras = [w for w in ("warmup", "plateau") if cfg.get(w) is not None]
    return (
        f"{names['model'].upper()} on {names['dataset']}, {names['optimizer']} at peak rate "
        f"{cfg.optimizer.learning_rate:g}, schedule {names['schedule']}"
        + (f" with {' and '.join(extras)}" if extras else "")
        + f", {cfg.trainer.epochs} epochs of batch {cfg.trainer.batch_size}."
    )


def _without(node):
    if isinstance(node, dict):
        return {k: _without(v) for k, v in node.items() if k not in NOT_PARAMS}
    if isinstance(node, list):
        return [_without(v) for v in node]
    return node


def _target_name(node):
    target = node.get("_target_", "") if node is not None else ""
    return target.rsplit(".", 1)[-1].lower() or "unknown"
