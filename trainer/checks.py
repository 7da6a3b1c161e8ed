"""Checks of the composed config that need no TensorFlow, run before anything is imported
or logged, so a typo fails in a second with a message that names the key.

The typed groups' own rules live beside their fields (`trainer.config.settings`); here are
the rules across keys and groups.
"""

from __future__ import annotations

from omegaconf import DictConfig

from trainer.choices import AUTO_KEYS, CLASS_IOU_PREFIX, FINAL_METRICS
from trainer.config import settings
from trainer.config.errors import ConfigError
from trainer.config.settings import number, problem


def check_config(cfg: DictConfig, in_sweep=False):
    """Raise one ConfigError listing every bad value of the composed config (`in_sweep`:
    of a sweep's trial, which returns `optimized_metric` to choose by); return the task
    (`trainer.tasks.Task`) it instantiated to check the keys that depend on it."""
    for key in ("schedule", "model", "optimizer", "dataset", "task"):
        node = cfg.get(key)
        if node is None or "_target_" not in node:
            raise ConfigError(
                f"{key} must be a config with a `_target_`. Received: {key}={node!r}",
                fix=f"pick one with {key}=<name> (python -m trainer --help lists them)",
            )
    # The schedules' rates are fractions of it: check it before anything resolves them.
    rate = cfg.optimizer.get("learning_rate")
    if not (number(rate) and rate > 0):
        raise ConfigError(
            f"optimizer.learning_rate must be a number > 0 (the peak rate the schedules "
            f"derive theirs from). Received: optimizer.learning_rate={rate!r}",
            fix="e.g. optimizer.learning_rate=1e-3",
        )
    problems = settings.check(cfg)

    def need(ok, key, rule, value):
        if not ok:
            problems.append(problem(key, rule, value))

    from hydra.utils import instantiate

    t, task = cfg.trainer, instantiate(cfg.task)
    need(
        not (t.resume and t.checkpoint_every is None),
        "trainer.checkpoint_every",
        "set (a run saves no checkpoint to resume from without it) with trainer.resume=true",
        t.checkpoint_every,
    )
    metric = cfg.optimized_metric
    need(
        not task.trains or metric in FINAL_METRICS or _is_class_iou(metric),
        "optimized_metric",
        f"a final metric of the run: {', '.join(FINAL_METRICS)} or {CLASS_IOU_PREFIX}<k>",
        metric,
    )
    need(
        not in_sweep or not str(metric).startswith("val/") or cfg.dataset.val_size != 0,
        "optimized_metric",
        "a test/ metric in a sweep with dataset.val_size=0 (no validation split to choose on)",
        metric,
    )
    f = cfg.lr_find
    if number(f.min_lr) and number(f.max_lr):
        need(f.max_lr > f.min_lr, "lr_find.max_lr", f"> lr_find.min_lr ({f.min_lr})", f.max_lr)
    for key, value in (cfg.get("schedule") or {}).items():
        if value == "auto":
            need(
                key in AUTO_KEYS,
                f"schedule.{key}",
                f"a number (only {' and '.join(AUTO_KEYS)} may be auto)",
                value,
            )
            need(task.trains, "mode", "train when a schedule key is auto", task.name)
    if problems:
        raise ConfigError("\n  ".join(problems))
    return task


def _is_class_iou(name):
    prefix = CLASS_IOU_PREFIX
    return isinstance(name, str) and name.startswith(prefix) and name[len(prefix) :].isdigit()


def check_batch_size(cfg: DictConfig, train_samples) -> None:
    """A batch no larger than the training split (`train_samples` less the validation
    split; None: not known before the download)."""
    if train_samples is None:
        return
    split = train_samples - cfg.dataset.val_size
    if cfg.trainer.batch_size > split:
        raise ConfigError(
            f"trainer.batch_size must be at most the training split ({split} images of "
            f"{cfg.dataset.name} after the {cfg.dataset.val_size} held out for validation). "
            f"Received: trainer.batch_size={cfg.trainer.batch_size}",
            fix="e.g. trainer.batch_size=32 (one batch per step; an epoch is the split)",
        )
