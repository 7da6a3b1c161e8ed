"""The CSV sink: the run's values as CSV files in the run folder, for plots and scripts.

Configured by `conf/sink/csv.yaml`. Each file is created at its first row, so a run
without per-step rows (the range test) leaves no `steps.csv`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from trainer.tracking.rows import COLUMNS
from trainer.tracking.sinks.base import RunInfo, Sink, Started


class CsvSink(Sink):
    """`<run folder>/<file>`: a header `step,lr,loss,mean_iou`, then one row per step; and
    `<run folder>/<scalars_file>`: `step,name,value` for every other value (epoch metrics at
    step = epoch, final test metrics at step = steps trained).

    Args:
        file: the per-step file's name, relative to the run folder.
        scalars_file: the other values' file, relative to the run folder.
    """

    def __init__(self, file="steps.csv", scalars_file="scalars.csv"):
        self.file, self.scalars_file = file, scalars_file
        self._files = {}

    def start(self, run: RunInfo) -> Started:
        self.dir = Path(run.dir)
        return Started(
            ref={"path": str(self.dir / self.file), "scalars": str(self.dir / self.scalars_file)}
        )

    def steps(self, rows):
        self._writer(self.file, COLUMNS).writerows(
            [int(r[0]), *(_number(v) for v in r[1:])] for r in rows
        )

    def scalars(self, values, step):
        self._writer(self.scalars_file, ("step", "name", "value")).writerows(
            [int(step), name, _number(v)] for name, v in values.items()
        )

    def _writer(self, name, header):
        if name not in self._files:
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            out = path.open("w", newline="")
            writer = csv.writer(out)
            writer.writerow(header)
            self._files[name] = (out, writer)
        return self._files[name][1]

    def flush(self):
        for out, _ in self._files.values():
            out.flush()

    def close(self, status):
        for out, _ in self._files.values():
            out.close()


def _number(value):
    value = float(value)
    return repr(value) if math.isfinite(value) else str(value)
