"""`python -m trainer.tracking sync RUN_DIR...`: upload what a run's MLflow store missed.

A run whose store was away when it ended (longer than `sink.mlflow.upload_wait`), or whose
processes were killed while it was away, leaves its values in `mlflow_spool.jsonl` in its run
folder (`trainer.tracking.spool`). `sync` ships them from where the run stopped, in order,
to the run in the spool's header (or to the same run id at `--uri`, for a store that moved),
ends the run with the status it ended with, and removes the spool: a second `sync` finds
nothing to do, and no point is stored twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from trainer.config.errors import ConfigError
from trainer.tracking.process import process_gone
from trainer.tracking.spool import Spool, own_retries, ship, transient

log = logging.getLogger(__name__)


@dataclass
class Synced:
    folder: str
    run_id: str | None
    lines: int  # writes shipped
    points: int  # metric points among them
    status: str | None  # the status the run was closed with; None: left as it was


def sync(folder, uri=None):
    """Ship the spool of the run folder `folder`; returns what was shipped.

    Raises ConfigError naming the folder when it holds no run, when the run's writer is
    still alive (it ships its spool itself), or when the store cannot be reached (the spool
    stays, from the first line not shipped).
    """
    from mlflow.tracking import MlflowClient

    folder = Path(folder)
    spool = Spool(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder", fix="name a run folder (hydra.run.dir)")
    if not spool.exists:
        return Synced(str(folder), None, 0, 0, None)
    header = spool.header()
    if process_gone(header.get("process", {})) is False:
        raise ConfigError(
            f"the run in {folder} is still being written by process "
            f"{header['process'].get('lrlab.pid')} on this machine; it uploads its spool itself",
            fix="wait for it to end (or stop it), then sync",
        )
    uri = uri or header["uri"]
    own_retries()  # a store still away is said at once; sync again resumes where it stopped
    client = MlflowClient(tracking_uri=uri)
    run_id = header["run_id"]
    offset = spool.shipped()
    lines = points = 0
    status = None
    while (item := spool.read(offset)) is not None:
        record, after = item
        try:
            ship(client, run_id, record)
        except Exception as err:
            if transient(err):
                raise ConfigError(
                    f"the MLflow store at {uri} does not answer ({str(err).splitlines()[0]}); "
                    f"{lines} writes of {folder} uploaded, the rest kept in {spool.path}",
                    fix="run sync again once it is back, or name where it moved with --uri",
                ) from err
            raise ConfigError(
                f"the MLflow store at {uri} refused a write of run {run_id} from {spool.path}: "
                f"{str(err).splitlines()[0][:300]}",
                fix="check that --uri names the store the run was created in",
            ) from err
        spool.mark(after)
        offset = after
        lines += 1
        points += len(record.get("metrics", ()))
        status = record.get("end", status)
    if status is None:  # its processes were killed before it ended
        status = "KILLED"
        ship(client, run_id, {"end": status, "time": _last_time(spool)})
    spool.remove()
    return Synced(str(folder), run_id, lines, points, status)


def _last_time(spool):
    """The time of the spool's last write, in ms (the run's end, as far as can be known)."""
    return int(spool.path.stat().st_mtime * 1000)
