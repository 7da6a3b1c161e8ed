"""Per-step values computed inside the compiled train step, kept in a small device buffer.

Reading values back to the host every step would stall training (and Keras calls batch
callbacks only once per `steps_per_execution` chunk), so each step writes its row
`(step, lr, loss, mean_iou)` into a ring buffer of variables; `trainer.tracking.recorder`
reads the buffer every few hundred steps.
"""

import keras
import numpy as np
import tensorflow as tf

from metrics import batch_mean_iou

COLUMNS = ("step", "lr", "loss", "mean_iou")


class StepBuffer:
    """A ring buffer of `capacity` rows; the row of step k lives at k % capacity.

    Row k holds k itself, so a reader can tell a row that is written from an old or empty one.
    """

    def __init__(self, capacity):
        self.capacity = int(capacity)
        self.rows = tf.Variable(
            tf.fill((self.capacity, len(COLUMNS)), -1.0), trainable=False, name="step_buffer"
        )

    def write(self, step, lr, loss, mean_iou):
        row = tf.stack(
            [
                tf.cast(step, tf.float32),
                tf.cast(lr, tf.float32),
                tf.cast(loss, tf.float32),
                tf.cast(mean_iou, tf.float32),
            ]
        )
        index = tf.math.floormod(tf.cast(step, tf.int64), self.capacity)
        self.rows.scatter_nd_update([[index]], [row])

    def read(self, first, stop):
        """Rows of steps first .. stop-1 that are written, in order, as a NumPy array.

        Stops at the first row not (yet) holding its step, so the caller can ask again.
        """
        if stop - first > self.capacity:
            raise RuntimeError(
                f"step buffer overrun: {stop - first} unread steps but room for "
                f"{self.capacity}; rows were lost (flush more often)."
            )
        rows = self.rows.numpy()
        out = []
        for k in range(first, stop):
            row = rows[k % self.capacity]
            if int(row[0]) != k:
                break
            out.append(row)
        return np.stack(out) if out else rows[:0]


@keras.saving.register_keras_serializable(package="lrlab")
class RecordingModel(keras.Model):
    """A functional model whose train step also records `(step, lr, loss, mean_iou)`.

    The step is Keras' own (`super().train_step`); around it this reads the optimizer's
    step k and rate `schedule(k)` before the update, and the batch's own loss (not Keras'
    running mean) and MeanIoU from the same forward pass.
    """

    buffer = None
    num_classes = None

    def attach(self, buffer, num_classes):
        self.buffer, self.num_classes = buffer, num_classes
        return self

    def train_step(self, data):
        if self.buffer is None:
            return super().train_step(data)
        step = tf.identity(self.optimizer.iterations)
        lr = self.optimizer.learning_rate  # schedule(step): the rate this update uses
        self._batch = {}
        logs = super().train_step(data)
        self.buffer.write(step, lr, self._batch.pop("loss"), self._batch.pop("mean_iou"))
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
        if getattr(self, "_batch", None) is not None:
            self._batch["mean_iou"] = batch_mean_iou(y, y_pred, self.num_classes)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def recording(model, buffer, num_classes):
    """The same layers as `model`, in a `RecordingModel` that writes to `buffer`."""
    wrapped = RecordingModel(inputs=model.inputs, outputs=model.outputs, name=model.name)
    return wrapped.attach(buffer, num_classes)
