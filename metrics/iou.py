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
    """IoU of every class from a confusion matrix (NaN where a class never occurs)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, tp / denominator, np.nan)


def batch_mean_iou(y_true, y_pred, num_classes, ignore_class=None):
    """MeanIoU of one batch of softmax outputs, as a float32 tensor (graph-safe)."""
    labels = ops.cast(class_ids(y_true, y_pred), "int32")
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    weights = None
    if ignore_class is not None:
        weights = ops.cast(ops.not_equal(labels, ignore_class), "float32")
    confusion = ops.cast(_confusion(labels, predicted, num_classes, weights), "float32")
    tp = ops.diagonal(confusion)
    denominator = ops.sum(confusion, axis=0) + ops.sum(confusion, axis=1) - tp
    present = ops.cast(denominator > 0, "float32")
    iou = tp / ops.maximum(denominator, 1.0)
    return ops.sum(iou * present) / ops.maximum(ops.sum(present), 1.0)


def _confusion(labels, predicted, num_classes, weights):
    index = labels * num_classes + predicted
    ones = ops.ones_like(index, dtype="float32") if weights is None else weights
    flat = ops.segment_sum(ones, index, num_segments=num_classes * num_classes)
    return ops.reshape(flat, (num_classes, num_classes))


@keras.saving.register_keras_serializable(package="lrlab")
class MeanIoU(keras.metrics.MeanIoU):
    """MeanIoU over classes for softmax outputs, against sparse or one-hot labels.

    Keras' `MeanIoU` with `sparse_y_pred=False` (the argmax of the softmax is taken), and
    one-hot labels turned into class ids. `per_class()` gives each class's IoU from the
    same accumulated confusion matrix.

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
        return super().update_state(class_ids(y_true, y_pred), y_pred, sample_weight)

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
