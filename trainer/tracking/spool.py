"""The MLflow sink's spool: every write of a run goes to local disk first, then to the store.

A tracking server that is down (restarted, upgraded, a network blip) must cost neither
training time nor a point. The MLflow sink appends each write (a block of per-step rows,
params, tags, artifacts, the final status) as one JSON line to `mlflow_spool.jsonl` in the
run folder, which takes microseconds and survives the process being killed; a thread ships
the lines to the store in order, retrying with backoff (0.5 s doubling to 30 s) while the
store cannot be reached. How far it got is kept in `mlflow_spool.offset` (replaced
atomically after each line), so that whatever stops the process, `python -m trainer.tracking
sync RUN_DIR` ships the rest later, each point once: a line whose upload succeeded but whose
offset was not saved is sent again, and MLflow stores a metric with the same key, step,
timestamp and value once (`SqlAlchemyStore._log_metrics`); params, tags, artifacts and the
status are set again to the same values.

Memory stays bounded: the thread holds one line (one hand-over of rows,
`tracking.flush_every_steps` x 3 points). The spool grows on disk while the store is away
and is removed once every line reached the store and the run closed.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from trainer.retry import Backoff

log = logging.getLogger(__name__)

SPOOL, OFFSET = "mlflow_spool.jsonl", "mlflow_spool.offset"
MAX_METRICS, MAX_PARAMS = 1000, 100  # per log_batch call (MLflow's limits)
# The run's tags a logged model gets too: the UI's "Logged from" column shows the source.
SOURCE_TAGS = ("mlflow.source.", "mlflow.user")


class Spool:
    """`mlflow_spool.jsonl` of a run folder: a header line (which run, in which store), then
    one line per write; and how many bytes of it the store has (`shipped`)."""

    def __init__(self, folder):
        self.path = Path(folder) / SPOOL
        self.offset_path = Path(folder) / OFFSET
        self._out = None
        self.end = self.path.stat().st_size if self.path.exists() else 0

    @property
    def exists(self):
        return self.path.exists()

    def create(self, header):
        """Start the spool of a new run with its `header` (run_id, uri, ...)."""
        self._out = self.path.open("w", encoding="utf-8")
        self.append(header)
        self.mark(self.end)  # the header is not a write to ship

    def reopen(self):
        """Append to an existing spool (a resumed run), dropping a line cut short by a kill."""
        with self.path.open("rb+") as f:
            data = f.read()
            whole = data.rfind(b"\n") + 1
            f.truncate(whole)
        self.end = whole
        self._out = self.path.open("a", encoding="utf-8")

    def header(self):
        with self.path.open(encoding="utf-8") as f:
            return json.loads(f.readline())

    def append(self, record):
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._out.flush()  # in the kernel's hands: survives this process being killed
        self.end = self._out.tell()

    def fsync(self):
        if self._out is not None:
            os.fsync(self._out.fileno())

    def shipped(self):
        """Bytes of the spool already in the store."""
        try:
            return int(self.offset_path.read_text())
        except (OSError, ValueError):
            return 0

    def mark(self, offset):
        tmp = self.offset_path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.offset_path)  # atomic: the old offset or the new one, never half

    def read(self, offset):
        """(record, offset after it) of the line at `offset`, or None when no whole line
        (ending in a newline) is there yet."""
        with self.path.open("rb") as f:
            f.seek(offset)
            line = f.readline()
        if not line.endswith(b"\n"):
            return None
        return json.loads(line), offset + len(line)

    def pending(self):
        """(lines, points) written but not yet in the store."""
        lines = points = 0
        offset = self.shipped()
        while (item := self.read(offset)) is not None:
            record, offset = item
            lines += 1
            points += len(record.get("metrics", ()))
        return lines, points

    def close(self):
        if self._out is not None:
            with contextlib.suppress(OSError):  # a full disk: what could not be written
                self._out.close()
            self._out = None

    def remove(self):
        self.close()
        for path in (self.path, self.offset_path):
            path.unlink(missing_ok=True)


def own_retries():
    """Leave retrying to the spool: MLflow's client would retry a request to a store that is
    away 7 times over minutes, holding everything behind it. Either setting stays the user's
    to choose (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def ship(client, run_id, record):
    """Apply one spool line to the MLflow run `run_id` (each call safe to repeat)."""
    from mlflow.entities import Metric, Param, RunTag

    if "metrics" in record:
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in record["metrics"]]
        for i in range(0, len(metrics), MAX_METRICS):
            client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS], synchronous=True)
    elif "params" in record:
        params = [Param(k, v) for k, v in record["params"].items()]
        for i in range(0, len(params), MAX_PARAMS):
            client.log_batch(run_id, params=params[i : i + MAX_PARAMS])
    elif "tags" in record:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in record["tags"].items()])
    elif "artifacts" in record:
        for path in record["artifacts"]:
            if Path(path).exists():
                client.log_artifact(run_id, path, artifact_path=record.get("folder"))
            else:
                log.warning("artifact %s is gone; not uploaded", path)
    elif "model" in record:
        log_model(client, run_id, record)
    elif "end" in record:
        client.set_terminated(run_id, record["end"], end_time=record["time"])


def log_model(client, run_id, record):
    """The folder `record["model"]` (a model in MLflow's format) as the logged model
    `record["name"]` of the run, what `mlflow.<flavor>.log_model` makes, safe to repeat.

    Written out rather than calling `Model.log`, which saves the model itself from the
    training process; here the folder exists and only needs uploading. A logged model left
    unfinished by a killed upload is reused; a finished one is not made again.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    name, folder = record["name"], Path(record["model"])
    if not (folder / "MLmodel").exists():
        log.warning("model folder %s is gone; not uploaded", folder)
        return
    run = client.get_run(run_id)
    found = [
        m
        for m in client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if m.name == name
    ]
    if found and found[0].status == LoggedModelStatus.READY:
        return
    model = found[0] if found else None
    if model is None:  # with the run's params and source, as `Model.log` makes it
        model = client.create_logged_model(
            run.info.experiment_id,
            name=name,
            source_run_id=run_id,
            params={k: str(v)[:6000] for k, v in run.data.params.items()},
            tags={k: v for k, v in run.data.tags.items() if k.startswith(SOURCE_TAGS)},
        )
    # The MLmodel file names the logged model and run it belongs to, as MLflow's own does.
    mlmodel = Model.load(str(folder))
    mlmodel.model_id = mlmodel.model_uuid = model.model_id
    mlmodel.run_id, mlmodel.artifact_path = run_id, model.artifact_location
    mlmodel.save(str(folder / "MLmodel"))
    client.log_model_artifacts(model.model_id, str(folder))
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=record.get("step", 0))])
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)


def transient(err):
    """Whether a failed call may succeed later: the store unreachable or busy (no answer,
    HTTP 429 or 5xx, a locked SQLite file), not a refusal of the request itself (4xx)."""
    from mlflow.exceptions import MlflowException

    if "database is locked" in str(err):
        return True
    if isinstance(err, MlflowException):
        status = err.get_http_status_code()
        return status >= 500 or status == 429
    return isinstance(err, OSError)  # ConnectionError and requests' errors are OSErrors


class Shipper:
    """Ships a `Spool`'s lines to the run, in order, from `spool.shipped()` on, in a thread.

    Transient failures are retried with backoff for as long as the process lives; any other
    failure stops shipping and is kept in `error` (the lines stay in the spool).

    The shipping thread yields to training, with a bounded delay: while it keeps up it runs
    at nice 19, the lowest share of the CPU that still always gets some (Linux sets nice per
    thread; SCHED_IDLE, the earlier choice, gets none while any other process runs, and a
    run on a busy machine then ended with nothing in MLflow). Whenever the oldest line not yet
    shipped is older than `max_delay` seconds, or the run is ending (`hurry`), a fresh thread
    at the creating thread's normal priority takes over (no thread can raise its own priority
    back without CAP_SYS_NICE, but a new one starts at its creator's), and drops to nice 19
    itself once it has caught up. The new thread waits for the line the old one is sending,
    so that no line is ever sent twice at once; that wait is bounded because the yielding
    thread sends only per-step values (one block of rows, what training makes while it
    runs). Every other line (params, tags, artifacts, a model, the end) is rare and some are
    heavy: a model's upload imports MLflow's model code and copies megabytes, which at nice
    19 beside busy processes took minutes (CI: 126 s, the run's end waiting on it). The
    yielding thread leaves such a line to a thread at normal priority, which the watchdog
    starts. The watchdog, at normal priority and nearly always asleep, also checks the
    delay every second.
    """

    BACKOFF = Backoff(0.5, 30.0)  # waits between tries while the store is away
    NICE = 19  # the shipping thread's niceness while it keeps up

    def __init__(self, spool, client, run_id, max_delay=10.0):
        self.spool, self.client, self.run_id = spool, client, run_id
        self.max_delay = max_delay
        self.offset = spool.shipped()
        self.error = None
        self.down_since = None  # monotonic time of the first failure of the current outage
        self.outages = []  # seconds each outage lasted
        self.takeovers = 0  # normal-priority threads started because shipping fell behind
        self._changed = threading.Condition()
        self._sending = threading.Lock()  # held while a line is being shipped
        self._unmarked = False  # progress could not be written (a full disk)
        self._stopping = False
        self._beat = None  # a heartbeat tag value to set when idle
        self._written = collections.deque()  # (end offset, monotonic time) of unshipped lines
        self._worker = None  # the thread that ships now
        self._yielding = False  # whether that thread runs at nice NICE
        self._handover = False  # the yielding thread met a line for normal priority
        self._watchdog = None

    def start(self):
        with self._changed:
            self._spawn()
        self._watchdog = threading.Thread(target=self._watch, name="mlflow-watchdog", daemon=True)
        self._watchdog.start()

    def notify(self):
        with self._changed:
            if self.spool.end > self.offset and (
                not self._written or self._written[-1][0] < self.spool.end
            ):
                self._written.append((self.spool.end, time.monotonic()))
            self._changed.notify_all()

    def beat(self, tag, value):
        """Set `tag` to `value` before the next line, if the store is reachable (never
        spooled: an old heartbeat uploaded late would say nothing true)."""
        with self._changed:
            self._beat = (tag, value)
            self._changed.notify_all()

    def hurry(self):
        """Ship what is left at the calling thread's priority (a run ending: its last values
        must not wait for every other process on the machine)."""
        with self._changed:
            if self._yielding and self.error is None and not self._stopping:
                self._spawn()

    def pending_points(self):
        """Metric values written but not yet in the store."""
        return self.spool.pending()[1]

    def drain(self, timeout):
        """Wait up to `timeout` seconds for every line so far to reach the store; True if so."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self.offset >= self.spool.end or self.error is not None, timeout
            ) and (self.error is None)

    def stop(self):
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def _spawn(self):
        """A new shipping thread at this thread's priority; the one before it stops after its
        current line (called with `_changed` held)."""
        self._worker = threading.Thread(target=self._run, name="mlflow-shipper", daemon=True)
        self._yielding = self._handover = False
        self._worker.start()
        self._changed.notify_all()

    def _watch(self):
        with self._changed:
            while not self._stopping and self.error is None:
                self._changed.wait(1.0)
                oldest = self._written[0][1] if self._written else None
                late = oldest is not None and time.monotonic() - oldest > self.max_delay
                if self._handover and self._yielding:
                    self._spawn()
                elif late and self._yielding:
                    log.debug("shipping fell %.0f s behind: normal priority", self.max_delay)
                    self.takeovers += 1
                    self._spawn()

    def _run(self):
        me = threading.current_thread()
        delay, yielding = 0.0, False
        while True:
            with self._changed:
                if self.offset >= self.spool.end and not yielding and self._worker is me:
                    yielding = self._yielding = _lower_priority(self.NICE)  # caught up
                self._changed.wait_for(
                    lambda: (
                        self._stopping
                        or self._worker is not me
                        or self.offset < self.spool.end
                        or self._beat
                    )
                )
                if self._stopping or self._worker is not me:
                    return
                beat, self._beat = self._beat, None
            self._heartbeat(beat)
            at = self.offset
            if at >= self.spool.end:
                continue
            # One line at a time: a thread taking over waits for the line in flight (one
            # block of per-step values at nice 19) rather than sending it again beside it,
            # which MLflow does not take twice at once (a second insert of the same params
            # breaks a unique key, a 400; a logged model would be made twice).
            with self._sending:
                if self.offset != at:
                    continue  # the thread before this one shipped it
                record, after = self.spool.read(at)
                handover = yielding and "metrics" not in record
                err = None if handover else self._ship(record, after)
            if handover:  # for a thread at normal priority (see the class)
                with self._changed:
                    self._handover = True
                    self._changed.notify_all()
                    self._changed.wait_for(lambda: self._stopping or self._worker is not me)
                continue
            if err is None:
                delay = 0.0
                self._came_back()
                continue
            if not transient(err):
                with self._changed:
                    self.error = err
                    self._changed.notify_all()
                return
            self._went_down(err)
            delay = self.BACKOFF.after(delay)
            with self._changed:
                self._changed.wait_for(lambda: self._stopping or self._worker is not me, delay)

    def _ship(self, record, after):
        """Upload `record` and note that the store has the spool up to `after`; the error
        instead, if the upload failed."""
        try:
            ship(self.client, self.run_id, record)
        except Exception as err:
            return err
        with self._changed:
            self._mark(after)
            self.offset = after
            while self._written and self._written[0][0] <= after:
                self._written.popleft()
            self._changed.notify_all()
        return None

    def _mark(self, offset):
        """Record progress on disk; on a full disk, go on in memory (what reaches the store
        is what counts; only a `sync` after a crash would send some lines again, which
        the store takes once)."""
        try:
            self.spool.mark(offset)
        except OSError as err:
            if not self._unmarked:
                log.error(
                    "cannot record upload progress in %s (%s); uploading goes on",
                    self.spool.offset_path,
                    err.strerror or err,
                )
            self._unmarked = True

    def _heartbeat(self, beat):
        if beat is not None and self.down_since is None:
            try:
                self.client.set_tag(self.run_id, *beat)
            except Exception as err:  # the next line's upload finds out whether it is down
                log.debug("heartbeat not sent: %s", err)

    def _went_down(self, err):
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(
                "the MLflow store does not answer (%s): training goes on, every value is kept "
                "in %s and uploaded when it is back",
                str(err).split("\n")[0][:200],
                self.spool.path,
            )

    def _came_back(self):
        if self.down_since is not None:
            lasted = time.monotonic() - self.down_since
            self.outages.append(lasted)
            self.down_since = None
            log.warning("the MLflow store is back after %.0f s; uploading what it missed", lasted)


def _lower_priority(nice):
    """Give the calling thread niceness `nice` (Linux: per thread); whether it worked."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        return True
    except (AttributeError, OSError):
        return False
