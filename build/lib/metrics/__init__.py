"""MeanIoU and per-class IoU for softmax classifiers."""

from metrics.iou import (
    MeanIoU,
    confusion_matrix,
    mean_iou_np,
    mean_iou_of,
    per_class_iou,
)

__all__ = [
    "MeanIoU",
    "confusion_matrix",
    "mean_iou_np",
    "mean_iou_of",
    "per_class_iou",
]
