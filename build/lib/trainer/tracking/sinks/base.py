"""The sink protocol: what a tracked run tells every place its values go.

A sink is built in the training process from its `conf/sink/<name>.yaml` (only settings are
stored, nothing is opened), `check()`ed there before any training, and then handed to the
writer process (`trainer.tracking.writer`), which calls, in this order:

    start(run)              once: open files or connections; return refs (see below)
    params(values)          the run's parameters, {"schedule.max_lr": "0.001", ...}
    tags(values)            the run's tags, {"lrlab.model": "cnn", ...}; may come again later
    steps(rows)             per-step rows, an (n, 4) array with columns `rows.COLUMNS`
    scalars(values, step)   named values at one step (epoch metrics, final results)
    artifacts(paths, folder) files of the run folder worth keeping (plots, CSVs, checkpoints)
    model(name, file, mlflow_dir, step)  a trained model: its `.keras` file and, where an
                            MLflow sink runs, the same model in MLflow's format (a folder with
                            an `MLmodel` file; else None); by default kept as an artifact
    flush()                 make everything so far durable
    heartbeat()             every minute while the run is open (from a thread, never at
                            the same time as another call): say the run is alive
    close(status)           "FINISHED", "FAILED" or "KILLED"; release everything; may
                            return a note for the training log (values kept for later)

Every method but `start` has a do-nothing default, so a sink implements what it stores.
A sink never imports TensorFlow: the writer process must stay small and start fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.tracking.rows import COLUMNS, STEP_METRICS


@dataclass
class DatasetInput:
    """A dataset a run read, described without its arrays (for MLflow's Dataset column)."""

    name: str  # "mnist-train"
    context: str  # "training" or "test"
    source: str  # where it came from, a URI
    digest: str  # a short checksum of the files
    features_shape: tuple
    features_dtype: str
    targets_shape: tuple
    targets_dtype: str


@dataclass
class RunInfo:
    """What a sink's `start` is told about the run.

    `children` and `parent` hold refs that earlier runs' sinks returned from `start`
    (`{"mlflow": {"run_id": ...}}`): a sink links to the runs it knows and ignores the rest.
    `resume` holds the refs of this very run, started before by a process that was killed
    (`trainer.resume`): a sink continues that run, and never writes a value again at a
    step where it already has one (`unseen`).
    """

    name: str
    dir: str  # the run folder (every sink's relative paths are inside it)
    inputs: tuple[DatasetInput, ...] = ()
    children: tuple[dict, ...] = ()
    parent: dict | None = None
    resume: dict | None = None


@dataclass
class Started:
    """What `start` returns: `ref`, a small picklable dict by which later runs can link to
    this one (an MLflow run id, say), `where`, one line for the log saying where the run
    goes, and `view`, one line for the end of the run saying how to look at it (None:
    nothing worth saying)."""

    ref: dict = field(default_factory=dict)
    where: str | None = None
    view: str | None = None


class Sink:
    """Base class of the sinks; see the module docstring for the calls and their order."""

    # Whether a sweep's parent run (its search space and summary, no steps) goes here too.
    records_sweeps = True

    def check(self):
        """Fail fast (a ConfigError naming the key) on settings that cannot work.

        Runs in the training process before any data is loaded or run started; must be
        quick and leave nothing behind.
        """

    def start(self, run: RunInfo) -> Started:
        raise NotImplementedError

    def params(self, values):
        pass

    def tags(self, values):
        pass

    def steps(self, rows):
        pass

    def scalars(self, values, step):
        pass

    def artifacts(self, paths, folder=None):
        pass

    def model(self, name, file, mlflow_dir=None, step=0):
        """A trained model called `name` ("model", a sweep's "best_trial") at training step
        `step`: kept as the artifact `file` (its `.keras` file) in a folder `name`, unless
        the sink stores models its own way (MLflow: a logged model)."""
        self.artifacts([file], name)

    def flush(self):
        pass

    def heartbeat(self):
        """Called every minute while the run is open: say it is alive (the MLflow sink sets
        `lrlab.heartbeat`, which `python -m trainer.tracking repair` reads)."""

    def close(self, status):
        pass


def rows_as_metrics(rows):
    """(name, value, step) for every per-step value in `rows` (columns `rows.COLUMNS`)."""
    index = {column: COLUMNS.index(column) for column in STEP_METRICS}
    for row in rows:
        step = int(row[0])
        for column, name in STEP_METRICS.items():
            yield name, float(row[index[column]]), step


def unseen(triples, have):
    """The (name, value, step) of `triples` after the last step `have` holds of that name
    (`{name: last step}`; a resumed run re-trains steps its stores may already hold)."""
    return [(n, v, s) for n, v, s in triples if s > have.get(n, -1)]
