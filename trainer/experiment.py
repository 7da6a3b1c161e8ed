"""The composition root: a composed config, checked and built once into an `Experiment`.

`build(cfg, choices, trial)` checks every value (typed settings, then the data files'
headers, the sinks, the checkpoint to resume from: no Keras yet), then imports Keras on the
backend `backend=` picks (`trainer.backends`) and builds the schedule, the optimizer, the
model and the callback specs, before any data is loaded or run started. Training and the
range test use these objects as they are; nothing is built twice. The one thing not built
here is what cannot be known yet: a schedule whose rate is `auto` (the range test gives it:
`with_schedule`), or whose length needs data that must be downloaded first.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from trainer.callback_group import RunLength
from trainer.choices import AUTO_KEYS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeptModels:
    """Which models a run keeps, decided once from `trainer.models` (`policy`):

    - "all": the final `model.keras` and the best epoch's `best.keras` in the run folder, and
      the final model logged to MLflow as the run's model;
    - "best" (a sweep's trial, by default): the final `model.keras` only, which the sweep's
      summary keeps for its best trial and deletes for the others;
    - "none": no model file.
    """

    policy: str

    @classmethod
    def for_run(cls, setting, trial):
        """From the setting ("auto", "all", "best", "none") and whether the run is a trial."""
        if setting == "auto":
            return cls("best" if trial is not None else "all")
        if setting == "best" and trial is None:
            return cls("all")  # a single run is its own best
        return cls(setting)

    @property
    def best_epoch(self):
        return self.policy == "all"

    @property
    def final(self):
        return self.policy != "none"

    @property
    def logged(self):
        return self.policy == "all"


@dataclass(frozen=True)
class Experiment:
    """Everything one run is made of, built from its config.

    `cfg` stays for what is logged and saved as the run's settings (params, config.yaml,
    the checkpoint's comparison); code reads the objects.
    """

    cfg: DictConfig
    choices: dict
    backend: object  # trainer.backends.Backend: the one Keras runs on, and why
    task: object  # trainer.tasks.Task
    dataset: object  # trainer.data.Dataset
    sinks: dict  # {name: Sink}, checked
    callbacks: tuple  # trainer.callback_group specs, in the group's order
    length: RunLength
    kept: KeptModels
    model: object  # the Keras model, as built from the seed (untrained)
    schedule: object  # None until known (an `auto` rate; a length that needs a download)
    optimizer: object  # None with the schedule
    schedule_callbacks: tuple  # plateau reduction's, with the schedule
    auto_keys: tuple  # schedule keys set to `auto`
    resume_from: tuple | None  # (meta, arrays) of the checkpoint trainer.resume continues
    trial: object = None  # trainer.sweeps.trial.Trial, for a sweep's trial
    extra_callbacks: tuple = ()  # more Keras callbacks for fit (a benchmark's timer)

    @property
    def settings(self):
        """`trainer.*`."""
        return self.cfg.trainer

    def with_schedule(self, train_samples, rates=None):
        """This experiment with its schedule and optimizer built for `train_samples` (the
        training set and the validation split together), with `rates` ({key: value}) set
        in the schedule's config (the range test's suggestion for `auto` keys)."""
        from omegaconf import open_dict

        cfg = self.cfg
        if rates:
            cfg = cfg.copy()
            with open_dict(cfg):
                for key, value in rates.items():
                    cfg.schedule[key] = value
        length = run_length(cfg.trainer, train_samples, cfg.dataset.val_size)
        schedule, optimizer, plateau = _schedule_and_optimizer(cfg, length)
        return dataclasses.replace(
            self,
            cfg=cfg,
            length=length,
            schedule=schedule,
            optimizer=optimizer,
            schedule_callbacks=plateau,
            callbacks=_callback_specs(cfg, length),
            auto_keys=(),
        )


def run_length(t, train_samples, val_size):
    """The RunLength of a run on `train_samples` less `val_size` samples (None: unknown)."""
    if train_samples is None:
        return RunLength(None, None)
    steps_per_epoch = math.ceil((train_samples - val_size) / t.batch_size)
    if t.limit_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, t.limit_train_batches)
    return RunLength(steps_per_epoch, t.epochs * steps_per_epoch)


def check(cfg, trial=None):
    """Every check that needs no TensorFlow: values, the data files' headers, the sinks'
    settings, the checkpoint to resume from. Returns (task, dataset, train samples or None
    before a download, sinks, the checkpoint or None)."""
    from hydra.utils import instantiate

    from trainer.checks import check_batch_size, check_config
    from trainer.config.build import check_keys
    from trainer.tracking.run import build_sinks

    task = check_config(cfg, in_sweep=trial is not None)
    check_keys("dataset", OmegaConf.to_container(cfg.dataset, resolve=True))
    dataset = instantiate(cfg.dataset)
    train_samples = dataset.check()
    check_batch_size(cfg, train_samples)
    sinks = build_sinks(cfg.get("sink"))  # each checks its settings (a server answers)
    saved = None
    if task.trains and cfg.trainer.resume:
        from trainer.resume import to_resume

        saved = to_resume(cfg)  # a checkpoint there, saved with these settings
    return task, dataset, train_samples, sinks, saved


def build(cfg, choices=None, trial=None, extra_callbacks=()) -> Experiment:
    """The checked, built `Experiment` of a composed `conf/train.yaml` (see the module).

    Any bad key or value is a ConfigError naming it, raised before data loads or a run
    starts. `trial` (a `trainer.sweeps.trial.Trial`) makes the run a sweep's child run.
    """
    from trainer import backends
    from trainer.config.build import instantiate_checked

    backend = backends.choose(cfg.backend, cfg.model.get("_target_"))  # before the checks
    task, dataset, train_samples, sinks, saved = check(cfg, trial)
    start_backend(cfg, backend)
    import keras

    keras.backend.clear_session()  # a sweep's jobs may share the process
    backends.seed(cfg.trainer.seed)  # the model's first weights, the dropout
    auto = tuple(key for key in AUTO_KEYS if cfg.schedule.get(key) == "auto")
    length = run_length(cfg.trainer, train_samples, cfg.dataset.val_size)
    schedule = optimizer = None
    plateau = ()
    if task.trains and not auto and length.steps_per_epoch is not None:
        schedule, optimizer, plateau = _schedule_and_optimizer(cfg, length)
    else:  # the optimizer's settings are checked all the same
        instantiate_checked("optimizer", cfg.optimizer, learning_rate=cfg.optimizer.learning_rate)
    experiment = Experiment(
        cfg=cfg,
        choices=dict(choices or {}),
        backend=backend,
        task=task,
        dataset=dataset,
        sinks=sinks,
        callbacks=_callback_specs(cfg, length),
        length=length,
        kept=KeptModels.for_run(cfg.trainer.models, trial),
        model=instantiate_checked("model", cfg.model),
        schedule=schedule,
        optimizer=optimizer,
        schedule_callbacks=plateau,
        auto_keys=auto if task.trains else (),
        resume_from=saved,
        trial=trial,
        extra_callbacks=tuple(extra_callbacks),
    )
    return experiment


def _schedule_and_optimizer(cfg, length):
    from trainer.config.build import from_config, instantiate_checked

    plateau = []
    schedule = from_config(
        cfg,
        steps_per_epoch=length.steps_per_epoch,
        run_steps=length.run_steps,
        callbacks=plateau,
    )
    optimizer = instantiate_checked("optimizer", cfg.optimizer, learning_rate=schedule)
    for reduction in plateau:  # its scale changes between steps: the optimizer carries it
        reduction.scaled.track_in(optimizer)
    return schedule, optimizer, tuple(plateau)


def _callback_specs(cfg, length):
    """The `callbacks` group's specs, in its order, each given the run's length."""
    from trainer.config.build import instantiate_checked

    return tuple(
        instantiate_checked(f"callbacks.{name}", node, length=length)
        for name, node in (cfg.get("callbacks") or {}).items()
    )


def start_backend(cfg, backend=None):
    """Start `backend` (chosen from `cfg.backend` when not given; `trainer.backends`) with
    this run's threads and share of a GPU; returns the `Backend`. `build` does it after its
    checks; a sweep's trial first, since its pruning callback is a Keras class."""
    from trainer import backends

    backend = backend or backends.choose(cfg.backend, cfg.model.get("_target_"))
    launcher = _launcher()
    ray = launcher.get("ray", {}).get("remote", {})  # a Ray trial's reserved resources
    # CPU threads per op: `trainer.threads`, else the launcher's `cpus_per_task` (a parallel
    # sweep) or a Ray trial's cores, else None (the backend's own default: all cores).
    threads = cfg.trainer.get("threads") or launcher.get("cpus_per_task") or ray.get("num_cpus")
    backends.start(backend, threads or None, ray.get("num_gpus"))
    return backend


def _launcher():
    """Hydra's launcher config of this job ({} outside a Hydra job)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().launcher if HydraConfig.initialized() else {}
