"""The MLflow sink: one MLflow run per tracked run, every value batched into few calls.

Configured by `conf/sink/mlflow.yaml` (the store and experiment come from `tracking.uri` and
`tracking.experiment`). Runs in the writer process; `check()` runs in the training process.
Every write after the run's creation goes through the run folder's spool
(`trainer.tracking.spool`), so that a store that goes away for a while costs no point.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

from trainer.config.errors import ConfigError
from trainer.retry import Backoff, retried
from trainer.tracking.process import process_tags
from trainer.tracking.sinks.base import RunInfo, Sink, Started, rows_as_metrics, unseen
from trainer.tracking.spool import SPOOL, Shipper, Spool, own_retries, ship

log = logging.getLogger(__name__)

# How MLflow 3 tells a model-training experiment from a GenAI one. The 3.17 UI lets its
# global GenAI / Model training switch decide instead, while it shows one (docs/training.md).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# MLflow's tracking URI schemes (a bare path is a folder store).
SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "file")
LOCAL_FIX = "unset MLFLOW_TRACKING_URI (or set tracking.uri=sqlite:///mlflow.db) to log locally"
DROP_FIX = "or leave MLflow out: sink=[tensorboard,csv]"
# Set at the start and every minute after while the run is open (trainer.tracking.repair).
HEARTBEAT_TAG = "lrlab.heartbeat"
RUN_DIR_TAG = "lrlab.run_dir"  # the run folder, on the machine of `lrlab.host`


def _tls():
    """The TLS settings MLflow's own client takes from the environment, for the checks made
    before it starts: `MLFLOW_TRACKING_SERVER_CERT_PATH` (a CA bundle, e.g. the team's own
    CA) and `MLFLOW_TRACKING_INSECURE_TLS=true` (no verification at all)."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return ssl._create_unverified_context()  # what the user asked for, as MLflow does
    return ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))


def _check_sqlite_writable(uri, path):
    """The SQLite store can be written: its folder exists and takes new files (SQLite keeps
    its journal beside the database), and an existing database file is writable. MLflow
    itself finds a read-only file only at its first insert, after TensorFlow has loaded,
    in a SQLAlchemy traceback. (`access` also sees a read-only mount, for root too.)"""
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(
            f"tracking.uri={uri}: the folder {folder} does not exist",
            fix="create it, or name a SQLite file in an existing folder",
        )
    fix = (
        "make it writable (chmod u+w, or a mount that is not read-only), or log elsewhere: "
        "tracking.uri=sqlite:///PATH/mlflow.db"
    )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"tracking.uri={uri}: the folder {folder} is read-only for this user", fix=fix
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"tracking.uri={uri}: the SQLite store {path} is read-only", fix=fix)


class MlflowSink(Sink):
    """Logs to the MLflow run it starts in experiment `experiment` of the store at `uri`.

    Args:
        uri: an MLflow tracking URI (`sqlite:///mlflow.db`, `http://host:5000`, ...).
        experiment: the experiment's name; created on first use.
        health_timeout: seconds a server may take to answer `/health` in `check()`.
        upload_wait: seconds the run's end waits for a store that does not answer before
            it leaves the values not yet uploaded in the spool, for `python -m
            trainer.tracking sync RUN_DIR`.
        max_delay: seconds a value may wait to be uploaded while training runs before the
            uploader stops yielding to training (see `spool.Shipper`).
    """

    def __init__(self, uri, experiment, health_timeout=3.0, upload_wait=120.0, max_delay=10.0):
        self.uri, self.experiment, self.health_timeout = uri, experiment, health_timeout
        self.upload_wait, self.max_delay = upload_wait, max_delay
        self.run_id = None
        self.disk_full = None  # the OSError of a spool write that found no room

    # --- in the training process ----------------------------------------------------------
    def check(self):
        """Fail in seconds, naming the URI, when the store cannot be reached.

        A server must answer `/health`; a SQLite file's folder must exist. Without this,
        MLflow's client retries an unreachable server for minutes before a run could start.
        """
        uri = self.uri
        if not isinstance(uri, str) or not uri:
            raise ConfigError(
                f"tracking.uri must be an MLflow tracking URI such as sqlite:///mlflow.db or "
                f"http://host:5000. Received: tracking.uri={uri!r}",
                fix=LOCAL_FIX,
            )
        if not self.experiment:
            raise ConfigError(
                f"tracking.experiment must be a non-empty name. Received: "
                f"tracking.experiment={self.experiment!r}",
                fix="e.g. tracking.experiment=lrlab",
            )
        if not isinstance(self.upload_wait, int | float) or self.upload_wait < 0:
            raise ConfigError(
                f"sink.mlflow.upload_wait must be a number of seconds >= 0. Received: "
                f"{self.upload_wait!r}",
                fix="e.g. sink.mlflow.upload_wait=120",
            )
        if not isinstance(self.max_delay, int | float) or self.max_delay <= 0:
            raise ConfigError(
                f"sink.mlflow.max_delay must be a number of seconds > 0. Received: "
                f"{self.max_delay!r}",
                fix="e.g. sink.mlflow.max_delay=10",
            )
        scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
        if "://" in uri and scheme not in SCHEMES:
            raise ConfigError(
                f"tracking.uri={uri!r}: unknown scheme {scheme!r}; MLflow takes "
                f"{', '.join(SCHEMES)}",
                fix=f"e.g. tracking.uri=http://host:5000, or {LOCAL_FIX}",
            )
        if scheme in ("http", "https"):
            self._check_server()
        elif scheme == "sqlite":
            path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
            if path and path != ":memory:":
                _check_sqlite_writable(uri, Path(path).resolve())

    def _check_server(self):
        """The server answers `/health`, and the experiment's lookup with the credentials
        MLflow will use (`MLFLOW_TRACKING_USERNAME`/`_PASSWORD` or `_TOKEN`): a missing or
        wrong password, or a host name the server refuses, fails here, not after loading."""
        import urllib.error

        uri = self.uri.rstrip("/")
        cert = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        if cert is not None and not Path(cert).is_file():
            # Empty, MLflow's client passes it to requests as verify="", which turns
            # certificate checks off without a word.
            raise ConfigError(
                f"MLFLOW_TRACKING_SERVER_CERT_PATH={cert!r} is no file"
                + (
                    " (empty, MLflow would not check the server's certificate at all)"
                    if not cert
                    else ""
                ),
                fix="point it at the CA certificate (PEM) the server's certificate is signed "
                "by, or unset it for a certificate from a public CA",
            )
        try:
            self._get(f"{uri}/health")
        except urllib.error.HTTPError as err:
            if err.code not in (401, 403):  # a server that wants credentials is still there
                raise ConfigError(
                    f"tracking.uri={uri}: the MLflow server answered {err.code} at /health",
                    fix=f"check the address, or {LOCAL_FIX}",
                ) from err
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise ConfigError(
                    f"tracking.uri={uri}: the server's TLS certificate is not trusted "
                    f"({reason.verify_message})",
                    fix="point MLFLOW_TRACKING_SERVER_CERT_PATH at the team's CA certificate "
                    "(PEM), as MLflow's client reads it too; use the name the certificate "
                    "is for (docs/deploy.md)",
                ) from err
            raise ConfigError(
                f"tracking.uri={uri}: no MLflow server answers there ({reason})",
                fix=f"start the server (mlflow server --port 5000), or {LOCAL_FIX}, {DROP_FIX}",
            ) from err
        query = urlencode({"experiment_name": self.experiment})
        try:
            self._get(f"{uri}/api/2.0/mlflow/experiments/get-by-name?{query}", auth=True)
        except urllib.error.HTTPError as err:
            body = err.read(300).decode(errors="replace")
            user = os.environ.get("MLFLOW_TRACKING_USERNAME")
            if err.code == 401:
                raise ConfigError(
                    f"tracking.uri={uri}: the MLflow server wants a user and password"
                    + (f" and refused those of {user!r}" if user else ", and none is set"),
                    fix="set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your "
                    "account on that server (docs/deploy.md)",
                ) from err
            if err.code == 403 and "Host header" in body:
                raise ConfigError(
                    f"tracking.uri={uri}: the MLflow server refuses the host name "
                    f"{urlsplit(uri).netloc!r} (MLflow 3.5+ answers only the "
                    "hosts in its --allowed-hosts)",
                    fix="add it to the server's --allowed-hosts (MLFLOW_ALLOWED_HOSTS in "
                    "docker/.env), or use a name it allows",
                ) from err
            if err.code == 403:
                raise ConfigError(
                    f"tracking.uri={uri}: the MLflow user {user!r} may not read experiment "
                    f"{self.experiment!r}",
                    fix="ask its owner or an admin for EDIT permission, or log to another "
                    "experiment: tracking.experiment=NAME",
                ) from err
            # 404: the experiment does not exist yet, and is created at the start
        except (OSError, ValueError):
            pass  # it answered /health a moment ago: MLflow's own retries take it from here

    def _get(self, url, auth=False):
        import base64
        import urllib.request

        request = urllib.request.Request(url)
        if auth and os.environ.get("MLFLOW_TRACKING_TOKEN"):
            request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
        elif auth and os.environ.get("MLFLOW_TRACKING_USERNAME"):
            pair = (
                f"{os.environ['MLFLOW_TRACKING_USERNAME']}:"
                f"{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
            )
            request.add_header("Authorization", f"Basic {base64.b64encode(pair.encode()).decode()}")
        with urllib.request.urlopen(request, timeout=self.health_timeout, context=_tls()):
            pass

    # --- in the writer process --------------------------------------------------------------
    def start(self, run: RunInfo) -> Started:
        from mlflow.tracking import MlflowClient

        self.spool = Spool(run.dir)
        self.have = {}  # {metric: last step} the run already has (a resumed run's)
        own_retries()
        with _store_made_once(self.uri):  # the client makes a new store's schema
            self.client = _Patient(MlflowClient(tracking_uri=self.uri))
        if run.resume and "mlflow" in run.resume:
            return self._reopen(run, run.resume["mlflow"])
        if self.spool.exists:
            raise ConfigError(
                f"the run folder {run.dir} holds values of an earlier MLflow run not yet "
                f"uploaded ({SPOOL})",
                fix=f"upload them first: python -m trainer.tracking sync {run.dir}; or choose "
                "another folder (hydra.run.dir)",
            )
        experiment_id = self._experiment_id()
        # Where its spool is, for `repair` to upload what a killed run left there.
        tags = {HEARTBEAT_TAG: utc_now(), RUN_DIR_TAG: str(Path(run.dir).resolve())}
        if run.parent and "mlflow" in run.parent:
            tags["mlflow.parentRunId"] = run.parent["mlflow"]["run_id"]
            self._check_parent(run.parent["mlflow"])
        started = self.client.create_run(experiment_id, tags=tags, run_name=run.name)
        self.run_id = started.info.run_id
        for child in run.children:
            if "mlflow" in child:
                self.client.set_tag(child["mlflow"]["run_id"], "mlflow.parentRunId", self.run_id)
        if run.inputs:
            self._log_inputs(run.inputs)
        where = (
            f"MLflow run {run.name} ({self.run_id}) in experiment {self.experiment!r} at {self.uri}"
        )
        ref = {"run_id": self.run_id, "experiment_id": experiment_id, "uri": absolute(self.uri)}
        self.spool.create({**ref, "name": run.name, "process": process_tags()})
        self.shipper = Shipper(self.spool, self.client, self.run_id, self.max_delay)
        self.shipper.start()
        return Started(ref=ref, where=where, view=view_line(ref))

    def _reopen(self, run, ref):
        """Continue the run `ref` of a killed process (`trainer.resume`): upload what its
        spool still holds, learn the last step of every metric, and mark it RUNNING."""
        self.run_id = ref["run_id"]
        if self.spool.exists:
            self.spool.reopen()
        else:
            self.spool.create({**ref, "name": run.name, "process": process_tags()})
        self.shipper = Shipper(self.spool, self.client, self.run_id, self.max_delay)
        self.shipper.start()
        self.shipper.hurry()
        if not self._drain():
            raise ConfigError(
                f"tracking.uri={self.uri}: could not upload what the killed run left in "
                f"{self.spool.path} ({self.shipper.error or 'no answer'})",
                fix="resume once the store answers",
            )
        for key in self.client.get_run(self.run_id).data.metrics:
            steps = [m.step for m in self.client.get_metric_history(self.run_id, key)]
            self.have[key] = max(steps, default=-1)
        self.client.update_run(self.run_id, "RUNNING")
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, utc_now())
        where = f"MLflow run {run.name} ({self.run_id}) resumed at {self.uri}"
        return Started(ref=dict(ref), where=where, view=view_line(ref))

    def _check_parent(self, parent):
        """Warn when the parent run is not in this store: the child would not show under it."""
        try:
            self.client.get_run(parent["run_id"])
        except Exception:
            log.warning(
                "the sweep's parent run %s (in %s) is not in this store, %s: this run will not "
                "show under it; give every machine the same MLFLOW_TRACKING_URI",
                parent["run_id"],
                parent.get("uri", "another store"),
                self.uri,
            )

    def _experiment_id(self):
        """The experiment's id, made when missing.

        A sweep's trials often open a new experiment at the same moment: the creations that
        lose the race fail ('already exists') and use the winner's experiment.
        """
        try:
            experiment = self.client.get_experiment_by_name(self.experiment)
            if experiment is None:
                try:
                    return self.client.create_experiment(
                        self.experiment,
                        artifact_location=self._artifact_location(),
                        tags=EXPERIMENT_KIND,
                    )
                except Exception:
                    experiment = self.client.get_experiment_by_name(self.experiment)
                    if experiment is None:  # not a lost race: the store refused
                        raise
            self._mark_kind(experiment)
            return experiment.experiment_id
        except Exception as err:  # before any run exists: an input error, not a crash
            raise ConfigError(
                f"tracking.uri={self.uri}: MLflow could not open the experiment "
                f"{self.experiment!r} ({type(err).__name__}: {str(err)[:300]})",
                fix=f"check the URI and the store, {DROP_FIX}",
            ) from err

    def _mark_kind(self, experiment):
        """Tag an experiment made elsewhere (the UI, a script) with its kind, as MLflow's UI
        asks for it otherwise. Only cosmetic, so never fatal: when several trials tag one
        experiment at once, PostgreSQL's unique key lets one insert in and fails the others."""
        if experiment.tags.get("mlflow.experimentKind"):
            return
        try:
            for key, value in EXPERIMENT_KIND.items():
                self.client.set_experiment_tag(experiment.experiment_id, key, value)
        except Exception as err:
            log.debug("did not tag experiment %s with its kind: %s", experiment.name, err)

    def _artifact_location(self):
        """Artifacts beside a SQLite store (instead of the working directory)."""
        if self.uri.startswith("sqlite:///"):
            folder = Path(self.uri[len("sqlite:///") :]).resolve().parent / "mlartifacts"
            return (folder / self.experiment).as_uri()
        return None

    def _log_inputs(self, inputs):
        from mlflow.entities import DatasetInput, InputTag

        try:
            datasets = [
                DatasetInput(_dataset_entity(d), tags=[InputTag("mlflow.data.context", d.context)])
                for d in inputs
            ]
            self.client.log_inputs(self.run_id, datasets=datasets)
        except Exception as err:  # the Dataset column is a convenience, never a failure
            log.warning("could not log the dataset inputs: %s", err)

    def params(self, values):
        self._append({"params": {k: str(v)[:6000] for k, v in values.items()}})

    def tags(self, values):
        self._append({"tags": {k: str(v) for k, v in values.items()}})

    def steps(self, rows):
        self._log(rows_as_metrics(rows))

    def scalars(self, values, step):
        self._log((name, float(v), step) for name, v in values.items())

    def _log(self, triples):
        now = int(time.time() * 1000)  # fixed here, so that a line sent twice is stored once
        triples = unseen(triples, self.have)
        if triples:
            self._append({"metrics": [(name, value, now, step) for name, value, step in triples]})

    def artifacts(self, paths, folder=None):
        self._append({"artifacts": [str(p) for p in paths], "folder": folder})

    def model(self, name, file, mlflow_dir=None, step=0):
        """An MLflow model of the run (the Models column, the registry), from `mlflow_dir`;
        the `.keras` file as an artifact where there is no such folder."""
        if mlflow_dir is None:
            return self.artifacts([file], name)
        self._append({"model": mlflow_dir, "name": name, "step": step})

    def _append(self, record):
        if self.shipper.error is not None:  # a refused upload: the writer switches us off
            raise self.shipper.error
        if self._spooled(lambda: self.spool.append(record)):
            self.shipper.notify()
        else:
            ship(self.client, self.run_id, record)

    def _spooled(self, write):
        """Do `write` to the spool; False, and direct uploads from then on, where the disk
        has no room for it (or had none before)."""
        if self.disk_full is not None:
            return False
        try:
            write()
            return True
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            self._spool_full(err)
            return False

    def _spool_full(self, err):
        """No room for the spool: upload what it holds, then every write directly (slower,
        and a store away now fails the sink), so that the run still gets every value and
        its end."""
        self.disk_full = err
        log.error(
            "no space left on device in %s: the MLflow sink now uploads each write directly "
            "instead of through %s",
            self.spool.path.parent,
            self.spool.path.name,
        )
        self.shipper.hurry()
        self.shipper.drain(self.upload_wait)

    def flush(self):
        if self.shipper.error is not None:
            raise self.shipper.error
        self._spooled(self.spool.fsync)

    def heartbeat(self):
        if self.run_id is not None:
            self.shipper.beat(HEARTBEAT_TAG, utc_now())

    def close(self, status):
        """Upload everything with the final status; a store still away after `upload_wait`
        seconds leaves the rest in the spool, and the returned note says how to send it."""
        if self.run_id is None:
            return None
        self._append({"end": status, "time": int(time.time() * 1000)})
        self.shipper.hurry()  # the run's last values at normal priority, whatever else runs
        done = self._drain()
        self.shipper.stop()
        self.spool.close()
        if done:
            self.spool.remove()
            return None
        if self.shipper.error is not None:
            raise self.shipper.error
        lines, points = self.spool.pending()
        how = "did not answer" if self.shipper.down_since is not None else "was still uploading"
        return (
            f"the MLflow store at {self.uri} {how} after {self.upload_wait:.0f} s: "
            f"{points} points and {lines} writes of run {self.run_id} ({status}) wait in "
            f"{self.spool.path}; upload them, once it is back, with: "
            f"python -m trainer.tracking sync {self.spool.path.parent}"
        )

    def _drain(self, quiet_s=2.0, every_s=15.0):
        """`shipper.drain(upload_wait)`, saying on the console what it waits for once it has
        waited `quiet_s` seconds (a store away, a machine busy), then every `every_s`."""
        began = time.monotonic()
        wait = min(quiet_s, self.upload_wait)
        while not self.shipper.drain(wait):
            if self.shipper.error is not None:
                return False
            waited = time.monotonic() - began
            left = self.upload_wait - waited
            if left <= 0:
                return False
            log.warning(
                "waiting for the MLflow store at %s: %d points left, up to %.0f s more",
                self.uri,
                self.shipper.pending_points(),
                left,
            )
            wait = min(every_s, left)
        return True


def run_url(ref, ui="http://127.0.0.1:5000"):
    """The run's page in the MLflow UI, in its model-training view: MLflow 3.17's UI opens
    on its GenAI view (a global switch kept in the browser) whatever the experiment's
    `mlflow.experimentKind` says, and `workflowType=machine_learning` picks the view."""
    base = ref["uri"].rstrip("/") if ref["uri"].startswith(("http://", "https://")) else ui
    return (
        f"{base}/#/experiments/{ref['experiment_id']}/runs/{ref['run_id']}"
        "?workflowType=machine_learning"
    )


def view_line(ref):
    """How to look at the run: its URL, after the command that serves a local store."""
    if ref["uri"].startswith(("http://", "https://")):
        return f"see it in MLflow: {run_url(ref)}"
    return f"see it in MLflow: mlflow ui --backend-store-uri {ref['uri']}, then {run_url(ref)}"


@contextlib.contextmanager
def _store_made_once(uri):
    """Processes that open a SQLite store take turns while it may be new.

    MLflow creates (and migrates) a SQLite store's schema on first use; several processes
    doing it at once fail in the migration (`table _alembic_tmp_... already exists`,
    `Online migration expected to match one row`): 8 of 10 processes started together on
    a fresh file, here. An exclusive lock on the store's folder (flock, released by the
    kernel even when the holder is killed) lets one make it while the others wait; it is
    held while the client is made, which is when MLflow creates or migrates the schema.
    """
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        yield
        return
    folder = os.open(Path(uri[len("sqlite:///") :]).resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # and with it the lock


def utc_now():
    """The time as `lrlab.heartbeat` holds it: ISO 8601, UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Patient:
    """An MlflowClient whose calls wait while another process holds a SQLite store's lock.

    Parallel trials share one SQLite file; SQLite lets one writer in at a time, and MLflow
    gives up on a lock after SQLite's 5 s. A locked call wrote nothing (its transaction
    rolled back), so calling it again is safe: backing off from 50 ms to 2 s, for up to
    `patience` seconds, after which the error stands (and the sink is switched off).
    """

    BACKOFF = Backoff(0.05, 2.0)

    def __init__(self, client, patience=300.0):
        self.client, self.patience = client, patience

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            return retried(
                lambda: method(*args, **kwargs),
                lambda err: "database is locked" in str(err),
                self.BACKOFF,
                patience=self.patience,
            )

        return call


def is_local(uri):
    """Whether `uri` is a store on this machine's disk (a SQLite file or a folder)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def absolute(uri):
    """`uri` with a relative SQLite or folder path made absolute: the same store from any
    working folder (a sweep's trials on a Ray worker run in another)."""
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if "://" not in uri:
        return str(Path(uri).resolve())
    return uri


def _dataset_entity(described):
    """An MLflow Dataset entity from a `DatasetInput`: MLflow's own schema, no arrays."""
    import warnings

    import mlflow.data
    from mlflow.entities import Dataset

    features = np.empty((0, *described.features_shape[1:]), described.features_dtype)
    targets = np.empty((0, *described.targets_shape[1:]), described.targets_dtype)
    with warnings.catch_warnings():
        # MLflow finds two equal local-file source classes for a file:// URI and says so.
        warnings.simplefilter("ignore", UserWarning)
        entity = mlflow.data.from_numpy(
            features,
            targets=targets,
            source=described.source,
            name=described.name,
            digest=described.digest,
        ).to_dict()  # MLflow's public form of its dataset entity's fields
    profile = {}
    for part, shape, dtype in (
        ("features", described.features_shape, described.features_dtype),
        ("targets", described.targets_shape, described.targets_dtype),
    ):
        size = int(np.prod(shape))
        profile.update(
            {
                f"{part}_shape": list(shape),
                f"{part}_size": size,
                f"{part}_nbytes": size * np.dtype(dtype).itemsize,
            }
        )
    return Dataset(
        entity["name"],
        entity["digest"],
        entity["source_type"],
        entity["source"],
        entity.get("schema"),
        json.dumps(profile),
    )
