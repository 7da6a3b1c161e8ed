"""`python -m schedules schedule=<name> [key=value ...]`: preview a schedule without training.

Writes `step,lr` rows for steps 0 .. preview.steps-1 and a plot; `-m schedule=a,b,c`
previews several (one output folder each). `--help` lists the schedules.
"""

import logging

import hydra
from omegaconf import DictConfig

log = logging.getLogger("schedules")


@hydra.main(version_base="1.3", config_path="../conf", config_name="preview")
def main(cfg: DictConfig) -> None:
    from schedules.build import from_config
    from schedules.preview import curve, plot, write_csv

    p = cfg.preview
    if not isinstance(p.steps, int) or p.steps < 1:
        raise ValueError(f"preview.steps must be a whole number >= 1. Received: {p.steps!r}")
    schedule = from_config(cfg, steps_per_epoch=p.steps_per_epoch, run_steps=p.steps)
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
            "wrote %s",
            plot(
                p.png, values, title=_wrap(title), log_y=p.log_y, steps_per_epoch=p.steps_per_epoch
            ),
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


if __name__ == "__main__":
    main()
