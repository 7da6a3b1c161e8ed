"""The CSV sink: every per-step row in a CSV file of the run folder, for plots and scripts.

Configured by `conf/sink/csv.yaml`. The file is created at the first row, so a run without
per-step rows (the range test) leaves none.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from trainer.tracking.rows import COLUMNS
from trainer.tracking.sinks.base import RunInfo, Sink, Started


class CsvSink(Sink):
    """`<run folder>/<file>`: a header `step,lr,loss,mean_iou`, then one row per step.

    Args:
        file: the file's name, relative to the run folder.
    """

    def __init__(self, file="steps.csv"):
        self.file = file
        self._out = None

    def start(self, run: RunInfo) -> Started:
        self.path = Path(run.dir) / self.file
        return Started(ref={"path": str(self.path)})

    def steps(self, rows):
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("w", newline="")
            self._csv = csv.writer(self._out)
            self._csv.writerow(COLUMNS)
        self._csv.writerows(
            [int(r[0]), *(repr(float(v)) if math.isfinite(v) else str(v) for v in r[1:])]
            for r in rows
        )

    def flush(self):
        if self._out is not None:
            self._out.flush()

    def close(self, status):
        if self._out is not None:
            self._out.close()
