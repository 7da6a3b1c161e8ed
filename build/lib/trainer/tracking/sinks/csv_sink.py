"""The CSV sink: the run's values as CSV files in the run folder, for plots and scripts.

Configured by `conf/sink/csv.yaml`. Each file is created at its first row, so a run
without per-step rows (the range test) leaves no `steps.csv`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from trainer.tracking.rows import COLUMNS
from trainer.tracking.sinks.base import RunInfo, Sink, Started, unseen


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
        self.have = {}  # {name: last step} already in the files (a resumed run's)
        if run.resume:
            self._reopen(self.file, lambda row: {"train/lr": int(row[0])})
            self._reopen(self.scalars_file, lambda row: {row[1]: int(row[0])})
        return Started(
            ref={"path": str(self.dir / self.file), "scalars": str(self.dir / self.scalars_file)}
        )

    def steps(self, rows):
        last = self.have.get("train/lr", -1)
        self._writer(self.file, COLUMNS).writerows(
            [int(r[0]), *(_number(v) for v in r[1:])] for r in rows if r[0] > last
        )

    def scalars(self, values, step):
        triples = unseen([(name, v, step) for name, v in values.items()], self.have)
        self._writer(self.scalars_file, ("step", "name", "value")).writerows(
            [int(step), name, _number(v)] for name, v, step in triples
        )

    def _reopen(self, name, last_of):
        """Append to a killed run's file: drop a row cut short, learn the last steps."""
        path = self.dir / name
        if not path.exists():
            return
        with path.open("rb+") as f:
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)
        with path.open(newline="") as f:
            for row in list(csv.reader(f))[1:]:
                for key, step in last_of(row).items():
                    self.have[key] = max(self.have.get(key, -1), step)
        out = path.open("a", newline="")
        self._files[name] = (out, csv.writer(out))

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
