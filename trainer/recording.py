"""Per-step values computed inside the compiled train step, kept in a small device buffer.

Reading values back to the host every step would stall training (and Keras calls batch
callbacks only once per `steps_per_execution` chunk), so each step writes one row
`(step, lr, loss, confusion matrix of the batch)` into a ring buffer, and
`trainer.tracking.recorder` reads the buffer every few hundred steps. The batch's MeanIoU is
computed from its confusion matrix on the host, then: on a CPU without XLA every extra op
in the step costs executor time, and the matrix is already there for the epoch metric.

The same code runs on every Keras backend. The buffer is a Keras metric: JAX's train step
is a pure function of the state Keras threads through it (model, optimizer and metric
variables), so a value that must outlive a step has to be one of those, and a metric's
variables are the ones Keras updates from `compute_metrics` on all three backends
(`keras/src/backend/{jax,tensorflow,torch}/trainer.py`).
"""

import keras
import numpy as np
from keras import ops

from trainer import backends
from trainer.optimizers import step_rate
from trainer.tracking import rows


@keras.saving.register_keras_serializable(package="lrlab")
class StepBuffer(keras.metrics.Metric):
    """A ring buffer of `capacity` rows; the row of step k lives at k % capacity.

    A row is laid out as `trainer.tracking.rows` says: `DEVICE_HEAD` (step, lr, loss), then
    the batch's confusion matrix. Row k holds k itself, so a reader can tell a row that is
    written from an old or empty one. It logs nothing (`result()` is empty) and an epoch's
    metric reset leaves it as it is: its rows are read by `read`, by step.
    """

    def __init__(self, capacity, num_classes, name="step_buffer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.capacity = int(capacity)
        self.num_classes = int(num_classes)
        self.rows = self.add_variable(
            shape=(self.capacity, rows.device_width(self.num_classes)),
            initializer=keras.initializers.Constant(-1.0),
            dtype="float32",
            name="rows",
        )

    def update_state(self, step, lr, loss, confusion):
        values = {"step": step, "lr": lr, "loss": loss}
        head = ops.stack([ops.cast(values[name], "float32") for name in rows.DEVICE_HEAD])
        row = ops.concatenate([head, ops.reshape(ops.cast(confusion, "float32"), (-1,))])
        index = ops.mod(ops.cast(step, "int32"), self.capacity)
        if keras.backend.backend() == "tensorflow":
            # In place: assigning a new table copies all of it every step, which TensorFlow's
            # executor does not elide (5 % of the MLP's step on the CPU). JAX updates the
            # table in place itself (the state it threads through the step is donated).
            self.rows.value.scatter_nd_update([[index]], ops.expand_dims(row, 0))
            return
        table = ops.convert_to_tensor(self.rows)
        # Both indices int32: a literal 0 is int64 under JAX_ENABLE_X64, which JAX refuses.
        start = (index, ops.zeros_like(index))
        self.rows.assign(ops.slice_update(table, start, ops.expand_dims(row, 0)))

    def result(self):
        return {}

    def reset_state(self):
        pass

    def read(self, first, stop):
        """Rows of steps first .. stop-1 that are written, in order, as NumPy columns
        (`rows.device_columns`: step, lr, loss, confusion).

        Stops at the first row not (yet) holding its step, so the caller can ask again.
        During `fit` on JAX, call it where `trainer.backends.sync` may run (between steps).
        """
        if stop - first > self.capacity:
            raise RuntimeError(
                f"step buffer overrun: {stop - first} unread steps but room for "
                f"{self.capacity}; rows were lost (flush more often)."
            )
        table = ops.convert_to_numpy(self.rows)
        out = []
        for k in range(first, stop):
            row = table[k % self.capacity]
            if int(row[0]) != k:
                break
            out.append(row)
        block = np.stack(out) if out else table[:0]
        return rows.device_columns(block, self.num_classes)

    def get_config(self):
        return {"capacity": self.capacity, "num_classes": self.num_classes, "name": self.name}


@keras.saving.register_keras_serializable(package="lrlab")
class RecordingModel(keras.Model):
    """A functional model whose train step also records the step's row in a `StepBuffer`.

    The step is Keras' own (`super().train_step`); around it this reads the optimizer's
    step k and rate before the update (`schedule(k)`, or a parameter-free optimizer's
    estimated step size: `trainer.optimizers.step_rate`), and the batch's own loss (not Keras'
    running mean) and confusion matrix
    (from the compiled `metrics.MeanIoU`) from the same forward pass.
    """

    buffer = None
    _head = None  # (step, rate) of the step being traced
    _loss = None  # its loss, where the backend lets it out of the gradient computation

    def attach(self, buffer, mean_iou, loss):
        """Record into `buffer`; `mean_iou` is the compiled `metrics.MeanIoU`, whose batch
        confusion matrix goes into the row (one matrix per step, not two); `loss` is the
        compiled loss function (a `keras.losses.Loss`)."""
        self.buffer, self.mean_iou, self.batch_loss = buffer, mean_iou, loss
        return self

    def train_step(self, *args):
        # TensorFlow and PyTorch call train_step(data), JAX train_step(state, data).
        if self.buffer is None:
            return super().train_step(*args)
        self._head = self._step_and_rate(*args)
        try:
            return super().train_step(*args)
        finally:
            self._head = self._loss = None

    def _step_and_rate(self, *args):
        """The optimizer's step and rate before this step's update, as tensors of the step."""
        optimizer = self.optimizer
        if len(args) == 2:  # JAX: the optimizer's variables are in the state passed in
            state = list(zip(optimizer.variables, args[0][2]))
            with keras.StatelessScope(state_mapping=state):
                return ops.copy(optimizer.iterations), ops.copy(step_rate(optimizer))
        # A copy: PyTorch updates the variables in place after this read.
        return ops.copy(optimizer.iterations), ops.copy(step_rate(optimizer))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        # The step's own loss, where it is a value of the step itself (TensorFlow, PyTorch).
        # Under JAX this runs inside `jax.grad`, whose values cannot leave it: there the row
        # recomputes it from the same predictions, and XLA computes it once for both.
        if self._head is not None and keras.backend.backend() != "jax":
            self._loss = ops.stop_gradient(loss)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logs = super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        if self._head is not None:
            loss = self._loss
            if loss is None:
                loss = self.batch_loss(y, y_pred, sample_weight)
            self.buffer.update_state(*self._head, loss, self.mean_iou.batch_confusion)
        return logs


def recording(model, buffer, mean_iou, loss):
    """The same layers as `model`, in a `RecordingModel` that writes to `buffer`."""
    wrapped = RecordingModel(inputs=model.inputs, outputs=model.outputs, name=model.name)
    return wrapped.attach(buffer, mean_iou, loss)


def read_rows(model, buffer, first, stop):
    """`buffer.read(first, stop)` with `model`'s training state synced first (JAX)."""
    backends.sync(model)
    return buffer.read(first, stop)
