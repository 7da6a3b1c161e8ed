"""The Keras callback that moves per-step rows from the device buffer to the writer.

It reads the buffer every `flush_every` steps, at every epoch end, and once more on any
exit (`drain`): one device read per block, never one per step,
and shows each block of rows to its watchers (the divergence stop policy, say) as it goes.
That is its one job; epoch metrics, checkpoints and stop policies are other callbacks
(`trainer.callbacks`).

It reads between steps, in a batch-begin hook, on the training thread: there JAX's training
state can be put back into the model's variables (`trainer.backends.sync`), which a hook run
in Keras' callback thread pool must not do; and having no batch-end hook, it leaves Keras
free to hand the steps' logs to the other callbacks asynchronously, on backends that do.
"""

from __future__ import annotations

import keras

from metrics import mean_iou_np
from trainer.recording import read_rows
from trainer.tracking import rows


class StepRecorder(keras.callbacks.Callback):
    """Hands every step's row to `writer.steps` once, in order, and to each watcher's
    `observe(columns)` (columns as `rows.device_columns`, less the confusion matrices).

    The buffer must hold `capacity(flush_every, steps_per_execution)` rows: a drain starts
    before the step that would leave `flush_every` rows unread, and Keras runs
    `steps_per_execution` steps between two batch-begin hooks.
    """

    @classmethod
    def capacity(cls, flush_every, steps_per_execution):
        """Rows the device buffer needs: one drain interval and one chunk of steps."""
        return int(flush_every) + int(steps_per_execution)

    def __init__(self, buffer, writer, flush_every, watchers=()):
        super().__init__()
        self.buffer = buffer
        self.writer = writer
        self.flush_every = int(flush_every)
        self.watchers = list(watchers)
        self.recorded = 0  # steps handed to the writer so far
        self._epoch_first_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_first_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        done = self._epoch_first_step + batch  # steps finished, without a device read
        if done - self.recorded >= self.flush_every:
            self.drain(done)

    def on_epoch_end(self, epoch, logs=None):
        self.drain()

    def on_train_end(self, logs=None):
        self.drain()

    def drain(self, stop=None):
        """Hand every recorded row up to step `stop` (default: all trained) to the writer.
        On the training thread, between steps (see the module)."""
        if self.model is None:  # fit failed before it handed its callbacks the model
            return
        if stop is None:
            stop = int(self.model.optimizer.iterations.numpy())
        columns = read_rows(self.model, self.buffer, self.recorded, stop)
        if not len(columns["step"]):
            return
        columns["mean_iou"] = mean_iou_np(columns.pop("confusion"))
        for watcher in self.watchers:
            watcher.observe(columns)
        self.writer.steps(rows.host_rows(columns))
        self.recorded += len(columns["step"])
