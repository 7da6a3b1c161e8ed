"""One tracked training run: the MLflow run, the sinks and the writer, opened and closed together.

On leaving the `with` block everything queued is written and the MLflow run ends as
FINISHED, FAILED (an exception, or a non-finite loss) or KILLED (Ctrl-C).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from schedules.errors import ConfigError
from trainer.tracking.writer import WriterProcess

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# How MLflow 3 tells a model-training experiment from a GenAI one. The 3.17 UI lets its
# global GenAI / Model training switch decide instead, while it shows one (docs/training.md).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def flatten(cfg, prefix=""):
    """`{"schedule.initial_lr": "0.001", ...}` from a (resolved) config, for MLflow params."""
    container = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    out = {}
    for key, value in container.items():
        name = f"{prefix}{key}"
        if isinstance(value, DictConfig):  # a node of a larger config resolves against its root
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def git_commit():
    """(commit, dirty) of the project checkout, or ("unknown", False) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            text=True,
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            text=True,
            capture_output=True,
            timeout=10,
        )
        return commit, bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


class TrackedRun:
    """Opens the sinks for a run in `run_dir` and the MLflow run when tracking.mlflow is on."""

    def __init__(self, tracking, run_dir, run_name, params, tags, step_csv=True, inputs=()):
        self.tracking = tracking
        self.run_dir = Path(run_dir)
        self.run_name = run_name
        self.params = params
        self.tags = tags
        self.step_csv = step_csv
        self.inputs = inputs  # (mlflow.data Dataset, context) pairs for mlflow.log_input
        self.run_id = None
        self.failure = None  # set to a reason to end as FAILED without an exception

    def __enter__(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        sinks = [("csv", {"path": str(self.run_dir / "steps.csv")})] if self.step_csv else []
        if self.tracking.tensorboard:
            sinks.append(("tensorboard", {"logdir": str(self.run_dir / "tensorboard")}))
        if self.tracking.mlflow:
            self._start_mlflow()
            sinks.append(("mlflow", {"uri": self.tracking.uri, "run_id": self.run_id}))
        self.writer = WriterProcess(sinks, strict=self.tracking.strict)
        return self

    def _start_mlflow(self):
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self.tracking.uri)
        client = MlflowClient()
        try:
            experiment = client.get_experiment_by_name(self.tracking.experiment)
            if experiment is None:
                experiment_id = client.create_experiment(
                    self.tracking.experiment,
                    artifact_location=self._artifact_location(),
                    tags=EXPERIMENT_KIND,
                )
            else:
                experiment_id = experiment.experiment_id
                if not experiment.tags.get("mlflow.experimentKind"):
                    for key, value in EXPERIMENT_KIND.items():
                        client.set_experiment_tag(experiment_id, key, value)
        except Exception as err:  # before any run exists: an input error, not a crash
            raise ConfigError(
                f"tracking.uri={self.tracking.uri}: MLflow could not open the experiment "
                f"{self.tracking.experiment!r} ({type(err).__name__}: {str(err)[:300]})",
                fix="check the URI and the store, or set tracking.mlflow=false",
            ) from err
        run = mlflow.start_run(experiment_id=experiment_id, run_name=self.run_name, tags=self.tags)
        self.run_id = run.info.run_id
        mlflow.log_params(self.params, synchronous=True)
        for dataset, context in self.inputs:
            try:
                mlflow.log_input(dataset, context=context)
            except Exception as err:  # a tracking failure must not stop training
                log.error("tracking: could not log the dataset input %s: %s", dataset.name, err)
        log.info(
            "MLflow run %s (%s) in experiment %r at %s",
            self.run_name,
            self.run_id,
            self.tracking.experiment,
            self.tracking.uri,
        )
        if self.tracking.uri.startswith(("http://", "https://")):
            # MLflow 3.17's UI opens on its GenAI view unless asked for model training.
            log.info(
                "open it: %s/#/experiments/%s/runs/%s/model-metrics?workflowType=machine_learning",
                self.tracking.uri.rstrip("/"),
                experiment_id,
                self.run_id,
            )

    def _artifact_location(self):
        """Artifacts beside a SQLite store (instead of the working directory)."""
        uri = self.tracking.uri
        if uri.startswith("sqlite:///"):
            folder = Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts"
            return (folder / self.tracking.experiment).as_uri()
        return None

    def log_artifact(self, path, folder=None):
        if self.run_id is not None:
            import mlflow

            mlflow.log_artifact(str(path), artifact_path=folder)

    def set_tags(self, tags):
        if self.run_id is not None:
            import mlflow

            mlflow.set_tags(tags)

    def adopt(self, run_id):
        """Show the finished run `run_id` (a range test, say) as a child of this run."""
        if self.run_id is not None and run_id is not None:
            from mlflow.tracking import MlflowClient

            MlflowClient(self.tracking.uri).set_tag(run_id, "mlflow.parentRunId", self.run_id)

    def __exit__(self, exc_type, exc, tb):
        try:
            self.writer.close()
        finally:
            if self.run_id is not None:
                import mlflow

                if exc_type is KeyboardInterrupt:
                    status = "KILLED"
                elif exc_type is not None or self.failure:
                    status = "FAILED"
                else:
                    status = "FINISHED"
                mlflow.end_run(status=status)
                log.info("MLflow run %s ended %s", self.run_id, status)
            if exc_type is KeyboardInterrupt and exc is not None:
                where = f"MLflow run {self.run_name} ({self.run_id}) saved as KILLED, with "
                exc.lrlab_note = (
                    where if self.run_id else ""
                ) + f"every step trained so far in {self.run_dir}"
        return False


def command_line():
    return " ".join(["python -m trainer", *sys.argv[1:]])


def source_tags():
    """What MLflow's UI shows as the run's Source: the command, not `__main__`.

    The UI shows a source name after its last `/`, so overrides holding a path or a URI
    (output folders, tracking stores: where, not what) are left out here; `lrlab.command`
    keeps the whole command line.
    """
    what = [arg for arg in sys.argv[1:] if "/" not in arg]
    return {
        "mlflow.source.name": " ".join(["python -m trainer", *what]),
        "mlflow.source.type": "LOCAL",
    }
