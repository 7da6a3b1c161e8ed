"""The layout of a per-step row, defined once for the device buffer, the recorder and the sinks.

On the device a row is `DEVICE_HEAD` then the batch's confusion matrix, flattened (the
MeanIoU is computed on the host from it); the sinks get `COLUMNS`. NumPy only: the writer
process imports this and must not import TensorFlow.
"""

import numpy as np

DEVICE_HEAD = ("step", "lr", "loss")
COLUMNS = ("step", "lr", "loss", "mean_iou")
# Column -> the metric name it is logged under, at step = the row's step.
STEP_METRICS = {"lr": "train/lr", "loss": "train/loss", "mean_iou": "train/mean_iou"}


def device_width(num_classes):
    """Floats in a device row for `num_classes` classes."""
    return len(DEVICE_HEAD) + num_classes**2


def device_columns(block, num_classes):
    """{"step": (n,), "lr": (n,), "loss": (n,), "confusion": (n, K, K)} of device rows."""
    out = {name: block[:, i] for i, name in enumerate(DEVICE_HEAD)}
    k = num_classes
    out["confusion"] = block[:, len(DEVICE_HEAD) :].reshape(-1, k, k)
    return out


def host_rows(columns):
    """An (n, len(COLUMNS)) array from {column name: (n,) values}."""
    return np.column_stack([columns[name] for name in COLUMNS])
