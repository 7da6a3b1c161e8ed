"""The TensorBoard sink: scalar summaries in an event file, written without TensorFlow.

Configured by `conf/sink/tensorboard.yaml`. TensorBoard's own record framing (length,
masked CRC32C, data, masked CRC32C) over a plain file, so the writer process never imports
TensorFlow. Params appear as a table in TensorBoard's Text tab.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from trainer.tracking.sinks.base import RunInfo, Sink, Started, rows_as_metrics, unseen


class TensorBoardSink(Sink):
    """Scalars into `<run folder>/<folder>/events.out.tfevents.*`.

    Args:
        folder: the event files' folder, relative to the run folder.
    """

    # A sweep's parent would show in TensorBoard as a run of single-point `best/*` cards;
    # its trials are there, and the HParams dashboard compares them.
    records_sweeps = False

    def __init__(self, folder="tensorboard"):
        self.folder = folder

    def start(self, run: RunInfo) -> Started:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.logdir = Path(run.dir) / self.folder
        self.have = _last_steps(self.logdir) if run.resume else {}
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.0"
        self.file = (self.logdir / name).open("wb")
        self.records = RecordWriter(self.file)
        self._write_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        return Started(ref={"logdir": str(self.logdir)})

    def params(self, values):
        if "params" in self.have:  # a resumed run's: written when it started
            return
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
        from tensorboard.compat.proto.types_pb2 import DT_STRING
        from tensorboard.plugins.text.metadata import create_summary_metadata

        table = "| param | value |\n|---|---|\n" + "\n".join(
            f"| {k} | {v} |" for k, v in sorted(values.items())
        )
        tensor = TensorProto(
            dtype=DT_STRING, string_val=[table.encode()], tensor_shape=TensorShapeProto()
        )
        metadata = create_summary_metadata("params", "the run's parameters")
        self._summary(
            Summary(value=[Summary.Value(tag="params", metadata=metadata, tensor=tensor)]), 0
        )
        self._hparams(values)

    def _hparams(self, values):
        """The params as TensorBoard's HParams session (no TensorFlow needed), so that its
        HParams dashboard compares runs and sweep trials by hyperparameter against the
        metrics it finds in their scalars."""
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        hparams = {key: _hparam_value(value) for key, value in values.items()}
        self._summary(hparams_pb(hparams, trial_id=Path(self.logdir).parent.name), 0)

    def steps(self, rows):
        self._scalars(rows_as_metrics(rows))

    def scalars(self, values, step):
        self._scalars((name, float(v), step) for name, v in values.items())

    def _scalars(self, triples):
        from tensorboard.compat.proto.summary_pb2 import Summary

        for name, value, step in unseen(list(triples), self.have):
            self._summary(Summary(value=[Summary.Value(tag=name, simple_value=value)]), step)

    def _summary(self, summary, step):
        from tensorboard.compat.proto.event_pb2 import Event

        self._write_event(Event(wall_time=time.time(), step=step, summary=summary))

    def _write_event(self, event):
        self.records.write(event.SerializeToString())

    def flush(self):
        self.records.flush()

    def close(self, status):
        self.records.close()


def _hparam_value(text):
    """An MLflow param (a string) as an HParams value: a number or a boolean where it reads
    as one, so that the dashboard sorts and plots it as such."""
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def _last_steps(logdir):
    """{tag: last step} in the event files of `logdir` (those a killed run left; a record
    cut short by the kill ends the file)."""
    from tensorboard.compat.proto.event_pb2 import Event

    have = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        for record in _records(path):
            event = Event.FromString(record)
            for value in event.summary.value:
                have[value.tag] = max(have.get(value.tag, -1), event.step)
    return have


def _records(path):
    """The whole records of a TFRecord file (length, its CRC, data, the data's CRC: the
    layout `RecordWriter` writes). TensorBoard's own `EventFileLoader` imports TensorFlow
    where it is installed, which costs the writer process seconds and prints TensorFlow's
    start-up notices; the CRCs are not checked: a kill cuts a file short, it does not
    corrupt what was written before."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                return
            yield data
