"""`python -m trainer [group=option ...] [key=value ...]`: train, tracked per step.

With `-m` each job is a trial of a sweep: a child of the sweep's parent run
(`trainer.sweeps`), whose failure is recorded without stopping the sweep.
"""

import errno
import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import trainer
from trainer import stopping
from trainer.config.console import input_errors_reported, no_folder_left_if_refused
from trainer.config.errors import ConfigError
from trainer.config.location import CONF_PACKAGE
from trainer.config.overrides import check_overrides
from trainer.sweeps import callback, trial
from trainer.tracking.run import Ending

log = logging.getLogger("trainer")
APP = "python -m trainer"


@hydra.main(version_base="1.3", config_path=CONF_PACKAGE, config_name="train")
def main(cfg: DictConfig) -> float | trial.Outcome | None:
    """A run returns its `optimized_metric`; a sweep's trial its `trial.Outcome` (its
    metric as `value`), which the sweeper reads."""
    choices = dict(HydraConfig.get().runtime.choices)
    this = trial.current()
    if this is not None:
        return trial.run(cfg, choices, this)
    with input_errors_reported(APP), no_folder_left_if_refused(cfg.output_dir):
        preset = choices.get("sweep")
        if preset not in (None, "null"):
            raise ConfigError(
                f"sweep={preset} is a search preset (conf/sweep/): it runs as a sweep, with "
                "-m; without it one run of the default settings would train",
                fix=f"add -m: python -m trainer -m sweep={preset} ...",
            )
        ending = Ending()
        try:
            results = trainer.run(cfg, choices, ending=ending)
        except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM, SIGHUP: the console says where
            signum = getattr(err, "signum", signal.SIGINT)
            raise stopping.Stopped(signum, note=ending.note()) from err
        except stopping.TrainingDiverged as err:  # the run says so, FAILED: no traceback
            sys.stdout.flush()
            sys.stderr.write(f"{APP}: {err}\n")
            sys.exit(1)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            sys.stdout.flush()
            where = err.filename or cfg.output_dir
            sys.stderr.write(
                f"{APP}: no space left on device ({where}); the run ended FAILED with every "
                "step that reached its stores. Free some space, or write the run elsewhere "
                "(hydra.run.dir=...)\n"
            )
            sys.exit(1)
    return results.get(cfg.optimized_metric)


if __name__ == "__main__":
    with input_errors_reported(APP):
        check_overrides("train", sys.argv[1:], APP)
    stopping.stop_on_signals()  # SIGTERM and SIGHUP stop a run as Ctrl-C does
    try:
        main()
    except KeyboardInterrupt as err:
        # The run was closed on the way out (TrackedRun notes how); one line, no traceback.
        swept = callback.close_open_sweep("KILLED")
        # A sweep whose trials ran in processes of their own has no run of this process.
        note = err.note if isinstance(err, stopping.Stopped) else ""
        note = note or ("" if swept else "; no run had started")
        how = getattr(err, "name", "Ctrl-C")
        sys.stderr.write(f"{APP}: interrupted ({how}){note}{swept}\n")
        sys.exit(stopping.exit_code(err))
    finally:
        callback.close_open_sweep("FAILED")  # a sweep that ended by an error, not by Ctrl-C
