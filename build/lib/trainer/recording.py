"""Per-step values computed inside the compiled train step, kept in a small device buffer.

Reading values back to the host every step would stall training (and Keras calls batch
callbacks only once per `steps_per_execution` chunk), so each step writes one row
`(step, lr, loss, confusion matrix of the batch)` into a ring buffer of variables, and
`trainer.tracking.recorder` reads the buffer every few hundred steps. The batch's MeanIoU is
computed from its confusion matrix on the host, then: on a CPU without XLA every extra op
in the step costs executor time, and the matrix is already there for the epoch metric.
"""

import keras
import numpy as np
import tensorflow as tf

from trainer.tracking import rows


class StepBuffer:
    """A ring buffer of `capacity` rows; the row of step k lives at k % capacity.

    A row is laid out as `trainer.tracking.rows` says: `DEVICE_HEAD` (step, lr, loss), then
    the batch's confusion matrix. Row k holds k itself, so a reader can tell a row that is
    written from an old or empty one.
    """

    def __init__(self, capacity, num_classes):
        self.capacity = int(capacity)
        self.num_classes = int(num_classes)
        self.rows = tf.Variable(
            tf.fill((self.capacity, rows.device_width(self.num_classes)), -1.0),
            trainable=False,
            name="step_buffer",
        )

    def write(self, step, lr, loss, confusion):
        values = {"step": step, "lr": lr, "loss": loss}
        head = tf.stack([tf.cast(values[name], tf.float32) for name in rows.DEVICE_HEAD])
        row = tf.concat([head, tf.reshape(tf.cast(confusion, tf.float32), (-1,))], axis=0)
        index = tf.math.floormod(tf.cast(step, tf.int64), self.capacity)
        self.rows.scatter_nd_update([[index]], [row])

    def read(self, first, stop):
        """Rows of steps first .. stop-1 that are written, in order, as NumPy columns
        (`rows.device_columns`: step, lr, loss, confusion).

        Stops at the first row not (yet) holding its step, so the caller can ask again.
        """
        if stop - first > self.capacity:
            raise RuntimeError(
                f"step buffer overrun: {stop - first} unread steps but room for "
                f"{self.capacity}; rows were lost (flush more often)."
            )
        table = self.rows.numpy()
        out = []
        for k in range(first, stop):
            row = table[k % self.capacity]
            if int(row[0]) != k:
                break
            out.append(row)
        block = np.stack(out) if out else table[:0]
        return rows.device_columns(block, self.num_classes)


@keras.saving.register_keras_serializable(package="lrlab")
class RecordingModel(keras.Model):
    """A functional model whose train step also records the step's row in a `StepBuffer`.

    The step is Keras' own (`super().train_step`); around it this reads the optimizer's
    step k and rate `schedule(k)` before the update, and the batch's own loss (not Keras'
    running mean) and confusion matrix (from the compiled `metrics.MeanIoU`) from the same
    forward pass.
    """

    buffer = None
    mean_iou = None

    def attach(self, buffer, mean_iou):
        """Record into `buffer`; `mean_iou` is the compiled `metrics.MeanIoU`, whose batch
        confusion matrix goes into the row (one matrix per step, not two)."""
        self.buffer, self.mean_iou = buffer, mean_iou
        return self

    def train_step(self, data):
        if self.buffer is None:
            return super().train_step(data)
        step = tf.identity(self.optimizer.iterations)
        lr = self.optimizer.learning_rate  # schedule(step): the rate this update uses
        self._batch = {}
        logs = super().train_step(data)
        self.buffer.write(step, lr, self._batch.pop("loss"), self._batch.pop("confusion"))
        self._batch = None
        return logs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        if getattr(self, "_batch", None) is not None:
            self._batch["loss"] = loss
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logs = super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        if getattr(self, "_batch", None) is not None:
            self._batch["confusion"] = self.mean_iou.batch_confusion
        return logs


def recording(model, buffer, mean_iou):
    """The same layers as `model`, in a `RecordingModel` that writes to `buffer`."""
    wrapped = RecordingModel(inputs=model.inputs, outputs=model.outputs, name=model.name)
    return wrapped.attach(buffer, mean_iou)
