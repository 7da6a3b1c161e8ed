"""lrlab's trainer: `python -m trainer` trains a model with a schedule, tracked per step.

`run(cfg)` imports TensorFlow only when called, so `--help`, `--cfg job` and config errors
return without it.
"""


def run(cfg, choices=None, extra_callbacks=()):
    """Train from a composed `conf/train.yaml` config; returns the final metrics as a dict."""
    from trainer.checks import check_config

    check_config(cfg)
    from trainer.train import train

    return train(cfg, choices, extra_callbacks)
