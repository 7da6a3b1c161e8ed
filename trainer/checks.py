"""Checks of the composed config that need no TensorFlow, run before anything is imported
or logged, so a typo fails in a second with a message that names the key."""

from __future__ import annotations

from omegaconf import DictConfig


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(cfg: DictConfig) -> None:
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
    need(
        t.jit_compile in ("auto", True, False),
        "trainer.jit_compile",
        "auto, true or false",
        t.jit_compile,
    )
    flush = tracking.flush_every_steps
    need(_whole(flush) and flush >= 1, "tracking.flush_every_steps", "a whole number >= 1", flush)
    need(bool(tracking.experiment), "tracking.experiment", "a non-empty name", tracking.experiment)
    need(
        isinstance(tracking.uri, str) and tracking.uri,
        "tracking.uri",
        "an MLflow tracking URI such as sqlite:///mlflow.db or http://host:5000",
        tracking.uri,
    )
    for key in ("schedule", "model", "optimizer", "dataset"):
        node = cfg.get(key)
        need(
            node is not None and "_target_" in node,
            key,
            f"a config with a `_target_` (pick one with {key}=<name>)",
            node,
        )
    need(cfg.mode in ("train", "lr_find"), "mode", "train or lr_find", cfg.mode)
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
    need(f.sweep in ("exponential", "linear"), "lr_find.sweep", "exponential or linear", f.sweep)
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
        f.suggestion in ("valley", "steepest", "minimum"),
        "lr_find.suggestion",
        "valley, steepest or minimum",
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
        raise ValueError("invalid configuration:\n  " + "\n  ".join(problems))


# Schedule keys that `auto` may set from the range test's suggestion.
AUTO_KEYS = ("max_lr", "initial_lr")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
