"""Checks of the composed config that need no TensorFlow, run before anything is imported
or logged, so a typo fails in a second with a message that names the key."""

from __future__ import annotations

from omegaconf import DictConfig

from schedules.choices import RANGE_TEST_SWEEPS
from trainer.choices import (
    AUTO_KEYS,
    CLASS_IOU_PREFIX,
    FINAL_METRICS,
    JIT_COMPILE,
    MODELS,
    MODES,
    SUGGESTION_RULES,
)
from trainer.config.errors import ConfigError


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(cfg: DictConfig, in_sweep=False) -> None:
    """Raise one ConfigError listing every bad value of the composed config (`in_sweep`:
    of a sweep's trial, which returns `optimized_metric` to choose by)."""
    for key in ("schedule", "model", "optimizer", "dataset"):
        node = cfg.get(key)
        if node is None or "_target_" not in node:
            raise ConfigError(
                f"{key} must be a config with a `_target_`. Received: {key}={node!r}",
                fix=f"pick one with {key}=<name> (python -m trainer --help lists them)",
            )
    # The schedules' rates are fractions of it: check it before anything resolves them.
    rate = cfg.optimizer.get("learning_rate")
    if not (_number(rate) and rate > 0):
        raise ConfigError(
            f"optimizer.learning_rate must be a number > 0 (the peak rate the schedules "
            f"derive theirs from). Received: optimizer.learning_rate={rate!r}",
            fix="e.g. optimizer.learning_rate=1e-3",
        )
    t, tracking = cfg.trainer, cfg.tracking
    problems = []

    def need(ok, key, rule, value):
        if not ok:
            problems.append(f"{key} must be {rule}. Received: {key}={value!r}")

    for key in ("epochs", "batch_size", "eval_batch_size", "steps_per_execution"):
        need(_whole(t[key]) and t[key] >= 1, f"trainer.{key}", "a whole number >= 1", t[key])
    limit = t.limit_train_batches
    need(
        limit is None or (_whole(limit) and limit >= 1),
        "trainer.limit_train_batches",
        "null or a whole number >= 1",
        limit,
    )
    patience = t.early_stopping_patience
    need(
        patience is None or (_whole(patience) and patience >= 0),
        "trainer.early_stopping_patience",
        "null or a whole number >= 0",
        patience,
    )
    need(_whole(t.seed), "trainer.seed", "a whole number", t.seed)
    threads = t.get("threads")
    need(
        threads is None or (_whole(threads) and threads >= 1),
        "trainer.threads",
        "null or a whole number >= 1",
        threads,
    )
    need(
        t.jit_compile in JIT_COMPILE,
        "trainer.jit_compile",
        _either(str(c).lower() for c in JIT_COMPILE),
        t.jit_compile,
    )
    need(t.models in MODELS, "trainer.models", _either(MODELS), t.models)
    need(isinstance(t.resume, bool), "trainer.resume", "true or false", t.resume)
    for key, example in (("checkpoint_every", "'1ep'"), ("test_every", "'0.25ep'")):
        every = t[key]
        need(
            every is None or (_whole(every) and every >= 1) or isinstance(every, str),
            f"trainer.{key}",
            f"null, a whole number of steps >= 1 or a length such as {example}",
            every,
        )
    every = t.checkpoint_every
    need(
        not (t.resume and every is None),
        "trainer.checkpoint_every",
        "set (a run saves no checkpoint to resume from without it) with trainer.resume=true",
        every,
    )
    flush = tracking.flush_every_steps
    need(_whole(flush) and flush >= 1, "tracking.flush_every_steps", "a whole number >= 1", flush)
    factor = t.divergence_factor
    need(
        factor is None or (_number(factor) and factor > 1),
        "trainer.divergence_factor",
        "null or a number > 1",
        factor,
    )
    need(cfg.mode in MODES, "mode", _either(MODES), cfg.mode)
    metric = cfg.optimized_metric
    need(
        cfg.mode != "train" or metric in FINAL_METRICS or _is_class_iou(metric),
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
    need(_number(f.min_lr) and f.min_lr > 0, "lr_find.min_lr", "> 0", f.min_lr)
    need(
        _number(f.max_lr) and _number(f.min_lr) and f.max_lr > f.min_lr,
        "lr_find.max_lr",
        f"> lr_find.min_lr ({f.min_lr})",
        f.max_lr,
    )
    need(
        _whole(f.num_steps) and f.num_steps >= 2,
        "lr_find.num_steps",
        "a whole number >= 2",
        f.num_steps,
    )
    need(f.sweep in RANGE_TEST_SWEEPS, "lr_find.sweep", _either(RANGE_TEST_SWEEPS), f.sweep)
    need(
        _number(f.smoothing) and 0 <= f.smoothing < 1, "lr_find.smoothing", "in [0, 1)", f.smoothing
    )
    need(
        _number(f.divergence_factor) and f.divergence_factor > 1,
        "lr_find.divergence_factor",
        "> 1",
        f.divergence_factor,
    )
    need(
        f.suggestion in SUGGESTION_RULES,
        "lr_find.suggestion",
        _either(SUGGESTION_RULES),
        f.suggestion,
    )
    schedule = cfg.get("schedule") or {}
    for key, value in schedule.items():
        if value == "auto":
            need(
                key in AUTO_KEYS,
                f"schedule.{key}",
                f"a number (only {' and '.join(AUTO_KEYS)} may be auto)",
                value,
            )
            need(cfg.mode == "train", "mode", "train when a schedule key is auto", cfg.mode)
    if problems:
        raise ConfigError("\n  ".join(problems))


def _either(choices):
    """ "a, b or c" """
    choices = list(choices)
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


def _is_class_iou(name):
    prefix = CLASS_IOU_PREFIX
    return isinstance(name, str) and name.startswith(prefix) and name[len(prefix) :].isdigit()


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
