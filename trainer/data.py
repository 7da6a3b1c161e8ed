"""MNIST-format datasets: the four original IDX files on disk (or Keras' download) to tf.data.

The training file is split into train and validation (the last `val_size` samples are held
out); the test file is kept for the final evaluation only.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type codes -> NumPy dtypes (big-endian as stored).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read one IDX file (gzip'd or raw) into a NumPy array, checking its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read it as an IDX file ({err}).") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise ValueError(
            f"{path}: not an IDX file (bad magic number {data[:4].hex()}); "
            "expected the original MNIST-format files."
        )
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[data[2]])
    body = data[4 + 4 * ndim :]
    if len(body) != dtype.itemsize * int(np.prod(shape)):
        raise ValueError(
            f"{path}: header says shape {shape} but the file holds "
            f"{len(body)} bytes of data; the file is truncated or corrupt."
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(folder, name):
    """The path of `name` or `name.gz` in `folder`, or None."""
    for candidate in (Path(folder) / f"{name}.gz", Path(folder) / name):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Splits:
    """Arrays of one dataset: uint8 images (N, 28, 28) and int labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    checksum: str


class IdxDataset:
    """A dataset in the original MNIST IDX layout, with a Keras download as a fallback.

    Args:
        name: a short name for run names and tags ("mnist").
        dir: folder holding the four IDX files (gzip'd or raw).
        keras_name: the `keras.datasets` module to download from when the files are absent.
        val_size: training samples held out for validation (the last ones of the file).
        num_classes: number of classes.
        class_names: names of the classes, for reports.
    """

    def __init__(self, name, dir, keras_name, val_size=5000, num_classes=10, class_names=None):
        self.name = name
        self.dir = Path(dir)
        self.keras_name = keras_name
        if not isinstance(val_size, int) or val_size < 0:
            raise ValueError(
                f"dataset.val_size must be a whole number >= 0. Received: {val_size!r}"
            )
        self.val_size = val_size
        self.num_classes = num_classes
        self.class_names = list(class_names or range(num_classes))

    def load(self) -> Splits:
        arrays, source = self._from_disk()
        if arrays is None:
            arrays, source = self._from_keras()
        x_train, y_train, x_test, y_test = arrays
        if not 0 <= self.val_size < len(x_train):
            raise ValueError(
                f"dataset.val_size={self.val_size} must be below the "
                f"{len(x_train)} training samples."
            )
        cut = len(x_train) - self.val_size
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
        log.info(
            "%s: %d train, %d validation, %d test samples from %s",
            self.name,
            cut,
            self.val_size,
            len(x_test),
            source,
        )
        return Splits(
            x_train[:cut],
            y_train[:cut],
            x_train[cut:],
            y_train[cut:],
            x_test,
            y_test,
            source,
            digest.hexdigest(),
        )

    def _from_disk(self):
        paths = {key: find_idx(self.dir, name) for key, name in FILES.items()}
        if not any(paths.values()):
            return None, None
        missing = [FILES[k] for k, p in paths.items() if p is None]
        if missing:
            raise FileNotFoundError(
                f"dataset.dir={self.dir} holds some of the IDX files but not {missing}; "
                "put all four there (gzip'd or raw) or point dataset.dir elsewhere."
            )
        arrays = [read_idx(paths[k]) for k in FILES]
        x_train, y_train, x_test, y_test = arrays
        for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
            if len(images) != len(labels):
                raise ValueError(
                    f"{self.dir}: {split} images ({len(images)}) and labels "
                    f"({len(labels)}) differ in number."
                )
        return (x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32)), str(self.dir)

    def _from_keras(self):
        import keras

        log.info("no IDX files in %s; trying the Keras download of %s", self.dir, self.keras_name)
        try:
            module = getattr(keras.datasets, self.keras_name)
            (x_train, y_train), (x_test, y_test) = module.load_data()
        except Exception as err:
            raise FileNotFoundError(
                f"dataset {self.name!r}: no IDX files in {self.dir.resolve()} and the Keras "
                f"download failed ({type(err).__name__}: {err}). Put the four files "
                f"({', '.join(FILES.values())}, gzip'd or raw) in that folder, or set "
                "LRLAB_DATA_DIR to the folder holding mnist/ and fashion-mnist/, or set "
                "dataset.dir=<folder>."
            ) from err
        arrays = (x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32))
        return arrays, f"keras.datasets.{self.keras_name}"


def batches(images, labels, batch_size, shuffle_seed=None, limit=None):
    """A tf.data pipeline of (uint8 image, int label) batches.

    Samples (not batches) are reshuffled every epoch from `shuffle_seed` when it is given;
    `limit` caps the number of batches per pass.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if limit is not None:
        ds = ds.take(limit)
    return ds.prefetch(tf.data.AUTOTUNE)
