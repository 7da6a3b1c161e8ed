"""The batches a run trains and evaluates on, from the NumPy arrays of `trainer.data`.

On TensorFlow they are a `tf.data` pipeline (gathering and shuffling in TensorFlow's own
threads, prefetched); on JAX and PyTorch a `keras.utils.PyDataset` over the arrays, which
imports neither TensorFlow nor anything else. Either way a training epoch's order is a pure
function of `(seed, epoch)`, so that a run resumed at any step sees the very batches it
would have seen, without any data state to restore. The two backends' orders differ (a
TensorFlow stateless shuffle against NumPy's generator): a run resumed on another backend
trains on other batches, as a run with another seed would.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


def epoch_order(n, seed, epoch):
    """The sample order of `epoch` on JAX and PyTorch: a permutation of range(n) drawn from
    NumPy's PCG64 seeded with (seed, epoch); file order when `seed` is None."""
    if seed is None:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batches(images, labels, batch_size, shuffle_seed=None, limit=None, repeat=False):
    """(uint8 image, int label) batches of one pass over the arrays (`repeat`: passes
    without end, as the range test takes them).

    Samples (not batches) are reshuffled every pass from `shuffle_seed` when it is given;
    `limit` caps the number of batches per pass.
    """
    if _on_tensorflow():
        return _tf_batches(images, labels, batch_size, shuffle_seed, limit, repeat)
    steps = math.ceil(len(images) / batch_size)
    if limit is not None:
        steps = min(steps, limit)
    epoch = _EpochNumber()
    return ArrayBatches(images, labels, batch_size, steps, shuffle_seed, epoch, repeat=repeat)


def _tf_batches(images, labels, batch_size, shuffle_seed, limit, repeat):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if limit is not None:
        ds = ds.take(limit)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


class _EpochNumber:
    """The epoch under way, set by Keras' `on_epoch_begin` through `EpochBatches.callback`."""

    value = 0


class ArrayBatches(keras.utils.PyDataset):
    """Batches of the arrays for JAX and PyTorch: batch b of epoch e holds the samples at
    positions b*batch_size .. (b+1)*batch_size-1 of `epoch_order(n, seed, e)`.

    `skip` leaves out an epoch's first batches (a resumed epoch); `repeat` runs pass after
    pass (pass p counted as epoch `epoch.value + p`). Gathering 32 small images takes
    microseconds, so it runs on the training thread (Keras' default for a PyDataset).
    """

    def __init__(self, images, labels, batch_size, steps, seed, epoch, skip=0, repeat=False):
        super().__init__()
        self.images, self.labels = np.asarray(images), np.asarray(labels)
        self.batch_size, self.steps, self.seed = int(batch_size), int(steps), seed
        self.epoch, self.skip, self.repeat = epoch, int(skip), repeat
        self._order = (None, None)  # (epoch, its order), the last one computed

    @property
    def num_batches(self):
        return None if self.repeat else self.steps - self.skip

    def __len__(self):
        return self.steps - self.skip

    def __getitem__(self, index):
        passes, batch = divmod(self.skip + int(index), self.steps)
        epoch = self.epoch.value + passes
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.images), self.seed, epoch))
        picked = self._order[1][batch * self.batch_size : (batch + 1) * self.batch_size]
        return self.images[picked], self.labels[picked]


class EpochBatches:
    """The training batches of every epoch, each epoch in an order that is a pure function of
    `(seed, epoch)` (`seed=None`: file order).

    `dataset(skip)` is one epoch of (uint8 image, int label) batches, from batch `skip` on (a
    resumed epoch), which Keras iterates afresh each epoch; `callback` tells it which epoch
    is starting. Keras creates an epoch's iterator after the callbacks' `on_epoch_begin`, and
    the order is computed when that iterator starts, from the epoch set there.

    Args:
        images, labels: the training split.
        batch_size: samples per batch (the last one of a pass may be smaller).
        steps_per_epoch: batches per epoch, at most one pass (`trainer.limit_train_batches`).
        seed: the shuffle's seed, or None.
    """

    def __init__(self, images, labels, batch_size, steps_per_epoch, seed):
        self.images, self.labels = images, labels
        self.batch_size, self.steps_per_epoch, self.seed = batch_size, steps_per_epoch, seed
        if _on_tensorflow():
            import tensorflow as tf

            self.images, self.labels = tf.constant(images), tf.constant(labels)
            with tf.device("/CPU:0"):  # read by tf.data, which runs on the CPU
                self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            set_epoch = self.epoch.assign
        else:
            self.epoch = _EpochNumber()
            set_epoch = lambda number: setattr(self.epoch, "value", int(number))  # noqa: E731

        class SetEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, number, logs=None):
                set_epoch(number)

        self.callback = SetEpoch()

    def dataset(self, skip=0):
        if not _on_tensorflow():
            return ArrayBatches(
                self.images,
                self.labels,
                self.batch_size,
                self.steps_per_epoch,
                self.seed,
                self.epoch,
                skip=skip,
            )
        return self._tf_dataset(skip)

    def _tf_dataset(self, skip):
        import tensorflow as tf

        n, size = len(self.images), self.batch_size

        def order(_):
            indices = tf.range(n, dtype=tf.int64)
            if self.seed is None:
                return indices
            seed = tf.stack([tf.constant(self.seed, tf.int64), self.epoch.read_value()])
            return tf.random.experimental.stateless_shuffle(indices, seed=seed)

        def epoch_batches(indices):
            positions = tf.data.Dataset.range(skip, self.steps_per_epoch)
            return positions.map(lambda b: indices[b * size : (b + 1) * size])

        def gather(index):
            return tf.gather(self.images, index), tf.gather(self.labels, index)

        ds = tf.data.Dataset.from_tensors(0).map(order).flat_map(epoch_batches)
        ds = ds.apply(tf.data.experimental.assert_cardinality(self.steps_per_epoch - skip))
        return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
