"""MeanIoU and per-class IoU for softmax classifiers."""

from metrics.iou import MeanIoU, batch_mean_iou, per_class_iou

__all__ = ["MeanIoU", "batch_mean_iou", "per_class_iou"]
