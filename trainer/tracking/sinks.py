"""Where tracked values go: MLflow, TensorBoard event files, and a CSV in the run folder.

Sinks run in the writer process (`trainer.tracking.writer`), built there from plain
arguments, and import neither TensorFlow nor anything of the training process.
Per-step rows become `train/lr`, `train/loss` and `train/mean_iou` at step k in every sink.
"""

from __future__ import annotations

import csv
import math
import os
import socket
import time
from pathlib import Path

from trainer.tracking.rows import COLUMNS, STEP_METRICS


def _rows_as_metrics(rows):
    """(name, value, step) for every per-step value in `rows`."""
    for row in rows:
        step = int(row[0])
        for column, name in STEP_METRICS.items():
            yield name, float(row[COLUMNS.index(column)]), step


class MlflowSink:
    """Batched MLflow logging to an existing run: one `log_batch` per at most 1000 values."""

    MAX_BATCH = 1000

    def __init__(self, uri, run_id):
        from mlflow.tracking import MlflowClient

        self.client, self.run_id = MlflowClient(tracking_uri=uri), run_id

    def steps(self, rows):
        self._log(list(_rows_as_metrics(rows)))

    def scalars(self, values, step):
        self._log([(name, float(v), step) for name, v in values.items()])

    def _log(self, triples):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for name, value, step in triples]
        for i in range(0, len(metrics), self.MAX_BATCH):
            self.client.log_batch(
                self.run_id, metrics=metrics[i : i + self.MAX_BATCH], synchronous=True
            )

    def flush(self):
        pass

    def close(self):
        pass


class TensorBoardSink:
    """Scalar summaries in a TensorBoard event file, written without TensorFlow.

    TensorBoard's own record framing (length, masked CRC32C, data, masked CRC32C) over a
    plain file, so the writer process never imports TensorFlow.
    """

    def __init__(self, logdir):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.0"
        self.file = (self.logdir / name).open("wb")
        self.records = RecordWriter(self.file)
        self.records.write(
            Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        )

    def steps(self, rows):
        self._write(_rows_as_metrics(rows))

    def scalars(self, values, step):
        self._write((name, float(v), step) for name, v in values.items())

    def _write(self, triples):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        now = time.time()
        for name, value, step in triples:
            summary = Summary(value=[Summary.Value(tag=name, simple_value=value)])
            self.records.write(Event(wall_time=now, step=step, summary=summary).SerializeToString())

    def flush(self):
        self.records.flush()

    def close(self):
        self.records.close()


class CsvSink:
    """`steps.csv` in the run folder: step,lr,loss,mean_iou, one row per step (for plots)."""

    def __init__(self, path):
        self.path = Path(path)
        self.file = self.path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(COLUMNS)

    def steps(self, rows):
        self.writer.writerows(
            [int(r[0]), *(repr(float(v)) if math.isfinite(v) else str(v) for v in r[1:])]
            for r in rows
        )

    def scalars(self, values, step):
        pass

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()


SINKS = {"csv": CsvSink, "tensorboard": TensorBoardSink, "mlflow": MlflowSink}
