"""Evaluate a schedule over a range of steps, and write the curve as CSV and as a plot."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def curve(schedule, steps):
    """`schedule(k)` for k = 0 .. steps-1, as a float32 NumPy array, computed on the Keras
    backend in use: one compiled, vectorised call on TensorFlow, `vmap` on JAX and PyTorch."""
    import keras
    from keras import ops

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return _vectorized(schedule, tf.range(steps, dtype=tf.int64)).numpy()
    return ops.convert_to_numpy(ops.vectorized_map(schedule, ops.arange(steps, dtype="int32")))


def _vectorized(schedule, steps):
    import tensorflow as tf

    # reduce_retracing: one trace per schedule object, not a warning per new curve.
    return tf.function(tf.vectorized_map, reduce_retracing=True)(schedule, steps)


def write_csv(path, values):
    """Write `step,lr` rows, one per step from 0, with full float32 precision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "lr"])
        # str() of a float32 is its shortest round-trip form: 0.001, not 0.0010000000474974513
        writer.writerows((k, str(np.float32(v))) for k, v in enumerate(values))
    return path


def plot(path, values, title="", log_y=False, steps_per_epoch=None):
    """Plot the curve against the step (with an epoch axis on top when it is known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    ax.plot(np.arange(len(values)), values, lw=1.4, color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    if log_y:
        positive = values[values > 0]
        if len(positive) < len(values):
            log.warning("log_y: %d zero rates are left off the plot", len(values) - len(positive))
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_xlim(0, max(len(values) - 1, 1))
    if steps_per_epoch:
        top = ax.secondary_xaxis(
            "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
        )
        top.set_xlabel("epoch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
