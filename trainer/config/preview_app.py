"""`python -m schedules schedule=<name> [key=value ...]`: preview a schedule without training
(`schedules/__main__.py` runs `cli()` here).

Writes `step,lr` rows for steps 0 .. preview.steps-1 and a plot; `-m schedule=a,b,c`
previews several (one output folder each). `--help` lists the schedules.
"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trainer import backends
from trainer.config.console import input_errors_reported, no_folder_left_if_refused
from trainer.config.errors import ConfigError
from trainer.config.location import CONF_PACKAGE
from trainer.config.overrides import check_overrides

log = logging.getLogger("schedules")
APP = "python -m schedules"


@hydra.main(version_base="1.3", config_path=CONF_PACKAGE, config_name="preview")
def main(cfg: DictConfig) -> None:
    output_dir = HydraConfig.get().runtime.output_dir
    with input_errors_reported(APP), no_folder_left_if_refused(output_dir):
        preview(cfg)


def preview(cfg):
    p = cfg.preview
    if isinstance(p.steps, bool) or not isinstance(p.steps, int) or p.steps < 1:
        raise ConfigError(
            f"preview.steps must be a whole number >= 1. Received: preview.steps={p.steps!r}"
        )
    spe = p.steps_per_epoch
    if spe is not None and (isinstance(spe, bool) or not isinstance(spe, int) or spe < 1):
        raise ConfigError(
            "preview.steps_per_epoch must be null or a whole number >= 1. "
            f"Received: preview.steps_per_epoch={spe!r}"
        )
    backends.start(backends.choose(cfg.backend))
    from trainer.config.build import from_config
    from trainer.config.preview import curve, plot, write_csv

    schedule = from_config(cfg, steps_per_epoch=spe, run_steps=p.steps)
    values = curve(schedule, p.steps)
    log.info(
        "%r: lr(0)=%.6g, min=%.6g, max=%.6g, lr(%d)=%.6g",
        schedule,
        values[0],
        values.min(),
        values.max(),
        p.steps - 1,
        values[-1],
    )
    if p.csv:
        log.info("wrote %s", write_csv(p.csv, values))
    if p.png:
        title = p.title or repr(schedule)
        log.info(
            "wrote %s", plot(p.png, values, title=_wrap(title), log_y=p.log_y, steps_per_epoch=spe)
        )


def _wrap(text, width=110):
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def cli():
    """The command: overrides checked first, then Hydra (`python -m schedules` calls this)."""
    with input_errors_reported(APP):
        check_overrides("preview", sys.argv[1:], APP)
    main()


if __name__ == "__main__":
    cli()
