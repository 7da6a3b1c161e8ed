"""MeanIoU and per-class IoU, against a hand-worked confusion matrix and Keras."""

import keras
import numpy as np
import pytest

from metrics import MeanIoU, confusion_matrix, mean_iou_np, per_class_iou


def batch_mean_iou(y_true, y_pred, num_classes, ignore_class=None):
    """The per-step value lrlab logs: the batch's matrix, its MeanIoU taken on the host."""
    return mean_iou_np(confusion_matrix(y_true, y_pred, num_classes, ignore_class))


# Labels and argmax predictions; confusion matrix (rows true, columns predicted):
#   [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  (class 3 never occurs)
LABELS = np.array([0, 0, 1, 2, 2, 2])
PREDICTED = np.array([0, 1, 1, 2, 2, 0])
PROBS = np.eye(4, dtype="float32")[PREDICTED] * 0.7 + 0.075
HAND_IOU = [1 / 3, 1 / 2, 2 / 3]  # tp / (row + column - tp)


def test_hand_worked_confusion_matrix():
    metric = MeanIoU(4)
    metric.update_state(LABELS, PROBS)
    np.testing.assert_allclose(metric.per_class()[:3], HAND_IOU)
    assert np.isnan(metric.per_class()[3])
    assert float(metric.result()) == pytest.approx(np.mean(HAND_IOU))
    assert float(batch_mean_iou(LABELS, PROBS, 4)) == pytest.approx(np.mean(HAND_IOU))


def test_one_hot_labels_give_the_same():
    metric = MeanIoU(4)
    metric.update_state(np.eye(4)[LABELS], PROBS)
    assert float(metric.result()) == pytest.approx(np.mean(HAND_IOU))
    assert float(batch_mean_iou(np.eye(4)[LABELS], PROBS, 4)) == pytest.approx(np.mean(HAND_IOU))


def test_ignore_class_leaves_its_labels_out():
    # Without the samples labelled 2: class 0 -> 1/2, class 1 -> 1/2, class 2 absent.
    metric = MeanIoU(4, ignore_class=2)
    metric.update_state(LABELS, PROBS)
    np.testing.assert_allclose(metric.per_class()[:2], [0.5, 0.5])
    assert float(metric.result()) == pytest.approx(0.5)
    assert float(batch_mean_iou(LABELS, PROBS, 4, ignore_class=2)) == pytest.approx(0.5)


def test_agrees_with_keras_mean_iou_on_random_batches():
    rng = np.random.default_rng(0)
    ours, theirs = MeanIoU(10), keras.metrics.MeanIoU(10, sparse_y_pred=False)
    for _ in range(5):
        y = rng.integers(0, 10, 64)
        p = rng.dirichlet(np.ones(10), 64).astype("float32")
        ours.update_state(y, p)
        theirs.update_state(y, p)
        assert float(batch_mean_iou(y, p, 10)) == pytest.approx(
            float(keras.metrics.MeanIoU(10, sparse_y_pred=False)(y, p)), rel=1e-6
        )
    assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-6)


def test_per_class_iou_of_a_perfect_prediction():
    np.testing.assert_allclose(per_class_iou(np.diag([3, 4, 5])), [1, 1, 1])


def test_a_stack_of_matrices_gives_each_its_own_mean_iou():
    # The recorder hands mean_iou_np a block of per-step matrices at once.
    single = np.array(confusion_matrix(LABELS, PROBS, 4))
    stack = np.stack([single, np.diag([3.0, 4.0, 0.0, 0.0])])
    np.testing.assert_allclose(mean_iou_np(stack), [np.mean(HAND_IOU), 1.0])
    assert per_class_iou(stack).shape == (2, 4)
