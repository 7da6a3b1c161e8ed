"""Intersection over union for softmax classifiers, from Keras' confusion-matrix metrics.

For class c with confusion matrix `cm` (rows: true class, columns: predicted class):
`IoU_c = cm[c, c] / (sum(cm[c, :]) + sum(cm[:, c]) - cm[c, c])`. MeanIoU averages over the
classes whose denominator is non-zero (those that occur as label or prediction), as
`keras.metrics.MeanIoU` does.
"""

import keras
import numpy as np
from keras import ops


def class_ids(y_true, y_pred):
    """Sparse labels from sparse or one-hot `y_true` (one-hot has the rank of `y_pred`)."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1]:
        return ops.argmax(y_true, axis=-1)
    return ops.reshape(y_true, (-1,))


def per_class_iou(confusion):
    """IoU of every class from a confusion matrix, or from a stack of them (..., K, K).

    NaN where a class never occurs (neither as label nor as prediction).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-2) + confusion.sum(axis=-1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, tp / denominator, np.nan)


def confusion_matrix(y_true, y_pred, num_classes, ignore_class=None, sample_weight=None):
    """The batch's float32 confusion matrix (rows: true class, columns: argmax of y_pred).

    One segment sum of the weights over `label * num_classes + prediction`: a few ops per
    step on every backend, where `tf.math.confusion_matrix` (Keras' MeanIoU) adds int64
    casts and runtime assertions (and a `bincount` has no static length under JAX's jit).
    """
    labels = ops.cast(class_ids(y_true, y_pred), "int32")
    predicted = ops.cast(ops.reshape(ops.argmax(y_pred, axis=-1), (-1,)), "int32")
    weights = ops.ones_like(labels, dtype="float32")
    if sample_weight is not None:
        weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    if ignore_class is not None:
        keep = ops.cast(ops.not_equal(labels, ignore_class), "float32")
        weights = weights * keep
        labels = labels * ops.cast(keep, "int32")  # ignored labels count with weight 0
    cells = num_classes * num_classes
    counts = ops.segment_sum(weights, labels * num_classes + predicted, num_segments=cells)
    return ops.reshape(counts, (num_classes, num_classes))


def mean_iou_np(confusions):
    """MeanIoU of each confusion matrix in a stack (..., K, K), over the classes present."""
    ious = per_class_iou(confusions)
    present = ~np.isnan(ious)
    return np.where(present, ious, 0.0).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def mean_iou_of(confusion):
    """MeanIoU over the classes that occur in a confusion matrix (float32 tensor)."""
    tp = ops.diagonal(confusion)
    denominator = ops.sum(confusion, axis=0) + ops.sum(confusion, axis=1) - tp
    present = ops.cast(denominator > 0, "float32")
    iou = tp / ops.maximum(denominator, 1.0)
    return ops.sum(iou * present) / ops.maximum(ops.sum(present), 1.0)


@keras.saving.register_keras_serializable(package="lrlab")
class MeanIoU(keras.metrics.MeanIoU):
    """MeanIoU over classes for softmax outputs, against sparse or one-hot labels.

    Keras' `MeanIoU` with `sparse_y_pred=False` (the argmax of the softmax is taken) and
    one-hot labels turned into class ids, accumulating a cheaper confusion matrix (see
    `confusion_matrix`). `per_class()` gives each class's IoU from the same matrix, and
    `batch_confusion` holds the last batch's matrix while a step is traced.

    Args:
        num_classes: number of classes.
        ignore_class: a label to leave out of the confusion matrix, or None.
    """

    def __init__(self, num_classes, ignore_class=None, name="mean_iou", dtype=None):
        super().__init__(
            num_classes=num_classes,
            name=name,
            ignore_class=ignore_class,
            sparse_y_true=True,
            sparse_y_pred=False,
            dtype=dtype,
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        confusion = confusion_matrix(
            y_true, y_pred, self.num_classes, self.ignore_class, sample_weight
        )
        # The training step reads the batch's own matrix back for its per-step MeanIoU.
        self.batch_confusion = confusion
        self.total_cm.assign_add(ops.cast(confusion, self.total_cm.dtype))

    def result(self):
        # Every training step returns the running result: the fewest ops that compute it.
        confusion = ops.cast(self.total_cm, "float32")
        return mean_iou_of(confusion)

    def per_class(self):
        """IoU per class (NumPy, NaN for classes absent from labels and predictions)."""
        return per_class_iou(keras.ops.convert_to_numpy(self.total_cm))

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "ignore_class": self.ignore_class,
            "name": self.name,
            "dtype": self.dtype,
        }
