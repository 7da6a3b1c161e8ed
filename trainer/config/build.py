"""From a composed `schedule` config (plus optional `warmup` and `plateau`) to a schedule.

Schedule classes take steps. A config may give any length (the class's `lengths`) with a
unit instead: `"2ep"` or `"0.3dur"` (see `trainer.config.lengths`). They are converted here,
in one place, before instantiation:

- `ep` with the run's steps per epoch;
- `dur` against the span the schedule drives: the run's total steps, less any warmup in
  front of it (`warmup=linear`, or the schedule's own `warmup_steps`). A child of a
  `sequence` drives the stretch between its boundaries (the last one, the rest).
"""

from __future__ import annotations

import difflib
import inspect
import logging

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from schedules.errors import ArgumentError
from trainer.config.errors import ConfigError
from trainer.config.lengths import to_steps

log = logging.getLogger(__name__)


def resolve_lengths(cfg, steps_per_epoch=None, span=None, path="schedule"):
    """A plain-dict copy of the schedule config `cfg` with every length in steps.

    Args:
        cfg: a schedule config (with `_target_`), a dict or a DictConfig.
        steps_per_epoch: converts `ep`; None where unknown.
        span: the steps `1dur` stands for (what this schedule drives); None where unknown.
        path: the config key of `cfg`, for messages.
    """
    cfg = _plain(cfg)
    lengths = getattr(_target(path, cfg), "lengths", ())
    out = dict(cfg)
    rest = span

    def convert(key, within):
        value = cfg[key]
        if isinstance(value, list):
            return [
                to_steps(f"{path}.{key}[{i}]", v, steps_per_epoch, within)
                for i, v in enumerate(value)
            ]
        return to_steps(f"{path}.{key}", value, steps_per_epoch, within)

    # A schedule's own warmup comes first; its other lengths count what is left after it.
    if "warmup_steps" in lengths and "warmup_steps" in cfg:
        out["warmup_steps"] = convert("warmup_steps", span)
        if span is not None:
            rest = span - out["warmup_steps"]
    for key in lengths:
        if key in cfg and key != "warmup_steps":
            out[key] = convert(key, rest)
            if out[key] != cfg[key]:
                log.info("%s.%s=%s -> %s steps", path, key, cfg[key], out[key])

    children = cfg.get("schedules")
    if isinstance(children, list):
        boundaries = out.get("boundaries") if isinstance(out.get("boundaries"), list) else []
        starts = [0, *boundaries]
        ends = [*boundaries, rest]
        out["schedules"] = [
            resolve_lengths(
                child,
                steps_per_epoch,
                _span(starts, ends, i),
                f"{path}.schedules[{i}]",
            )
            if isinstance(child, dict)
            else child
            for i, child in enumerate(children)
        ]
    return out


def _span(starts, ends, i):
    if i >= len(ends) or ends[i] is None or not isinstance(starts[i], int):
        return None
    return ends[i] - starts[i]


def build_schedule(
    schedule,
    warmup=None,
    plateau=None,
    steps_per_epoch=None,
    run_steps=None,
    callbacks=None,
):
    """Instantiate the configured schedule, wrapped in warmup and plateau reduction if given.

    Plateau reduction is a training callback (`schedules.plateau.ReduceOnPlateau`) that
    lowers the scale of a `Scaled` schedule; the schedule returned here is that `Scaled`,
    and the callback goes to `callbacks` (a preview, passing none, sees scale 1).

    Args:
        schedule: the `schedule` config node (with `_target_`).
        warmup: the `warmup` config node or None.
        plateau: the `plateau` config node or None.
        steps_per_epoch: converts `ep` lengths; None if unknown.
        run_steps: total optimizer steps of the run; converts `dur` lengths.
        callbacks: a list that receives the training callbacks the config asks for.

    Raises:
        ConfigError naming the key for any bad key or value.
    """
    span = run_steps
    warmup_cfg = None
    if warmup:
        warmup_cfg = resolve_lengths(warmup, steps_per_epoch, run_steps, "warmup")
        taken = warmup_cfg.get("warmup_steps")
        if run_steps is not None and isinstance(taken, int):
            span = run_steps - taken
            if span <= 0:
                raise ConfigError(
                    f"warmup.warmup_steps={warmup_cfg['warmup_steps']} ({warmup.warmup_steps}) "
                    f"takes the whole run of {run_steps} steps; nothing is left for the schedule",
                    fix="shorten the warmup (e.g. warmup.warmup_steps=0.1dur) or train longer",
                )
    built = instantiate_checked("schedule", resolve_lengths(schedule, steps_per_epoch, span))
    if warmup_cfg:
        built = instantiate_checked("warmup", warmup_cfg, schedule=built)
    if plateau:
        reducer = instantiate_checked("plateau", _plain(plateau))
        built = reducer.wrap(built)
        if callbacks is not None:
            callbacks.append(reducer)
    return built


def from_config(cfg, steps_per_epoch=None, run_steps=None, callbacks=None):
    """`build_schedule` from a composed app config: its `schedule`, `warmup` and `plateau`."""
    return build_schedule(
        cfg.schedule,
        cfg.get("warmup"),
        cfg.get("plateau"),
        steps_per_epoch=steps_per_epoch,
        run_steps=run_steps,
        callbacks=callbacks,
    )


def _plain(cfg):
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def _target(group, cfg):
    """The class or function a config's `_target_` names, or a ConfigError that says why."""
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        raise ConfigError(
            f"{group}: the config has no `_target_`", fix=f"pick one with {group}=<name>"
        )
    try:
        return get_object(cfg["_target_"])
    except Exception as err:
        raise ConfigError(
            f"{group}._target_={cfg['_target_']!r} cannot be imported ({err})",
            fix=f"name an importable class, or pick a config with {group}=<name>",
        ) from err


def instantiate_checked(group, cfg, **kwargs):
    """Build `cfg` (a config node of `group`), any bad key or value a ConfigError naming it."""
    cfg = _plain(cfg)
    check_keys(group, cfg, kwargs)
    try:
        return instantiate(cfg, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):  # the object named the key itself
            raise cause from None
        if isinstance(cause, ArgumentError) and cause.argument in cfg:
            key, rule = f"{group}.{cause.argument}", cause.rule
            raise ConfigError(
                f"{key} must be {rule}. Received: {key}={cause.value!r} ({cfg['_target_']})",
                fix=f"set {key}=... to what it must be ({rule})"
                + ("; `python -m schedules --help` lists the keys" if group == "schedule" else ""),
            ) from err
        raise ConfigError(f"{group} ({cfg['_target_']}): {cause}") from err


def check_keys(group, cfg, given=()):
    """Refuse keys the target does not take, suggesting the closest one it does."""
    target = _target(group, cfg)
    try:
        params = inspect.signature(target if inspect.isfunction(target) else target.__init__)
    except (TypeError, ValueError):  # a builtin without a signature: the call will say
        return
    params = params.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [name for name in params if name != "self" and name not in given]
    unknown = [key for key in cfg if not key.startswith("_") and key not in params]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
        fix = f"did you mean {group}.{close[0]}?" if close else f"remove it with ~{group}.{key}"
        raise ConfigError(
            f"{group} ({cfg['_target_']}) has no key {key!r}; it takes {', '.join(accepted)}",
            fix=fix,
        )
