"""Resume after a crash: a run's whole training state, saved atomically every
`trainer.checkpoint_every`, and loaded again by `trainer.resume=true`.

A checkpoint is one file, `resume/checkpoint.npz` in the run folder, holding

- every variable of the model, of its optimizer (with `iterations`, the step counter the
  schedule reads, so the rate goes on from where it was) and of its metrics (the epoch's
  running totals);
- the state of each stateful callback (`state()` / `restore(state)`): the divergence
  policy's first loss, the best checkpoint's best value, early stopping's counters and
  best weights, the plateau scale and its counters;
- the step, and the refs of the runs the sinks log to, so that a resumed run continues them.

The data position needs nothing more than the step: step k trains on a batch that is a pure
function of the seed and k (`trainer.batches.EpochBatches`). The models have no other
randomness (a layer with some, dropout say, keeps its seed state in a model variable).

It is written as `checkpoint.npz.tmp`, flushed to disk and renamed over the previous one, so
a crash while saving leaves the previous checkpoint whole. Before saving, every step trained
so far is handed to the sinks and flushed (`before_save`), so the stores hold every step
before the checkpoint: a resumed run re-trains from there and each sink skips the steps it
already holds.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from trainer.config.errors import ConfigError
from trainer.tracking.run import flatten

log = logging.getLogger(__name__)

FOLDER, FILE = "resume", "checkpoint.npz"


def path_in(run_dir):
    return Path(run_dir) / FOLDER / FILE


def remove(run_dir):
    """Delete a finished run's checkpoint (it has nothing to resume) and its folder."""
    checkpoint = path_in(run_dir)
    if checkpoint.exists():
        checkpoint.unlink()
        checkpoint.parent.rmdir()


def model_variables(model, step=None):
    """Every variable a checkpoint holds, by group, in Keras' own (stable) order.

    At step 0 the model's alone: the optimizer's and metrics' variables hold their initial
    values then (the optimizer's copies of the first weights come from the same seed), so
    the checkpoint a new run starts with stays the size of the model (an optimizer built
    before the first step, as lrlab builds it, would triple it for Adam)."""
    groups = {
        "model": list(model.trainable_variables) + list(model.non_trainable_variables),
        "optimizer": list(model.optimizer.variables),
        "metrics": list(model.metrics_variables),
    }
    return {"model": groups["model"]} if step == 0 else groups


def save(path, model, step, parts, meta):
    """Write the checkpoint of `model` at `step` with the `parts`' states and `meta` (JSON)."""
    from keras import ops

    arrays = {}
    for group, variables in model_variables(model, step).items():
        for i, variable in enumerate(variables):
            arrays[f"{group}/{i}"] = ops.convert_to_numpy(variable)
    states = {}
    for name, part in parts.items():
        state = part.state()
        for key, value in list(state.items()):
            if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
                for i, array in enumerate(value):
                    arrays[f"{name}/{key}/{i}"] = array
                state[key] = {"arrays": len(value)}
        states[name] = state
    arrays["json"] = np.array(json.dumps({"step": int(step), "parts": states, **meta}))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: the previous checkpoint or this one, never half of one
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def load(path):
    """(meta with "step" and "parts", arrays) of the checkpoint at `path`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("json")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(
            f"{path} is not a readable lrlab checkpoint ({type(err).__name__}: {err}); it is "
            "saved whole or not at all, so something else cut or changed it",
            fix="start the run afresh (trainer.resume=false, another hydra.run.dir)",
        ) from err
    return meta, arrays


def restore(model, meta, arrays, parts, path):
    """Assign the checkpoint's variables to `model` (built, with its optimizer and metrics)
    and hand each part its state.

    A checkpoint of step 0 (`ResumeCheckpoint` saves one as a new run starts) holds the
    model's variables only (`model_variables`)."""
    groups = model_variables(model, meta["step"])
    for group, variables in groups.items():
        saved = [key for key in arrays if key.startswith(f"{group}/")]
        if len(saved) != len(variables):
            raise ConfigError(
                f"{path} holds {len(saved)} {group} variables, this run has {len(variables)}: "
                "it was saved by another model, optimizer or metric set",
                fix="resume with the config the run started with (its config.yaml)",
            )
        for i, variable in enumerate(variables):
            value = arrays[f"{group}/{i}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ConfigError(
                    f"{path}: {group} variable {variable.path} has shape {value.shape} there, "
                    f"{tuple(variable.shape)} here",
                    fix="resume with the config the run started with (its config.yaml)",
                )
            variable.assign(value)
    for name, part in parts.items():
        state = dict(meta["parts"].get(name, {}))
        for key, value in list(state.items()):
            if isinstance(value, dict) and "arrays" in value:
                state[key] = [arrays[f"{name}/{key}/{i}"] for i in range(value["arrays"])]
        part.restore(state)


def comparable(cfg):
    """The settings a resumed run must share with the run it continues: all but where and
    how it is tracked, its folder, and `trainer.resume` itself."""
    where = ("tracking", "sink", "hydra", "output_dir")
    values = flatten(OmegaConf.masked_copy(cfg, [k for k in cfg if k not in where]))
    values.pop("trainer.resume", None)
    return values


def to_resume(cfg):
    """(meta, arrays) of the checkpoint `trainer.resume=true` continues from, checked
    against this config (`cfg.output_dir` is the run folder); a ConfigError naming the
    folder, or every setting that differs, otherwise."""
    checkpoint = path_in(cfg.output_dir)
    if not checkpoint.exists():
        folder = checkpoint.parent.parent
        what = (
            "a run that finished, or was stopped before its first checkpoint"
            if (folder / "config.yaml").exists()
            else "no run"
        )
        raise ConfigError(
            f"trainer.resume=true, but {folder} holds {what}: there is no {checkpoint}",
            fix="give the killed run's folder (hydra.run.dir=outputs/DATE/TIME), or start "
            "afresh without trainer.resume",
        )
    saved = load(checkpoint)
    before, now = saved[0]["config"], comparable(cfg)
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        shown = ", ".join(f"{k}={now.get(k)!r} (was {before.get(k)!r})" for k in changed[:5])
        raise ConfigError(
            f"trainer.resume=true continues the run in {checkpoint.parent.parent} with the same "
            f"settings, but {len(changed)} differ: {shown}",
            fix="give the same overrides as the killed run (its config.yaml), plus "
            "trainer.resume=true",
        )
    return saved
