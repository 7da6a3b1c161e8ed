"""Optuna search as a Hydra sweeper, on Optuna's ask-and-tell API, with pruning.

Why our own: the released `hydra-optuna-sweeper` (1.3.0) pins Optuna 2, whose storage
predates the SQLAlchemy 2 that MLflow 3 needs, and no release prunes (1.4.0rc3 needs a
pre-release Hydra and still has no pruner). Here the sweeper asks Optuna for a batch of
trials, launches them through whatever Hydra launcher is configured, and tells Optuna each
result. The trials report their per-epoch validation metric to the same study (shared
storage), so Optuna's pruners can stop poor trials; a pruned trial's run ends KILLED with
the tags `lrlab.pruned` and `lrlab.pruned_at_epoch`.

The study lives in `storage`: a database URL (SQLite, PostgreSQL) that several machines can
join by `study_name`, or by default a journal file in the sweep folder, which processes on
one machine share (an in-memory study would be invisible to trials in other processes). A
study that already exists is loaded and continued.

The search space, in Hydra's override grammar, comes from `params` and from sweep overrides
on the command line (which win): `choice(a,b)` and `a,b` (categorical), `range(1,10,3)`
(stepped), `interval(0.1,1)` (float; `int(interval(1,9))` integer), `tag(log, interval(...))`
(log scale). `hydra/sweeper=lrlab_optuna` (conf/hydra/sweeper/) selects this sweeper; the
`conf/sweep/*_optuna.yaml` presets set it with a search space.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import OmegaConf

from trainer.choices import MINIMIZED
from trainer.config.errors import ConfigError
from trainer.retry import Backoff, retried
from trainer.sweeps.optuna_trial import JOB_ATTR, SWEEP_ATTR, open_storage
from trainer.sweeps.trial import STUDY_FILE, Outcome, read_sweep

log = logging.getLogger(__name__)
# Two machines starting one study at once collide on the database's catalog: 0.5 s to 8 s.
STUDY_CREATION = Backoff(0.5, 8.0)
# optimized_metric -> the epoch metric the pruner watches (its validation twin).
MONITOR = {
    f"{split}/{name}": f"val_{name}"
    for split in ("test", "val")
    for name in ("accuracy", "loss", "mean_iou")
}


def distribution(key, sweep):
    """The Optuna distribution of one override's sweep (see the module docstring)."""
    import optuna.distributions as d

    if isinstance(sweep, ChoiceSweep):
        return d.CategoricalDistribution([_plain(v) for v in sweep.list])
    if isinstance(sweep, RangeSweep):
        values = [sweep.start, sweep.stop, sweep.step]
        if all(isinstance(v, int) for v in values):
            last = sweep.stop - 1 - (sweep.stop - 1 - sweep.start) % sweep.step
            return d.IntDistribution(sweep.start, last, step=sweep.step)
        steps = math.floor((sweep.stop - sweep.start) / sweep.step - 1e-9)
        return d.FloatDistribution(sweep.start, sweep.start + steps * sweep.step, step=sweep.step)
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return d.IntDistribution(sweep.start, sweep.end, log=log_scale)
        return d.FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise ConfigError(
        f"{key}: {sweep!r} is not a search space",
        fix="use choice(a,b), a,b, range(start,stop,step), interval(low,high) or "
        "tag(log, interval(low,high))",
    )


def _plain(value):
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def search_space(params, arguments):
    """(fixed overrides, {key: distribution}) from the sweeper's `params` and the command
    line's overrides (a sweep there joins the space and wins over `params`)."""
    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    space, fixed = {}, []
    for override in parser.parse_overrides(lines) + parser.parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(key, override.value())
        else:
            fixed = [f for f in fixed if f.split("=", 1)[0] != key]
            space.pop(key, None)
            fixed.append(override.input_line)
    if not space:
        raise ConfigError(
            "the Optuna sweeper has nothing to search: no hydra.sweeper.params and no sweep "
            "on the command line",
            fix="pick a preset (sweep=clr_optuna) or give a space, e.g. "
            "'schedule.max_lr=tag(log, interval(1e-4, 1e-1))'",
        )
    return fixed, space


def as_override(key, value):
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={value}"


class OptunaSearch(Sweeper):
    """The sweeper (Hydra finds plugins only in `hydra_plugins`: `hydra_plugins.lrlab_sweepers`
    names it there).

    Args:
        n_trials: trials this sweep runs (a study that exists keeps its earlier trials).
        n_jobs: trials asked for and launched at once; null: as many as the launcher runs at
            once (`hydra.launcher.parallel` of `local_parallel`), else 1 (the basic launcher
            runs one at a time; on a Ray cluster say how many the cluster holds).
        direction: "maximize", "minimize", or null: from `optimized_metric` (loss: minimize).
        study_name: the study's name in `storage`; null: the sweep's id.
        storage: a database URL (sqlite:///..., postgresql://...); null: a journal file in the
            sweep folder.
        sampler, pruner: Optuna objects as `_target_` configs (pruner null: no pruning).
        monitor: the epoch metric the pruner watches; null: the validation twin of
            `optimized_metric` (val_accuracy for test/accuracy).
        params: the search space, {key: override grammar}.
    """

    def __init__(
        self,
        n_trials=10,
        n_jobs=None,
        direction=None,
        study_name=None,
        storage=None,
        sampler=None,
        pruner=None,
        monitor=None,
        params=None,
    ):
        self.n_trials, self.n_jobs = int(n_trials), None if n_jobs is None else int(n_jobs)
        if self.n_trials < 1 or (self.n_jobs is not None and self.n_jobs < 1):
            raise ConfigError(
                f"hydra.sweeper.n_trials and n_jobs must be >= 1. Received: "
                f"n_trials={n_trials}, n_jobs={n_jobs}"
            )
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.monitor, self.params = monitor, params

    def setup(self, *, hydra_context, task_function, config):
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        if self.n_jobs is None:  # a parallel launcher's slots, all busy
            self.n_jobs = int(config.hydra.launcher.get("parallel") or 1)

    def sweep(self, arguments):
        from trainer.config.console import input_errors_reported

        # A bad storage or space is an input error: a few lines, exit 2 (Hydra would print
        # its traceback hint); the sweep's parent run ends FAILED with it.
        with input_errors_reported("python -m trainer"):
            return self._sweep(arguments)

    def _sweep(self, arguments):
        import optuna
        from optuna.trial import TrialState

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        fixed, space = search_space(self.params, arguments)
        metric = self.config.optimized_metric
        direction = self.direction or ("minimize" if metric in MINIMIZED else "maximize")
        sweep = read_sweep(sweep_dir)
        name = self.study_name or f"lrlab-{sweep.get('id', sweep_dir.name)}"
        storage = self.storage or _journal(sweep_dir)
        study = _create_study(
            study_name=name,
            storage=storage,
            # From the config node: Hydra may have built `self.sampler_cfg` already.
            sampler=sampler(self.config.hydra.sweeper.get("sampler", self.sampler_cfg)),
            pruner=_built(self.pruner_cfg) or optuna.pruners.NopPruner(),
            direction=direction,
            load_if_exists=True,
        )
        monitor = self.monitor or MONITOR.get(metric, "val_loss")
        pruner = self.config.hydra.sweeper.get("pruner")
        study_info = {
            "study": name,
            "storage": storage
            if isinstance(storage, str)
            else str(sweep_dir.resolve() / "optuna.journal"),
            "monitor": monitor,
            "direction": direction,
            # Optuna keeps no pruner in its storage: each trial builds the same one.
            "pruner": OmegaConf.to_container(pruner, resolve=True) if pruner else None,
        }
        (sweep_dir / STUDY_FILE).write_text(json.dumps(study_info, indent=1))
        log.info(
            "Optuna study %r (%s, %s) in %s: %d trials, space %s",
            name,
            direction,
            type(study.pruner).__name__,
            study_info["storage"],
            self.n_trials,
            {k: repr(v) for k, v in space.items()},
        )
        job = 0
        while job < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - job)
            trials = [study.ask(space) for _ in range(batch)]
            for i, trial in enumerate(trials):
                trial.set_user_attr(JOB_ATTR, job + i)
                trial.set_user_attr(SWEEP_ATTR, sweep.get("id", ""))
            overrides = [
                tuple([*fixed, *(as_override(k, v) for k, v in t.params.items())]) for t in trials
            ]
            self.validate_batch_is_legal(overrides)
            results = self.launcher.launch(overrides, initial_job_idx=job)
            for trial, result in zip(trials, results):
                self._tell(study, trial, result, TrialState)
            job += batch
        finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if finished:
            log.info(
                "Optuna: best trial #%d, %s=%.4g, %s",
                study.best_trial.number,
                metric,
                study.best_value,
                study.best_params,
            )
        return study

    def _tell(self, study, trial, result, states):
        """Tell the study how the job's trial ended: its `Outcome`, returned through Hydra
        (a job that crashed returns none)."""
        try:
            outcome = result.return_value  # raises the job's error if it crashed
        except Exception as err:
            outcome = Outcome("FAILED", "", error=f"the job ended {result.status.name}: {err}")
        if not isinstance(outcome, Outcome):
            outcome = Outcome("FAILED", "", error=f"the job returned {outcome!r}")
        if outcome.status == "PRUNED":
            study.tell(trial, state=states.PRUNED)
        elif outcome.status == "FINISHED" and _finite(outcome.value):
            study.tell(trial, outcome.value)
        else:
            error = outcome.error or f"the trial ended {outcome.status}"
            trial.set_user_attr("lrlab.error", str(error)[:1000])
            study.tell(trial, state=states.FAIL)


# What a database that is not there says (PostgreSQL, MySQL through SQLAlchemy).
UNREACHABLE = ("Connection refused", "could not connect", "could not translate host name")


def _create_study(attempts=6, **kwargs):
    """`optuna.create_study`, again when another process was creating the same database's
    tables at that moment (two machines starting one study at once collide on PostgreSQL's
    catalog: "duplicate key value violates unique constraint pg_type_typname_nsp_index")."""
    import optuna

    def database_error(err):
        return type(err).__module__.split(".")[0] == "sqlalchemy"

    def unreachable(err):
        return database_error(err) and any(words in str(err) for words in UNREACHABLE)

    try:
        return retried(
            lambda: optuna.create_study(**kwargs),
            lambda err: database_error(err) and not unreachable(err),
            STUDY_CREATION,
            attempts=attempts,
            on_retry=lambda err, wait: log.info(
                "the study's storage was being created elsewhere (%s); again in %g s",
                type(err).__name__,
                wait,
            ),
        )
    except Exception as err:
        if unreachable(err):
            raise ConfigError(
                f"hydra.sweeper.storage={kwargs['storage']}: no database answers there "
                f"({str(err).strip().splitlines()[0][:200]})",
                fix="start it, check the address, or leave hydra.sweeper.storage out (a "
                "journal file in the sweep folder)",
            ) from None
        raise


def sampler(node):
    """The Optuna sampler of `hydra.sweeper.sampler`; one with a `seed` draws each trial
    from a seed of its own (`SeedPerTrial`)."""
    seed = node.get("seed") if hasattr(node, "keys") else None
    if seed is None:
        return _built(node)
    from trainer.sweeps.samplers import SeedPerTrial

    return SeedPerTrial(lambda s: instantiate(node, seed=s), int(seed))


def _built(node):
    """An Optuna sampler or pruner from its `_target_` config (Hydra may have built it
    already, when it built the sweeper); None for null."""
    if node is None or not hasattr(node, "keys"):
        return node
    return instantiate(node)


def _journal(sweep_dir):
    return open_storage(str(Path(sweep_dir) / "optuna.journal"))


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def plots(info, folder):
    """Optuna's own plots of the study (history, importances, parallel coordinates) as PNGs
    in `folder`; those Optuna cannot draw yet (too few trials) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as vis

    study = optuna.load_study(study_name=info["study"], storage=open_storage(info["storage"]))
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna's plots set equal y limits where every trial has one value (a few trials, or
    # all pruned alike); matplotlib warns about it on every sweep and widens them itself.
    warnings.filterwarnings("ignore", message="Attempting to set identical low and high ylims")
    made = []
    for name, draw in (
        ("optuna_history.png", vis.plot_optimization_history),
        ("optuna_importances.png", vis.plot_param_importances),
        ("optuna_parallel_coordinate.png", vis.plot_parallel_coordinate),
    ):
        try:
            ax = draw(study)
            figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            figure.savefig(Path(folder) / name, dpi=110)
            plt.close(figure)
            made.append(Path(folder) / name)
        except Exception as err:  # e.g. importances need two finished trials
            log.info("Optuna could not draw %s: %s", name, err)
    return made
