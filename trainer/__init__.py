"""lrlab's trainer: `python -m trainer` trains a model with a schedule, tracked per step.

`run(cfg)` checks everything the user gave before it imports TensorFlow, loads data or
starts an MLflow run, so that bad input fails fast with a `ConfigError` and leaves no run
behind: config values, then the data files' headers, the sinks' settings and the
checkpoint to resume from (no TensorFlow), then the schedule, optimizer and model (with
TensorFlow, before the data).
"""

import trainer.names  # noqa: F401  (registers ${run_label:...}, which conf/train.yaml uses)


def run(cfg, choices=None, extra_callbacks=(), trial=None, ending=None):
    """Train (or, with `mode=lr_find`, run the range test) from a composed `conf/train.yaml`.

    A schedule key set to `auto` (`max_lr`, `initial_lr`) runs the range test first and
    trains with its suggestion; the range test's run becomes a child of the training run.
    `trial` (a `trainer.sweeps.trial.Trial`) makes the run a sweep's child run; `ending` (a
    `trainer.tracking.run.Ending`) says how the run ended, also when this raises.
    Returns the final metrics as a dict.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from trainer.checks import check_batch_size, check_config
    from trainer.choices import AUTO_KEYS
    from trainer.config.build import check_keys
    from trainer.config.console import import_tensorflow
    from trainer.tracking.run import build_sinks

    check_config(cfg, in_sweep=trial is not None)
    check_keys("dataset", OmegaConf.to_container(cfg.dataset, resolve=True))
    train_samples = instantiate(cfg.dataset).check()
    check_batch_size(cfg, train_samples)
    build_sinks(cfg.get("sink"))  # each sink checks its settings (an MLflow server answers)
    if cfg.mode == "train" and cfg.trainer.resume:
        from trainer.resume import to_resume

        to_resume(cfg)  # a checkpoint there, saved with these settings
    import_tensorflow()
    _limit_threads(cfg.trainer.get("threads"))
    from trainer import lr_find
    from trainer.train import check_objects, train

    auto = [key for key in AUTO_KEYS if cfg.schedule.get(key) == "auto"]
    check_objects(cfg, train_samples, build_schedule=cfg.mode == "train" and not auto)
    if cfg.mode == "lr_find":
        return lr_find.find_lr(cfg, choices, trial=trial, ending=ending)
    if auto:
        return lr_find.train_at_suggestion(
            cfg, choices, extra_callbacks, auto, trial=trial, ending=ending
        )
    return train(cfg, choices, extra_callbacks, trial=trial, ending=ending)


def _limit_threads(threads):
    """TensorFlow's thread pools for this run: `trainer.threads`, else the launcher's
    `cpus_per_task` (a parallel sweep), else TensorFlow's own default (all cores).

    Ops run one at a time (inter-op 1) on `threads` threads each, so N trials of one thread
    each keep N cores busy without oversubscribing them. Set before the first op runs.
    """
    import logging

    from hydra.core.hydra_config import HydraConfig

    if threads is None and HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        threads = launcher.get("cpus_per_task")  # submitit's
        if threads is None and "ray" in launcher:  # a Ray trial's reserved cores
            threads = launcher.ray.get("remote", {}).get("num_cpus")
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
        logging.getLogger(__name__).info("TensorFlow: %d thread(s) per op", int(threads))
    except RuntimeError as err:  # already running ops (a second run in this process)
        logging.getLogger(__name__).warning("could not limit TensorFlow's threads: %s", err)
