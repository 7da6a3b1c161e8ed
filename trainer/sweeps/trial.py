"""A trial's side of a sweep: who it is (from `sweep.json`) and what it leaves (`trial.json`)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
TRIAL_FILE = "trial.json"
STUDY_FILE = "study.json"  # an Optuna sweep's study: its name, storage, monitor, pruner


@dataclass
class Trial:
    """One job of a sweep, as its run records it.

    `overrides` are the job's own (`hydra.overrides.task`), `swept` those of them that vary
    across the sweep, which name the trial: `cnn-mnist-clr #2 max_lr=0.003 step_size=4ep`.
    """

    sweep_id: str
    number: int
    dir: str
    parent: dict = field(default_factory=dict)
    overrides: list = field(default_factory=list)
    swept: list = field(default_factory=list)
    optuna: dict | None = None  # the Optuna study this trial reports to (an Optuna sweep)
    command: list = field(default_factory=list)  # the overrides of a single run that is it

    def run_name(self, base):
        """The swept values first, then `#number base`: `max_lr=0.003 step_size=4ep #2
        cnn-mnist-clr`, so that the runs list, which cuts long names, shows what differs."""
        return " ".join([*short(self.swept), f"#{self.number}", base])

    def callbacks(self, ending):
        """Keras callbacks the trial's training needs: Optuna's pruning, in an Optuna sweep
        (it records a pruned run's end in `ending`)."""
        if not self.optuna:
            return []
        from trainer.sweeps.optuna_trial import pruning_callback, trial_for_job

        found = trial_for_job(self.optuna, self.sweep_id, self.number)
        self.optuna_trial = found.number
        return [pruning_callback(found, self.optuna["monitor"], ending)]

    def use_parent_store(self, cfg):
        """Log into the parent run's MLflow store when this trial's own is a local file.

        A trial on a Ray worker has that machine's environment and working folder: without
        `MLFLOW_TRACKING_URI` there, it would log to a `sqlite:///mlflow.db` of its own, lost
        to the sweep. A trial whose own URI names a server or database keeps it: the parent's
        URI may be how the launching machine reaches the same server (`http://localhost:5000`),
        not how this one does. Credentials always come from this machine's environment.
        """
        from trainer.tracking.sinks.mlflow_sink import absolute, is_local

        uri = (self.parent.get("mlflow") or {}).get("uri")
        sink = cfg.get("sink") or {}
        if not uri or "mlflow" not in sink:
            return
        own = absolute(str(sink.mlflow.get("uri")))
        if own == uri or not is_local(own):
            return
        log.info("trial #%d logs to the sweep's MLflow store %s", self.number, uri)
        cfg.tracking.uri = uri
        cfg.sink.mlflow.uri = uri

    def tags(self):
        """The sweep's tags, and as the run's command (Source) the single run that
        reproduces this trial, not the sweep's `-m` command or the launcher's."""
        from trainer.tracking.run import command_line, source_tags

        tags = {
            "lrlab.sweep.id": self.sweep_id,
            "lrlab.sweep.trial": str(self.number),
            "lrlab.sweep.overrides": " ".join(self.overrides),
            "lrlab.command": command_line(self.command),
            **source_tags(self.command),
        }
        if getattr(self, "optuna_trial", None) is not None:
            tags["lrlab.optuna.study"] = self.optuna["study"]
            tags["lrlab.optuna.trial"] = str(self.optuna_trial)
        return tags

    def params(self):
        """The trial's group choices as params (`override.schedule = clr`), for the compare
        view's axes; its other overrides are params already (`schedule.max_lr`)."""
        return {
            f"override.{key}": value
            for key, value in (o.lstrip("+~").split("=", 1) for o in self.overrides if "=" in o)
            if "." not in key and "/" not in key
        }


def short(overrides, groups=True):
    """`schedule.max_lr=0.003` as `max_lr=0.003`; group choices (`schedule=clr`) as the
    option alone, or left out with `groups=False`."""
    out = []
    for override in overrides:
        key, _, value = override.partition("=")
        value = _brief(value)
        if "." in key:
            out.append(f"{key.rsplit('.', 1)[-1]}={value}")
        elif groups:
            out.append(value)
    return out


def _brief(value):
    """A searched float as 4 significant digits (0.0012345678 -> 0.001235); else as is."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if "." in value and len(value) > 7 else value


def read_sweep(sweep_dir):
    """The sweep's `sweep.json` as a dict ({} where there is none), with its Optuna study's
    `study.json` (written by the Optuna sweeper, once it has made the study) as "optuna"."""
    found = {}
    for name, key in ((SWEEP_FILE, None), (STUDY_FILE, "optuna")):
        path = Path(sweep_dir) / name
        if path.exists():
            value = json.loads(path.read_text())
            found.update(value if key is None else {key: value})
    return found


def current():
    """The running Hydra job's `Trial`, or None outside a sweep (or a sweep without a
    `sweep.json`: one started by another app)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    path = Path(hc.sweep.dir) / SWEEP_FILE
    if not path.exists():
        log.warning(
            "no %s in %s: this trial is not linked to a parent run", SWEEP_FILE, path.parent
        )
        return None
    sweep = read_sweep(hc.sweep.dir)
    overrides = list(hc.overrides.task)
    keys = set(sweep["swept"])
    command = single_run(overrides, dict(hc.runtime.choices))
    return Trial(
        sweep_id=sweep["id"],
        number=int(hc.job.num),
        dir=str(Path(hc.runtime.output_dir)),
        parent=sweep.get("parent") or {},
        overrides=overrides,
        swept=[o for o in overrides if o.split("=", 1)[0] in keys],
        optuna=sweep.get("optuna"),
        command=command,
    )


# The groups a `sweep=` preset may choose (conf/sweep/*.yaml set `override /schedule: ...`).
RUN_GROUPS = ("dataset", "model", "optimizer", "schedule", "warmup", "plateau")


def single_run(overrides, choices):
    """The overrides of `python -m trainer ...` (no `-m`) that trains what a trial with
    `overrides` trains: a search preset (`sweep=clr_optuna`) is no part of a single run, so
    its group choices are spelled out instead."""
    if not any(o.split("=", 1)[0] == "sweep" for o in overrides):
        return list(overrides)
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    spelled = [
        f"{group}={choices[group]}"
        for group in RUN_GROUPS
        if group not in given and choices.get(group) not in (None, "null")
    ]
    return spelled + [o for o in overrides if o.split("=", 1)[0] != "sweep"]


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, which it returns to the sweeper (through Hydra's `JobReturn`,
    pickled back from another process or machine by the launcher) and writes to its
    `trial.json` for the sweep's summary (the one writer of that file).

    `status` is FINISHED, FAILED, PRUNED or KILLED; `value` the trial's `optimized_metric`
    (NaN unless FINISHED with a finite one), what a sweeper minimises or maximises.
    """

    status: str
    run_name: str
    value: float = math.nan
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    wall_s: float | None = None
    started_at: float | None = None
    refs: dict = field(default_factory=dict)
    models: str | None = None  # trainer.models as the run applied it

    def __float__(self):  # what a sweeper that wants a number gets (Hydra's own)
        return float(self.value)

    def write(self, trial):
        """`trial.json` in the trial's folder: the trial's settings and this outcome;
        `started_at` is the Unix time the trial began (trials that ran at once overlap)."""
        metrics = {k: v for k, v in self.metrics.items() if isinstance(v, (int, float))}
        record = {
            **asdict(trial),
            "run_name": self.run_name,
            "status": self.status,
            "error": self.error,
            "wall_s": self.wall_s,
            "started_at": self.started_at,
            "metrics": {k: (v if math.isfinite(v) else None) for k, v in metrics.items()},
            "refs": self.refs or {},
            "models": self.models,
            "optuna_trial": getattr(trial, "optuna_trial", None),
            "pid": os.getpid(),  # the process that ran it (a fresh one per trial, or not)
        }
        path = Path(trial.dir) / TRIAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
        return path


def run(cfg, choices, trial):
    """Run one trial and return its `Outcome`; a failure is recorded (a FAILED run, its
    `trial.json`) and the sweep goes on. Only Ctrl-C (or SIGTERM) stops the sweep."""
    import trainer
    from trainer.experiment import start_backend
    from trainer.stopping import Stopped
    from trainer.tracking import metadata
    from trainer.tracking.run import Ending

    trial.use_parent_store(cfg)
    names = metadata.run_names(cfg, choices, cfg.dataset.get("name", "data"))
    task = choices.get("task", "train")
    name = metadata.run_name(task, names, trial)
    started, started_at = time.perf_counter(), time.time()
    ending = Ending()

    def ended(status, **how):
        outcome = Outcome(
            status, wall_s=time.perf_counter() - started, started_at=started_at, **how
        )
        outcome.write(trial)
        return outcome

    try:
        start_backend(cfg)  # before the trial's callbacks, Keras classes, are made
        results = trainer.run(
            cfg, choices, extra_callbacks=trial.callbacks(ending), trial=trial, ending=ending
        )
    except KeyboardInterrupt as err:
        ended("KILLED", run_name=name, refs=ending.refs)
        raise Stopped(getattr(err, "signum", signal.SIGINT), note=ending.note()) from err
    except Exception as err:
        if ending.tags.get("lrlab.pruned"):  # Optuna pruned it
            return ended(
                "PRUNED",
                run_name=name,
                error=f"pruned after epoch {ending.tags['lrlab.pruned_at_epoch']}",
                refs=ending.refs,
            )
        log.error("trial #%d failed: %s", trial.number, err)
        refs = ending.refs
        if ending.status is None:  # it failed before its run started: record one, FAILED
            refs = _record_failure(cfg, task, trial, name, err)
        return ended("FAILED", run_name=name, error=f"{type(err).__name__}: {err}", refs=refs)
    value = results.get(cfg.optimized_metric)
    return ended(
        "FINISHED",
        run_name=results["run_name"],
        value=float(value) if isinstance(value, (int, float)) else math.nan,
        metrics=results,
        refs=results["refs"],
        models=results.get("models"),
    )


def _record_failure(cfg, task, trial, name, err):
    """A FAILED run for a trial that failed before its own run started (an invalid value)."""
    from trainer.tracking import metadata
    from trainer.tracking.run import TrackedRun, build_sinks
    from trainer.tracking.sinks.base import RunInfo

    tags = {
        **trial.tags(),
        "mode": task,
        "lrlab.failure": f"{type(err).__name__}: {err}"[:5000],
        **metadata.failed_trial_note(trial.number, err),
    }
    info = RunInfo(name, trial.dir, parent=trial.parent)
    try:
        sinks = build_sinks(cfg.get("sink"))
        with TrackedRun(sinks, False, info, trial.params(), tags) as run:
            run.failure = str(err)
        return run.refs
    except Exception as record_err:  # the sinks themselves failed: the log says why
        log.error("trial #%d: could not record the failure: %s", trial.number, record_err)
        return {}
