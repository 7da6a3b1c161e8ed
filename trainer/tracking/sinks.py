"""Where tracked values go: MLflow, TensorBoard event files, and a CSV in the run folder.

Per-step rows become `train/lr`, `train/loss` and `train/mean_iou` at step k in every sink.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

STEP_METRICS = {"lr": "train/lr", "loss": "train/loss", "mean_iou": "train/mean_iou"}


def _rows_as_metrics(rows):
    """(name, value, step) for every per-step value in `rows`."""
    from trainer.recording import COLUMNS

    for row in rows:
        step = int(row[0])
        for column, name in STEP_METRICS.items():
            yield name, float(row[COLUMNS.index(column)]), step


class MlflowSink:
    """Batched MLflow logging: one `log_batch` per at most 1000 values."""

    MAX_BATCH = 1000

    def __init__(self, client, run_id):
        self.client, self.run_id = client, run_id

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
    """Scalar summaries written by TensorBoard's own event writer, without TensorFlow ops."""

    def __init__(self, logdir):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.logdir = Path(logdir)
        self.writer = EventFileWriter(str(self.logdir), max_queue_size=1000, flush_secs=30)

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
            self.writer.add_event(Event(wall_time=now, step=step, summary=summary))

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


class CsvSink:
    """`steps.csv` in the run folder: step,lr,loss,mean_iou, one row per step (for plots)."""

    def __init__(self, path):
        from trainer.recording import COLUMNS

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
