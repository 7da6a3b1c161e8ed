"""The training run's small callbacks, one job each: epoch metrics, the test curve, the
divergence stop policy, the best checkpoint, early stopping that survives a resume, a
Ctrl-C that stops between steps, and the checkpoints for `trainer.resume` (their file:
`trainer.resume`).

(Per-step rows: `trainer.tracking.recorder`; plateau reduction: `schedules.plateau`.)
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path

import keras
import numpy as np

from trainer import backends, resume, stopping
from trainer.optimizers import evaluation_weights

log = logging.getLogger(__name__)

EPOCH_METRICS = {
    "loss": "epoch/train_loss",
    "accuracy": "epoch/train_accuracy",
    "mean_iou": "epoch/train_mean_iou",
    "val_loss": "epoch/val_loss",
    "val_accuracy": "epoch/val_accuracy",
    "val_mean_iou": "epoch/val_mean_iou",
}


class EpochMetrics(keras.callbacks.Callback):
    """Each epoch's Keras logs as `epoch/*` scalars at step = the epoch, with its duration
    and training speed (steps per second of the training part, validation left out)."""

    def __init__(self, writer):
        super().__init__()
        self.writer = writer
        self._first_step = 0
        self._started = None
        self._train_seconds = None

    def on_epoch_begin(self, epoch, logs=None):
        self._first_step = int(self.model.optimizer.iterations.numpy())
        self._started = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        if self._started is not None and self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._started

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        elapsed = time.perf_counter() - self._started
        steps = int(self.model.optimizer.iterations.numpy()) - self._first_step
        values = {name: logs[key] for key, name in EPOCH_METRICS.items() if key in logs}
        values["epoch/duration_s"] = elapsed
        values["epoch/steps_per_sec"] = steps / (self._train_seconds or elapsed)
        self.writer.scalars(values, epoch)
        log.info(
            "epoch %d: %s",
            epoch,
            ", ".join(f"{k.split('/', 1)[1]}={v:.4g}" for k, v in values.items()),
        )


class EveryNSteps(keras.callbacks.Callback):
    """A callback that acts every `every` optimizer steps (`reached(step)` when a multiple of
    `every` was passed), counting from `start_step` (a resumed run's first step). The steps
    trained are counted from each epoch's first step and the batch index, so a step costs no
    device read.

    It acts between steps, in a batch-begin hook (for the steps finished before it) and at
    the epoch's end (for the epoch's last step): on the training thread, where JAX's training
    state can be put back into the variables (`backends.sync`, which `reached` calls before
    reading them), and with no batch-end hook, which would make Keras wait for every step's
    logs on backends that dispatch callbacks asynchronously.
    """

    def __init__(self, every, start_step=0):
        super().__init__()
        self.every = int(every)
        self.last = start_step  # the steps trained when it last acted
        self._epoch_first_step = start_step

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_first_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        done = self._epoch_first_step + batch
        if batch and self.due(done):  # batch 0: the epoch before ended with its own call
            self.reached(done)

    def on_epoch_end(self, epoch, logs=None):
        done = int(self.model.optimizer.iterations.numpy())
        if self.due(done):
            self.reached(done)

    def due(self, step):
        """Whether a multiple of `every` lies in (last, step]."""
        return step // self.every > self.last // self.every

    def reached(self, step):  # pragma: no cover - the abstract hook
        raise NotImplementedError


class TestCurve(EveryNSteps):
    """The test set's accuracy and loss every `every` steps (`trainer.test_every`), logged
    as `test/accuracy` and `test/loss` at the number of steps trained, for time-to-accuracy.

    The run's final test metrics are logged under the same keys at its last step, so the
    curve stops one point short of it. The evaluation is a plain forward pass
    (`model.predict`): `evaluate` would reset the training metrics of the epoch under way.
    Its seconds add up in `seconds`, so a benchmark can take them out of the run's time.
    Settings must be chosen on the validation split; this curve only measures.

    loss = mean over the test set of -log(max(p_y, 1e-7)), Keras' clipped cross-entropy.
    """

    def __init__(self, x, y, every, batch_size, writer, last_step, start_step=0):
        super().__init__(every, start_step)
        self.x, self.y = x, np.asarray(y).astype(np.int64)
        self.batch_size, self.writer, self.last_step = batch_size, writer, last_step
        self.seconds = 0.0

    def reached(self, step):
        if step < self.last_step:
            self.evaluate(step)

    def evaluate(self, step):
        began = time.perf_counter()
        backends.sync(self.model)
        with evaluation_weights(self.model):
            probs = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        picked = probs[np.arange(len(self.y)), self.y]
        values = {
            "test/accuracy": float(np.mean(np.argmax(probs, axis=1) == self.y)),
            "test/loss": float(-np.mean(np.log(np.maximum(picked, 1e-7)))),
        }
        self.writer.scalars(values, step)
        self.last = step
        self.seconds += time.perf_counter() - began


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training at the first non-finite batch loss, or at the first above `factor`
    times the first step's loss (an exploding but finite loss; `factor=None`: NaN only).

    Where the loss is bounded (`ceiling`, the most one example can add:
    `backends.crossentropy_ceiling()`, -log(epsilon) = 16.12 on JAX and PyTorch) the
    threshold is at most `ceiling / 2`: a batch loss above it means the true classes got
    a geometric-mean probability below sqrt(epsilon) (3.2e-4 for 10 classes where chance
    is 0.1). Without that cap a 10-class classifier (first loss ln 10 = 2.30, threshold 23
    at `factor` 10) could never be stopped there: it diverges to losses of 13-16.

    It sees the batch losses through the `StepRecorder` (as its watcher), so it costs the
    training loop nothing; `step` and `reason` say where and why it stopped.
    """

    def __init__(self, factor=None, ceiling=None):
        super().__init__()
        self.factor, self.ceiling = factor, ceiling
        self.first_loss = None
        self.step = None  # the first step whose loss was non-finite or exploded
        self.rate = None  # the learning rate that step trained at
        self.reason = None  # what happened there, in words

    def state(self):
        return {"first_loss": self.first_loss}

    def restore(self, state):
        self.first_loss = state.get("first_loss")

    def observe(self, columns):
        if self.step is not None:
            return
        steps, losses = columns["step"], columns["loss"]
        if self.first_loss is None and steps[0] == 0 and np.isfinite(losses[0]):
            self.first_loss = float(losses[0])
        bad = ~np.isfinite(losses)
        reason = "the loss became non-finite"
        if self.factor is not None and self.first_loss is not None:
            limit = self.factor * self.first_loss
            why = f"{self.factor:g} x the first step's {self.first_loss:.4g}"
            if self.ceiling is not None and self.ceiling / 2 < limit:
                limit = self.ceiling / 2
                why = f"{limit:.4g}, half the most this backend's crossentropy reports"
            exploded = np.isfinite(losses) & (losses > limit)
            if exploded.any() and (not bad.any() or exploded.argmax() < bad.argmax()):
                bad = exploded
                reason = f"the loss exploded (above {why})"
        if bad.any():
            at = int(bad.argmax())
            self.step, self.rate, self.reason = int(steps[at]), float(columns["lr"][at]), reason
            log.error(
                "%s: %s at step %d (learning rate %.4g); stopping training",
                reason,
                losses[at],
                self.step,
                self.rate,
            )
            self.model.stop_training = True


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' `ModelCheckpoint` keeping the best `monitor` model, except after divergence:
    a diverged model is never the best one, whatever its validation loss."""

    # It saves at epoch ends only: Keras' batch-end hook returns at once for save_freq
    # "epoch", so Keras may run it in its callback thread pool, as if it had none.
    async_safe = True

    def __init__(self, path, divergence, monitor="val_loss"):
        super().__init__(path, monitor=monitor, save_best_only=True, verbose=0)
        self.divergence = divergence

    def state(self):
        return {"best": None if self.best is None else float(self.best)}

    def restore(self, state):
        self.best = state["best"]

    def on_epoch_end(self, epoch, logs=None):
        if self.divergence.step is not None:
            return
        best = self.best
        with evaluation_weights(self.model):
            super().on_epoch_end(epoch, logs)
        if self.best != best:
            log.info(
                "epoch %d: %s improved to %.4g; saved %s",
                epoch,
                self.monitor,
                self.best,
                self.filepath,
            )


class EarlyStop(keras.callbacks.EarlyStopping):
    """Keras' `EarlyStopping`, whose state survives a resume and a training split in parts
    (a resumed run's rest of an epoch, then the other epochs, each a `fit` call).

    `restore(state)` carries a state into the next `on_train_begin` (where Keras' own resets
    it); the best weights are put back only at the end of the last part (`last_part`), or
    where training stops early.

    With an optimizer whose evaluation weights depend on its state (schedule-free: x from
    the weights y and its z), the best epoch's optimizer state is kept and put back too, so
    that the x evaluated and saved after training is the best epoch's.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.last_part = True
        self._carried = None
        self.best_optimizer = None  # the optimizer's variables at the best epoch, if needed

    def state(self):
        return {
            "wait": int(self.wait),
            "stopped_epoch": int(self.stopped_epoch),
            "best": None if self.best is None else float(self.best),
            "best_epoch": int(getattr(self, "best_epoch", 0)),
            "best_weights": list(self.best_weights or []),
            "best_optimizer": list(self.best_optimizer or []),
        }

    def on_epoch_end(self, epoch, logs=None):
        kept = self.best_weights
        super().on_epoch_end(epoch, logs)
        optimizer = self.model.optimizer
        if self.best_weights is not kept and hasattr(optimizer, "evaluation_weights"):
            self.best_optimizer = [np.asarray(v.numpy()) for v in optimizer.variables]

    def restore(self, state):
        self._carried = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._carried is not None:
            state, self._carried = self._carried, None
            self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
            self.best, self.best_epoch = state["best"], state["best_epoch"]
            self.best_weights = list(state["best_weights"]) or None
            self.best_optimizer = list(state.get("best_optimizer", [])) or None

    def on_train_end(self, logs=None):
        if self.last_part or self.model.stop_training:
            super().on_train_end(logs)
            if self.best_weights is not None and self.best_optimizer is not None:
                for variable, value in zip(self.model.optimizer.variables, self.best_optimizer):
                    variable.assign(value)


class ValidateAtEvaluationWeights(keras.callbacks.Callback):
    """Validation inside `fit` at the weights the optimizer says to evaluate (schedule-free:
    the average x), and training on at its own (y) after it."""

    def __init__(self):
        super().__init__()
        self._swapped = contextlib.ExitStack()

    def on_test_begin(self, logs=None):
        self._swapped.enter_context(evaluation_weights(self.model))

    def on_test_end(self, logs=None):
        self._swapped.close()


class TrainingInterrupted(Exception):
    """Raised between two steps after a Ctrl-C, SIGTERM or SIGHUP: training stops where it
    is, without the epoch's validation or epoch end (a partial epoch is no epoch)."""


class StopOnInterrupt(keras.callbacks.Callback):
    """The first Ctrl-C, SIGTERM or SIGHUP stops training after the current step; a second
    one interrupts at once.

    Python raises KeyboardInterrupt wherever the main thread happens to be, which may be
    inside TensorFlow's own calls, where it can surface as an unrelated `SystemError`.
    Here the signal only sets `signum`; the start of the next training step raises
    `TrainingInterrupted` from a known place (a signal during validation lets the epoch end
    first, and stops after the next step). Keras' own `stop_training` would run the epoch's
    validation and epoch end on the partial epoch, logging it as an epoch and perhaps
    saving it as the best model. The caller then saves a resume checkpoint at that step and
    closes the run as KILLED with every step (`stopping.Stopped`).
    """

    def __init__(self):
        super().__init__()
        self.signum = None  # the signal that asked to stop
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._stop) for s in stopping.NAMES}

    def _stop(self, signum, frame):
        self.signum = signum
        self._restore()  # a second signal is immediate
        again = " (press it again to stop at once)" if signum == signal.SIGINT else ""
        log.warning("%s: stopping after this step%s", stopping.NAMES[signum], again)

    def on_train_batch_begin(self, batch, logs=None):
        # Between steps (not at a step's end, which Keras may run in its callback thread
        # pool): the step before is trained, and the training thread is where it stops.
        if self.requested:
            raise TrainingInterrupted

    def on_train_end(self, logs=None):
        self._restore()

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class ResumeCheckpoint(EveryNSteps):
    """Saves the checkpoint every `every` steps: before the next step, or, when the step
    ends an epoch, after the epoch's validation and every other callback's epoch end (so it
    must come last in the callback list), so that a resumed run starts the next epoch.

    Args:
        path: the checkpoint file.
        every: steps between checkpoints.
        parts: {name: object with `state()` and `restore(state)`}, saved with the model.
        before_save: called with the step before saving: hands every step so far to the
            sinks and flushes them.
        meta: JSON-able facts saved alongside (the sinks' refs, the config).
        healthy: whether the model may be saved (False after divergence).
        start_step: a resumed run's first step (where its checkpoint was saved).
    """

    def __init__(self, path, every, parts, before_save, meta, healthy, start_step=0):
        super().__init__(every, start_step)
        self.path = Path(path)
        self.parts, self.before_save, self.meta = parts, before_save, meta
        self.healthy = healthy  # False once training diverged: the last good one is kept

    def on_train_begin(self, logs=None):
        """A new run's checkpoint at step 0 (the model as built, 20 ms), so that a run killed
        before its first periodic checkpoint resumes too, from the start, into the same
        runs of its stores."""
        if int(self.model.optimizer.iterations.numpy()) == 0 and not self.path.exists():
            self.save(0)

    def reached(self, step):
        # Mid-epoch from the batch-begin hook; at an epoch's end after every other callback's
        # epoch end (this one comes last), so that a resumed run starts the next epoch.
        self.save(step)

    def save(self, step):
        began = time.perf_counter()
        self.before_save(step)
        if not self.healthy():
            return
        backends.sync(self.model)
        resume.save(self.path, self.model, step, self.parts, self.meta)
        self.last = step
        log.info(
            "step %d: checkpoint saved in %s (%.0f ms, %.1f MB)",
            step,
            self.path,
            1000 * (time.perf_counter() - began),
            self.path.stat().st_size / 1e6,
        )
