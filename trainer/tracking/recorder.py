"""The Keras callback that moves per-step rows from the device buffer to the writer.

It reads the buffer every `flush_every` steps (from Keras' callback thread pool, so the
training loop does not wait), at every epoch end, and once more on any exit (`drain`).
It also logs the epoch metrics, keeps the best validation checkpoint, and stops
training at the first non-finite loss, or at the first batch loss above
`divergence_factor` times the first step's loss (an exploding but finite loss).
"""

from __future__ import annotations

import logging
import math
import threading
import time

import keras
import numpy as np

from metrics import mean_iou_np

log = logging.getLogger(__name__)

EPOCH_METRICS = {
    "loss": "epoch/train_loss",
    "accuracy": "epoch/train_accuracy",
    "mean_iou": "epoch/train_mean_iou",
    "val_loss": "epoch/val_loss",
    "val_accuracy": "epoch/val_accuracy",
    "val_mean_iou": "epoch/val_mean_iou",
}


class StepRecorder(keras.callbacks.Callback):
    # Safe to run in Keras' callback thread pool: it only reads variables and takes a lock.
    async_safe = True

    def __init__(
        self,
        buffer,
        writer,
        flush_every,
        checkpoint_path=None,
        monitor="val_loss",
        divergence_factor=None,
    ):
        super().__init__()
        self.buffer = buffer
        self.writer = writer
        self.flush_every = int(flush_every)
        self.checkpoint_path = checkpoint_path
        self.monitor = monitor
        self.recorded = 0  # steps handed to the writer so far
        # The buffer holds 4 F + S rows (F = flush_every, S = steps per execution): the loop
        # waits once 3 F are unread, leaving F + S rows for the steps already in flight.
        self._max_unread = 3 * self.flush_every
        self.divergence_factor = divergence_factor
        self.first_loss = None
        self.diverged_step = None  # the first step whose loss was non-finite or exploded
        self.diverged = None  # what happened there, in words
        self.best = math.inf
        self._lock = threading.Lock()
        self._epoch_first_step = 0
        self._epoch_started = None
        self._train_seconds = None

    # --- per step ---------------------------------------------------------------------
    def on_train_batch_begin(self, batch, logs=None):
        # Keras runs batch-end hooks in a thread pool and does not wait for them within an
        # epoch. Should a drain fall behind (a slow sink), the training loop waits here,
        # before the ring buffer could be overwritten.
        started = self._epoch_first_step + batch
        if started - self.recorded > self._max_unread:
            self.drain(started)

    def on_train_batch_end(self, batch, logs=None):
        done = self._epoch_first_step + batch + 1  # steps finished, without a device read
        if done - self.recorded >= self.flush_every:
            self.drain(done)

    def drain(self, stop=None):
        """Hand every recorded row up to step `stop` (default: all trained) to the writer."""
        with self._lock:
            if stop is None:
                stop = int(self.model.optimizer.iterations.numpy())
            steps, lrs, losses, confusions = self.buffer.read(self.recorded, stop)
            if not len(steps):
                return
            if self.diverged_step is None:
                self._watch(steps, losses)
            # Columns as in trainer.tracking.rows.COLUMNS: step, lr, loss, mean_iou.
            self.writer.steps(np.column_stack([steps, lrs, losses, mean_iou_np(confusions)]))
            self.recorded += len(steps)

    def _watch(self, steps, losses):
        if self.first_loss is None and steps[0] == 0 and np.isfinite(losses[0]):
            self.first_loss = float(losses[0])
        bad = ~np.isfinite(losses)
        what = "the loss became non-finite"
        if self.divergence_factor is not None and self.first_loss is not None:
            limit = self.divergence_factor * self.first_loss
            exploded = np.isfinite(losses) & (losses > limit)
            if exploded.any() and (not bad.any() or exploded.argmax() < bad.argmax()):
                bad = exploded
                what = (
                    f"the loss exploded (above {self.divergence_factor:g} x the first step's "
                    f"{self.first_loss:.4g})"
                )
        if bad.any():
            self.diverged_step = int(steps[bad.argmax()])
            self.diverged = what
            log.error(
                "%s: %s at step %d; stopping training",
                what,
                losses[bad.argmax()],
                self.diverged_step,
            )
            self.model.stop_training = True

    # --- per epoch --------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_first_step = int(self.model.optimizer.iterations.numpy())
        self._epoch_started = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        if self._epoch_started is not None and self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._epoch_started

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.drain()
        elapsed = time.perf_counter() - self._epoch_started
        steps = self.recorded - self._epoch_first_step
        values = {name: logs[key] for key, name in EPOCH_METRICS.items() if key in logs}
        values["epoch/duration_s"] = elapsed
        values["epoch/steps_per_sec"] = steps / (self._train_seconds or elapsed)
        self.writer.scalars(values, epoch)
        log.info(
            "epoch %d: %s",
            epoch,
            ", ".join(f"{k.split('/', 1)[1]}={v:.4g}" for k, v in values.items()),
        )
        current = logs.get(self.monitor)
        improved = current is not None and current < self.best
        if self.checkpoint_path and improved and self.diverged_step is None:
            self.best = current
            self.model.save(self.checkpoint_path)
            log.info(
                "epoch %d: %s improved to %.4g; saved %s",
                epoch,
                self.monitor,
                current,
                self.checkpoint_path,
            )

    def on_train_end(self, logs=None):
        self.drain()
