"""The Keras callback that moves per-step rows from the device buffer to the writer.

It reads the buffer every `flush_every` steps, at every epoch end, and once more on any
exit (`drain`): one device read per block, never one per step,
and shows each block of rows to its watchers (the divergence stop policy, say) as it goes.
That is its one job; epoch metrics, checkpoints and stop policies are other callbacks
(`trainer.callbacks`).
"""

from __future__ import annotations

import threading

import keras

from metrics import mean_iou_np
from trainer.tracking import rows


class StepRecorder(keras.callbacks.Callback):
    """Hands every step's row to `writer.steps` once, in order, and to each watcher's
    `observe(columns)` (columns as `rows.device_columns`, less the confusion matrices).

    The buffer must hold `capacity(flush_every, steps_per_execution)` rows: the loop
    waits once `WAIT_AFTER` x `flush_every` rows are unread, which leaves a drain interval
    and a chunk of steps in flight before a row could be overwritten.
    """

    # Safe in Keras' callback thread pool, where a thread-safe backend would run it: it only
    # reads variables and takes a lock. (Keras 3.15's TensorFlow backend is not marked
    # thread-safe, so there the batch hooks run on the training thread.)
    async_safe = True
    WAIT_AFTER = 3  # drain intervals unread before the loop waits for the writer

    @classmethod
    def capacity(cls, flush_every, steps_per_execution):
        """Rows the device buffer needs: (WAIT_AFTER + 1) drain intervals and one chunk."""
        return (cls.WAIT_AFTER + 1) * int(flush_every) + int(steps_per_execution)

    def __init__(self, buffer, writer, flush_every, watchers=()):
        super().__init__()
        self.buffer = buffer
        self.writer = writer
        self.flush_every = int(flush_every)
        self.watchers = list(watchers)
        self.recorded = 0  # steps handed to the writer so far
        self._max_unread = self.WAIT_AFTER * self.flush_every
        self._lock = threading.Lock()
        self._epoch_first_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_first_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        # Where Keras runs batch-end hooks in its thread pool it does not wait for them
        # within an epoch: should a drain fall behind, the loop waits here, before the ring
        # buffer could be overwritten.
        started = self._epoch_first_step + batch
        if started - self.recorded > self._max_unread:
            self.drain(started)

    def on_train_batch_end(self, batch, logs=None):
        done = self._epoch_first_step + batch + 1  # steps finished, without a device read
        if done - self.recorded >= self.flush_every:
            self.drain(done)

    def on_epoch_end(self, epoch, logs=None):
        self.drain()

    def on_train_end(self, logs=None):
        self.drain()

    def drain(self, stop=None):
        """Hand every recorded row up to step `stop` (default: all trained) to the writer."""
        with self._lock:
            if stop is None:
                stop = int(self.model.optimizer.iterations.numpy())
            columns = self.buffer.read(self.recorded, stop)
            if not len(columns["step"]):
                return
            columns["mean_iou"] = mean_iou_np(columns.pop("confusion"))
            for watcher in self.watchers:
                watcher.observe(columns)
            self.writer.steps(rows.host_rows(columns))
            self.recorded += len(columns["step"])
