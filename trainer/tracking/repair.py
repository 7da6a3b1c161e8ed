"""Runs left RUNNING by processes that were killed (SIGKILL, a lost machine, an OOM kill of the
whole process group), found and closed as KILLED: `python -m trainer.tracking repair`.

A run says where it runs and that it is alive: at its start it gets the tags `lrlab.host`,
`lrlab.pid` and `lrlab.process_start` (which tell its training process from a later one with
the same pid), and its writer process refreshes `lrlab.heartbeat` every minute while it is open
(`trainer.tracking.writer.HEARTBEAT_S`). A RUNNING run is abandoned when

- it ran on this machine and its training process is gone: certain, at once; or
- its last heartbeat is older than `stale` (default 10 minutes, ten heartbeats): a run of
  another machine, or one whose process lives on without its writer.

A run without `lrlab.heartbeat` (another client's, or an older lrlab's) is left alone. An
abandoned run whose folder (`lrlab.run_dir`) is on this machine first gets what its spool
still holds (`sync`), then ends KILLED. When
only the training process is killed, its writer sees the pipe close and ends the run KILLED
itself, so `repair` is for when both went (SIGKILL of the process group, a container stopped,
a machine lost).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trainer.config.errors import ConfigError
from trainer.tracking.process import HOST_TAG, PID_TAG, process_gone
from trainer.tracking.sinks.mlflow_sink import HEARTBEAT_TAG, RUN_DIR_TAG, absolute

REPAIRED_TAG = "lrlab.repaired"


@dataclass
class Verdict:
    run_id: str
    name: str
    abandoned: bool
    why: str
    last_seen: datetime | None


def judge(run, stale_s, now=None):
    """Whether a RUNNING MLflow run is abandoned, and why, in words."""
    now = now or datetime.now(UTC)
    tags = run.data.tags
    name = run.info.run_name or run.info.run_id
    seen = tags.get(HEARTBEAT_TAG)
    if seen is None:
        return Verdict(run.info.run_id, name, False, "no lrlab.heartbeat: left alone", None)
    seen = datetime.fromisoformat(seen)
    age = (now - seen).total_seconds()
    gone = process_gone(tags)
    if gone:
        why = f"its process {tags[PID_TAG]} on this machine is gone"
        return Verdict(run.info.run_id, name, True, why, seen)
    if gone is False:
        why = f"its process {tags[PID_TAG]} on this machine is alive"
        return Verdict(run.info.run_id, name, False, why, seen)
    if age > stale_s:
        why = f"no heartbeat for {_span(age)} (stale after {_span(stale_s)})"
        return Verdict(run.info.run_id, name, True, why, seen)
    why = f"last heartbeat {_span(age)} ago, on {tags.get(HOST_TAG, 'an unknown machine')}"
    return Verdict(run.info.run_id, name, False, why, seen)


def repair(uri, experiments, stale_s, dry_run=False):
    """Close every abandoned RUNNING run of `experiments` in the store at `uri` as KILLED,
    its end time its last heartbeat; returns the verdicts on all RUNNING runs."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        path = Path(absolute(uri)[len("sqlite:///") :])
        if not path.is_file():  # MLflow would create an empty store there
            raise ConfigError(
                f"no MLflow store at {uri}: {path} does not exist",
                fix="name the store with --uri (or MLFLOW_TRACKING_URI)",
            )
    client = MlflowClient(tracking_uri=uri)
    ids = []
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise ConfigError(
                f"no experiment {name!r} in the MLflow store at {uri}",
                fix="name one with --experiment, or the store with --uri (or MLFLOW_TRACKING_URI)",
            )
        ids.append(experiment.experiment_id)
    verdicts = []
    now = datetime.now(UTC)
    for run in _running(client, ids):
        verdict = judge(run, stale_s, now)
        verdicts.append(verdict)
        if verdict.abandoned and not dry_run:
            client.set_tag(run.info.run_id, REPAIRED_TAG, f"{now.isoformat()}: {verdict.why}")
            uploaded = _upload_spool(run, uri)
            if uploaded is not None:
                verdict.why += f"; {uploaded} points its spool held uploaded first"
                continue  # `sync` closed it, with the status its spool ends with
            end = verdict.last_seen or now
            client.set_terminated(run.info.run_id, "KILLED", end_time=int(end.timestamp() * 1000))
    return verdicts


def _upload_spool(run, uri):
    """Upload what the killed run left in its spool (`sync`), where its folder is on this
    machine; the points uploaded, or None where there is no spool of this run here."""
    from trainer.tracking.spool import Spool
    from trainer.tracking.sync import sync

    folder = run.data.tags.get(RUN_DIR_TAG)
    if not folder or run.data.tags.get(HOST_TAG) != socket.gethostname():
        return None
    spool = Spool(folder)
    if not spool.exists or spool.header().get("run_id") != run.info.run_id:
        return None
    return sync(folder, uri).points


def _running(client, experiment_ids):
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, "attributes.status = 'RUNNING'", max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def parse_span(text):
    """Seconds from `90s`, `10m`, `2h` or a plain number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = str(text).strip()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ConfigError(
            f"--stale={text!r} is not a length of time", fix="e.g. --stale 10m (s, m or h)"
        ) from None


def _span(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
