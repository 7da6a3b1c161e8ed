"""`python -m trainer [group=option ...] [key=value ...]`: train, tracked per step.

With `-m` each job is a trial of a sweep: a child of the sweep's parent run
(`trainer.sweeps`), whose failure is recorded without stopping the sweep.
"""

import contextlib
import logging
import re
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import trainer
from schedules.console import input_errors_reported
from schedules.errors import ConfigError
from schedules.overrides import check_overrides
from trainer.sweeps import callback, trial

log = logging.getLogger("trainer")
APP = "python -m trainer"


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    choices = dict(HydraConfig.get().runtime.choices)
    this = trial.current()
    if this is not None:
        return trial.run(cfg, choices, this)
    with input_errors_reported(APP), _no_folder_left_if_refused(cfg):
        results = trainer.run(cfg, choices)
    return results.get(cfg.optimized_metric)


@contextlib.contextmanager
def _no_folder_left_if_refused(cfg):
    """A command refused for its input leaves no run folder behind: Hydra made one before
    the input was checked, holding only its own `.hydra/` and the log."""
    try:
        yield
    except ConfigError:
        folder = Path(cfg.output_dir)
        if folder.is_dir() and all(
            p.name == ".hydra" or p.suffix == ".log" for p in folder.iterdir()
        ):
            shutil.rmtree(folder, ignore_errors=True)
            if _is_empty_day_folder(folder.parent):
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()
        raise


def _is_empty_day_folder(folder):
    """Whether `folder` is the day's folder of Hydra's default layout (`outputs/2026-12-07`)
    with nothing left in it. A run folder given as `hydra.run.dir=run` has the working folder
    as its parent, which is never removed, even when empty."""
    cwd = Path.cwd().resolve()
    folder = folder.resolve()
    return (
        re.fullmatch(r"\d{4}-\d{2}-\d{2}", folder.name) is not None
        and folder != cwd
        and folder not in cwd.parents
        and not any(folder.iterdir())
    )


if __name__ == "__main__":
    with input_errors_reported(APP):
        check_overrides("train", sys.argv[1:], APP)
    try:
        main()
    except KeyboardInterrupt as err:
        # The run was closed on the way out (TrackedRun notes how); one line, no traceback.
        note = getattr(err, "lrlab_note", "no run had started")
        swept = callback.close_open_sweep("KILLED")
        sys.stderr.write(f"{APP}: interrupted; {note}{swept}\n")
        sys.exit(130)
    finally:
        callback.close_open_sweep("FAILED")  # a sweep that ended by an error, not by Ctrl-C
