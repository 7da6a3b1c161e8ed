"""MeanIoU and per-class IoU for softmax classifiers."""

from metrics.iou import (
    MeanIoU,
    batch_mean_iou,
    confusion_matrix,
    mean_iou_np,
    mean_iou_of,
    per_class_iou,
)

__all__ = [
    "MeanIoU",
    "batch_mean_iou",
    "confusion_matrix",
    "mean_iou_np",
    "mean_iou_of",
    "per_class_iou",
]
