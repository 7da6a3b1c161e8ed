"""The layout of a per-step row, shared by the device buffer and the sinks (no TensorFlow here)."""

COLUMNS = ("step", "lr", "loss", "mean_iou")
# Column -> the metric name it is logged under, at step = the row's step.
STEP_METRICS = {"lr": "train/lr", "loss": "train/loss", "mean_iou": "train/mean_iou"}
