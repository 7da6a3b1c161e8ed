"""The sweep's parent run, opened and closed by Hydra's multirun callbacks.

`on_multirun_start` runs in the launching process before the first trial: it starts the
parent run in the configured sinks and writes `sweep.json` into the sweep folder, where
every trial (in this process or another) finds the parent. `on_multirun_end` writes the
summary and closes the parent FINISHED. Hydra skips `on_multirun_end` when the sweep stops
on an exception or Ctrl-C, so `python -m trainer` calls `close_open_sweep` on its way out
(the parent ends KILLED or FAILED, with the summary of the trials done).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from trainer.sweeps import summary
from trainer.sweeps.trial import SWEEP_FILE

log = logging.getLogger(__name__)
_open = None  # the sweep this process has open: (SweepCallback, TrackedRun, config)


class SweepCallback(Callback):
    """Starts the parent run of a sweep and closes it with the summary."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _open
        from trainer.config.console import input_errors_reported
        from trainer.tracking import metadata
        from trainer.tracking.run import TrackedRun, build_sinks, command_line, source_tags
        from trainer.tracking.sinks.base import RunInfo

        with input_errors_reported("python -m trainer"):  # before any run is started
            check_ray_address(config.hydra.launcher)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        task = list(config.hydra.overrides.task)
        on_line = _swept_keys(task)
        # A search sweeper's space, less what the command line sweeps instead.
        space = {
            k: v for k, v in (config.hydra.sweeper.get("params") or {}).items() if k not in on_line
        }
        swept = [*on_line, *space]
        sweep_id = uuid.uuid4().hex[:12]
        name = parent_name(config, swept)
        tags = {
            "lrlab.sweep.id": sweep_id,
            "lrlab.sweep.dir": str(sweep_dir.resolve()),
            "lrlab.sweep.sweeper": str(config.hydra.sweeper.get("_target_", "")),
            "lrlab.sweep.launcher": str(config.hydra.launcher.get("_target_", "")),
            "lrlab.command": command_line(),
            "mode": "sweep",
            **metadata.sweep_note(swept, task),
            **source_tags(),
        }
        # The search space, one param per swept key; the fixed overrides as they were given.
        given = dict(o.lstrip("+~").split("=", 1) for o in task if "=" in o)
        params = {f"space.{k}": v for k, v in {**given, **space}.items() if k in swept}
        params.update({f"override.{k}": v for k, v in given.items() if k not in swept})
        run = TrackedRun(
            build_sinks(config.get("sink"), sweep=True),
            config.tracking.strict,
            RunInfo(name[:250], str(sweep_dir.resolve())),
            params,
            tags,
        ).__enter__()
        (sweep_dir / SWEEP_FILE).write_text(
            json.dumps({"id": sweep_id, "parent": run.refs, "swept": swept}, indent=1)
        )
        _open = (self, run, config)
        log.info("sweep %s: parent run %r, trials in %s", sweep_id, name, sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        close_open_sweep("FINISHED")


def check_ray_address(launcher, timeout=15.0):
    """A Ray cluster launcher's head answers at `ray.init.address` within `timeout` seconds
    (`ray.init` would retry for minutes, and leave the sweep's parent RUNNING)."""
    import socket

    from trainer.config.errors import ConfigError

    address = ((launcher.get("ray") or {}).get("init") or {}).get("address")
    if not address or address in ("auto", "local"):
        return  # a Ray of this machine's own
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"hydra.launcher.ray.init.address={address}: no Ray head answers there "
            f"({getattr(err, 'strerror', None) or err})",
            fix="start the head (ray start --head, or the team stack: docs/deploy.md), check "
            "RAY_ADDRESS, or run the trials on this machine: hydra/launcher=local_parallel",
        ) from None


def parent_name(config, swept):
    """`sweep cnn-mnist clr_optuna 12-07 14:03`: the setup, the search preset (or the swept
    keys' last parts, `max_lr,step_size`) and when it started; the space is in the params."""
    choices = config.hydra.runtime.choices
    setup = f"{choices.get('model')}-{choices.get('dataset')}"
    what = choices.get("sweep") or ",".join(k.rsplit(".", 1)[-1] for k in swept) or "sweep"
    return f"sweep {setup} {what} {time.strftime('%m-%d %H:%M')}"


def close_open_sweep(status):
    """Write the summary of the trials done and close this process's open sweep as
    `status`; returns a note for the console ("" when no sweep is open)."""
    global _open
    if _open is None:
        return ""
    _, run, config = _open
    _open = None
    sweep_dir = Path(config.hydra.sweep.dir)
    note = ""
    try:
        found = summary.write(sweep_dir, run.writer, config.optimized_metric)
        note = f"; the sweep's parent run ended {status} with {found.describe()}"
    except Exception as err:  # the summary must not hide how the sweep ended
        log.error("could not write the sweep's summary: %s", err)
    if status == "FINISHED":
        run.__exit__(None, None, None)
    else:
        run.failure = status
        kind = KeyboardInterrupt if status == "KILLED" else RuntimeError
        run.__exit__(kind, None, None)
    return note


def _swept_keys(task):
    """The keys of the overrides that sweep (`a=1,2`, `range(...)`, `choice(...)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(task)
    except Exception:  # Hydra reports a bad override itself
        return []
    return [o.key_or_group for o in parsed if o.is_sweep_override()]
