"""Checks of the composed config that need no TensorFlow, run before anything is imported
or logged, so a typo fails in a second with a message that names the key."""

from __future__ import annotations

from omegaconf import DictConfig

from schedules.errors import ConfigError


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every bad value of the composed config."""
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
    factor = t.divergence_factor
    need(
        factor is None or (_number(factor) and factor > 1),
        "trainer.divergence_factor",
        "null or a number > 1",
        factor,
    )
    need(cfg.mode in ("train", "lr_find"), "mode", "train or lr_find", cfg.mode)
    metric = cfg.optimized_metric
    need(
        cfg.mode != "train" or metric in FINAL_METRICS or _is_class_iou(metric),
        "optimized_metric",
        f"a final metric of the run: {', '.join(FINAL_METRICS)} or test/iou_class_<k>",
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
        raise ConfigError("\n  ".join(problems))


# What a training run returns at its end (see trainer.train.train), for optimized_metric.
FINAL_METRICS = ("test/accuracy", "test/loss", "test/mean_iou")


def _is_class_iou(name):
    prefix = "test/iou_class_"
    return isinstance(name, str) and name.startswith(prefix) and name[len(prefix) :].isdigit()


# Schedule keys that `auto` may set from the range test's suggestion.
AUTO_KEYS = ("max_lr", "initial_lr")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# MLflow's tracking URI schemes (a bare path is a folder store).
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "file")


def check_tracking(tracking, timeout=3.0) -> None:
    """Fail in seconds, naming the URI, when the MLflow store cannot be reached.

    A server must answer `/health`; a SQLite file's folder must exist. Without this, MLflow's
    client retries an unreachable server for minutes before the run could even start.
    """
    if not tracking.mlflow:
        return
    uri = tracking.uri
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    fix = "unset MLFLOW_TRACKING_URI (or set tracking.uri=sqlite:///mlflow.db) to log locally"
    if "://" in uri and scheme not in TRACKING_SCHEMES:
        raise ConfigError(
            f"tracking.uri={uri!r}: unknown scheme {scheme!r}; MLflow takes "
            f"{', '.join(TRACKING_SCHEMES)}",
            fix=f"e.g. tracking.uri=http://host:5000, or {fix}",
        )
    if scheme in ("http", "https"):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
                pass
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):  # a server that wants credentials is still there
                return
            raise ConfigError(
                f"tracking.uri={uri}: the MLflow server answered {err.code} at /health",
                fix=f"check the address, or {fix}",
            ) from err
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise ConfigError(
                f"tracking.uri={uri}: no MLflow server answers there ({reason})",
                fix=f"start the server (mlflow server --port 5000), or {fix}, "
                "or tracking.mlflow=false",
            ) from err
    elif scheme == "sqlite":
        from pathlib import Path

        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if path and path != ":memory:" and not Path(path).resolve().parent.is_dir():
            raise ConfigError(
                f"tracking.uri={uri}: the folder {Path(path).resolve().parent} does not exist",
                fix="create it, or name a SQLite file in an existing folder",
            )
