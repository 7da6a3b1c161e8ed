"""From a composed `schedule` config (plus optional `warmup` and `plateau`) to a schedule.

Schedule classes take steps. Configs may give any length in epochs instead, under the
key's `_epochs` twin (`decay_epochs` for `decay_steps`, `step_epochs` for `step_size`,
...); they are converted here with the run's steps per epoch, before instantiation. A
run-length key left null (`total_steps`, `decay_steps`) means "the rest of the run".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# `<x>_epochs` config key -> the constructor argument it stands for.
EPOCH_KEYS = {
    "decay_epochs": "decay_steps",
    "step_epochs": "step_size",
    "boundaries_epochs": "boundaries",
    "first_cycle_epochs": "first_cycle_steps",
    "reduction_epochs": "reduction_steps",
    "warmup_epochs": "warmup_steps",
    "total_epochs": "total_steps",
}
# Lengths that default to the rest of the run when neither twin is given.
RUN_LENGTH_KEYS = ("total_steps", "decay_steps")


def _is_set(value):
    return value is not None and value != []


def to_steps(cfg, steps_per_epoch=None, run_steps=None, path="schedule"):
    """A plain-dict copy of `cfg` with every `_epochs` key turned into its steps twin.

    `steps_per_epoch` converts epochs; `run_steps` (the length of the run this schedule
    drives) fills null run-length keys at the top level. Nested schedules (in a
    `sequence`) must give their lengths.
    """
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    out = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            value = to_steps(value, steps_per_epoch, None, f"{path}.{key}")
        elif isinstance(value, list):
            value = [
                to_steps(v, steps_per_epoch, None, f"{path}.{key}[{i}]")
                if isinstance(v, Mapping)
                else v
                for i, v in enumerate(value)
            ]
        if key.endswith("_epochs") and key in EPOCH_KEYS:
            continue  # handled below, next to its twin
        out[key] = value

    for epochs_key, steps_key in EPOCH_KEYS.items():
        if epochs_key not in cfg:
            continue
        epochs = cfg[epochs_key]
        if not _is_set(epochs):
            continue
        if _is_set(cfg.get(steps_key)):
            raise ValueError(
                f"{path}: give either {steps_key} or {epochs_key}, not both "
                f"(received {steps_key}={cfg[steps_key]!r}, {epochs_key}={epochs!r}); "
                f"set the other to null, e.g. {path}.{steps_key}=null."
            )
        if not steps_per_epoch:
            raise ValueError(
                f"{path}.{epochs_key}={epochs!r} is in epochs, but the number of steps per "
                "epoch is not known here; give "
                f"{path}.{steps_key} in steps instead (or set preview.steps_per_epoch)."
            )
        out[steps_key] = _epochs_to_steps(f"{path}.{epochs_key}", epochs, steps_per_epoch)
        log.info(
            "%s.%s=%s -> %s=%s (%s steps per epoch)",
            path,
            epochs_key,
            epochs,
            steps_key,
            out[steps_key],
            steps_per_epoch,
        )

    if run_steps is not None:
        warmup = out.get("warmup_steps") or 0
        for key in RUN_LENGTH_KEYS:
            if key in out and out[key] is None:
                out[key] = run_steps - warmup
                log.info("%s.%s=null -> %s (the rest of the run)", path, key, out[key])
    return out


def _epochs_to_steps(key, epochs, steps_per_epoch):
    if isinstance(epochs, list):
        return [_epochs_to_steps(key, e, steps_per_epoch) for e in epochs]
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)):
        raise ValueError(f"{key} must be a number of epochs. Received: {epochs!r}")
    return round(epochs * steps_per_epoch)


def build_schedule(schedule, warmup=None, plateau=None, steps_per_epoch=None, run_steps=None):
    """Instantiate the configured schedule, wrapped in warmup and plateau reduction if given.

    Args:
        schedule: the `schedule` config node (with `_target_`).
        warmup: the `warmup` config node or None.
        plateau: the `plateau` config node or None.
        steps_per_epoch: converts `_epochs` keys; None if unknown.
        run_steps: total optimizer steps of the run; fills null run lengths.
    """
    warmup_cfg = to_steps(warmup, steps_per_epoch, None, "warmup") if warmup else None
    inner_steps = run_steps
    if warmup_cfg and run_steps is not None:
        inner_steps = run_steps - (warmup_cfg.get("warmup_steps") or 0)
    built = _instantiate("schedule", to_steps(schedule, steps_per_epoch, inner_steps))
    if warmup_cfg:
        built = _instantiate("warmup", warmup_cfg, schedule=built)
    if plateau:
        built = _instantiate("plateau", to_steps(plateau, None, None, "plateau"), schedule=built)
    return built


def from_config(cfg, steps_per_epoch=None, run_steps=None):
    """`build_schedule` from a composed app config: its `schedule`, `warmup` and `plateau`."""
    return build_schedule(
        cfg.schedule,
        cfg.get("warmup"),
        cfg.get("plateau"),
        steps_per_epoch=steps_per_epoch,
        run_steps=run_steps,
    )


def _instantiate(group, cfg, **kwargs):
    if "_target_" not in cfg:
        raise ValueError(f"{group}: the config has no `_target_`; pick one with {group}=<name>.")
    _check_keys(group, cfg, kwargs)
    try:
        return instantiate(cfg, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ValueError(f"{group} ({cfg['_target_']}): {cause}") from err


def _check_keys(group, cfg, given):
    """Name the keys the target does not take (a preset's keys after switching schedule, say)."""
    import inspect

    from hydra.utils import get_class

    try:
        params = inspect.signature(get_class(cfg["_target_"]).__init__).parameters
    except Exception:  # an unimportable target: Hydra's own error says which
        return
    accepted = [name for name in params if name != "self" and name not in given]
    unknown = [key for key in cfg if not key.startswith("_") and key not in params]
    if unknown:
        fix = " ".join(f"~{group}.{key}" for key in unknown)
        raise ValueError(
            f"{group} ({cfg['_target_']}) has no key {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(accepted)}. If a preset or an override set it for another {group}, "
            f"remove it with: {fix}"
        )
