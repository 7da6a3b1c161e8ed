"""lrlab's trainer: `python -m trainer` trains a model with a schedule, tracked per step.

`run(cfg)` imports TensorFlow only when called, so `--help`, `--cfg job` and config errors
return without it.
"""


def run(cfg, choices=None, extra_callbacks=()):
    """Train (or, with `mode=lr_find`, run the range test) from a composed `conf/train.yaml`.

    A schedule key set to `auto` (`max_lr`, `initial_lr`) runs the range test first and
    trains with its suggestion. Returns the final metrics as a dict.
    """
    from trainer.checks import AUTO_KEYS, check_config

    check_config(cfg)
    from trainer.train import find_lr, train

    if cfg.mode == "lr_find":
        return find_lr(cfg, choices)
    auto = [key for key in AUTO_KEYS if cfg.schedule.get(key) == "auto"]
    if not auto:
        return train(cfg, choices, extra_callbacks)
    found = find_lr(cfg, choices, subfolder="lr_find")
    for key in auto:
        cfg.schedule[key] = found["lr_find/suggested_lr"]
    tags = {
        "lrlab.lr_find.run_id": str(found["run_id"]),
        "lrlab.lr_find.suggested_lr": repr(found["lr_find/suggested_lr"]),
        "lrlab.lr_find.rule": cfg.lr_find.suggestion,
        "lrlab.lr_find.auto_keys": ",".join(f"schedule.{key}" for key in auto),
    }
    return train(cfg, choices, extra_callbacks, extra_tags=tags)
