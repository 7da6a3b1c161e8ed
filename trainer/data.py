"""MNIST-format datasets: the four original IDX files on disk (or Keras' download) to NumPy
arrays (the batches a backend trains on: `trainer.batches`).

The training file is split into train and validation (the last `val_size` samples are held
out); the test file is kept for the final evaluation only.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from trainer.config.errors import ConfigError

log = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type codes -> NumPy dtypes (big-endian as stored).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


REFETCH = "fetch the file again (README: Getting the data)"

# Where a dataset's folder (`mnist/`, `fashion-mnist/`) is looked for when `dataset.dir` is
# null: $LRLAB_DATA_DIR alone when it is set, else these, relative to the working folder
# (`../shared/datasets`: a checkout beside a shared data folder, as on a team's machines).
DATA_ENV = "LRLAB_DATA_DIR"
DEFAULT_ROOTS = ("data", "../shared/datasets")


def data_roots(base=None):
    """The folders a dataset's folder is looked for in, in order (see DEFAULT_ROOTS);
    relative ones are taken from `base` (default: the working folder)."""
    if os.environ.get(DATA_ENV):
        return [Path(os.environ[DATA_ENV])]
    return [Path(base or ".") / root for root in DEFAULT_ROOTS]


def locate(folder, base=None):
    """(the first `<root>/<folder>` of `data_roots` holding IDX files, or None; every
    candidate looked at)."""
    looked = [root / folder for root in data_roots(base)]
    for candidate in looked:
        if any(find_idx(candidate, name) for name in FILES.values()):
            return candidate, looked
    return None, looked


def data_root(base=None):
    """The folder holding the dataset folders that `locate` finds MNIST in (else the last
    candidate): what a script hands its subprocesses as $LRLAB_DATA_DIR."""
    found, looked = locate("mnist", base)
    return (found or looked[-1]).parent.resolve()


def read_idx(path):
    """Read one IDX file (gzip'd or raw) into a NumPy array, checking its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ConfigError(f"{path}: cannot read it as an IDX file ({err})", fix=REFETCH) from err
    dtype, shape, offset = _parse_header(path, data[:64])
    body = data[offset:]
    if len(body) != dtype.itemsize * int(np.prod(shape)):
        raise ConfigError(
            f"{path}: header says shape {shape} but the file holds "
            f"{len(body)} bytes of data; the file is truncated or corrupt",
            fix=REFETCH,
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _parse_header(path, head):
    """(dtype, shape, data offset) from the first bytes of an IDX file."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
        raise ConfigError(
            f"{path}: not an IDX file (bad magic number {head[:4].hex() or 'none'}); "
            "expected the original MNIST-format files",
            fix=REFETCH,
        )
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise ConfigError(f"{path}: the IDX header is cut short", fix=REFETCH)
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.dtype(IDX_TYPES[head[2]]), shape, 4 + 4 * ndim


def check_idx(path):
    """The shape an IDX file's header declares, after checking the file's size against it.

    Reads only the header (and, for a gzip'd file, its trailer, which records the
    uncompressed size), so a missing, truncated or foreign file is caught in milliseconds.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                head = f.read(64)
            with path.open("rb") as f:
                f.seek(-4, 2)
                size = int.from_bytes(f.read(4), "little")  # ISIZE: length mod 2**32
        else:
            head = path.read_bytes()[:64]
            size = path.stat().st_size
    except (OSError, EOFError, zlib.error) as err:
        raise ConfigError(f"{path}: cannot read it as an IDX file ({err})", fix=REFETCH) from err
    dtype, shape, offset = _parse_header(path, head)
    expected = offset + dtype.itemsize * int(np.prod(shape))
    if size != expected % 2**32:
        raise ConfigError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
            f"{size} bytes; the file is truncated or corrupt",
            fix=REFETCH,
        )
    return shape


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


class Dataset(Protocol):
    """What training needs of a dataset (`conf/dataset/<name>.yaml` names a class like this
    by `_target_`; `trainer.data.IdxDataset` is MNIST's and Fashion-MNIST's). A new dataset
    is such a class and its YAML, nothing else: the models take `input_shape` and
    `num_classes` from the dataset's config (`${dataset.input_shape}`), and
    `tests/test_data.py` trains on one defined outside this package.

    Attributes:
        name: a short name for run names and tags.
        num_classes: labels are 0 .. num_classes - 1.
        class_names: one per class, for the per-class IoU table.
        input_shape: one image's shape as the model takes it, (H, W) or (H, W, C).
    """

    name: str
    num_classes: int
    class_names: list
    input_shape: tuple

    def check(self) -> int | None:
        """Check the data is there and sound without loading it (before TensorFlow loads);
        the number of training samples (validation included), or None when unknown until
        `load`. Raise a `ConfigError` naming the file and the fix otherwise."""

    def load(self) -> Splits:
        """The splits: uint8 images of `input_shape`, int labels; `source` (a path or URI)
        and `checksum` describe them in MLflow's dataset inputs."""


class IdxDataset:
    """A dataset in the original MNIST IDX layout, with a Keras download as a fallback.

    Args:
        name: a short name for run names and tags ("mnist").
        dir: folder holding the four IDX files (gzip'd or raw); None: `<root>/<folder>` for
            the first root of `data_roots()` that holds them.
        keras_name: the `keras.datasets` module to download from when the files are absent.
        folder: the dataset's folder name under a data root ("mnist", "fashion-mnist").
        val_size: training samples held out for validation (the last ones of the file).
        num_classes: number of classes.
        class_names: names of the classes, for reports.
        input_shape: an image's shape, (28, 28) for the IDX files of MNIST's layout.
    """

    def __init__(
        self,
        name,
        dir,
        keras_name,
        val_size=5000,
        num_classes=10,
        class_names=None,
        folder=None,
        input_shape=(28, 28),
    ):
        self.name = name
        self.looked = [Path(dir)] if dir is not None else []
        self.searched = dir is None  # looked for in data_roots(), not given
        if dir is None:
            found, self.looked = locate(folder or name)
            dir = found or self.looked[0]
        self.dir = Path(dir)
        self.keras_name = keras_name
        if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 0:
            raise ConfigError(
                "dataset.val_size must be a whole number >= 0. "
                f"Received: dataset.val_size={val_size!r}"
            )
        self.val_size = val_size
        self.num_classes = num_classes
        self.class_names = list(class_names or range(num_classes))
        self.input_shape = tuple(input_shape)

    def check(self):
        """Locate the four files and check their headers and sizes, without decoding them.

        Returns the number of samples in the training file, or None when there are no
        files and the Keras download will be tried. Raises a ConfigError naming the folder
        or file for a partial set, a truncated or foreign file, or a `dataset.dir` that
        holds the dataset folders (`mnist/`, `fashion-mnist/`) rather than the files.
        """
        paths = self._paths()
        if paths is None:
            return None
        shapes = {key: check_idx(path) for key, path in paths.items()}
        for images, labels in (("train_images", "train_labels"), ("test_images", "test_labels")):
            if shapes[images][0] != shapes[labels][0]:
                raise ConfigError(
                    f"{self.dir}: {FILES[images]} holds {shapes[images][0]} images but "
                    f"{FILES[labels]} {shapes[labels][0]} labels",
                    fix=REFETCH,
                )
        if not 0 <= self.val_size < shapes["train_labels"][0]:
            raise ConfigError(
                f"dataset.val_size={self.val_size} must be below the "
                f"{shapes['train_labels'][0]} training samples"
            )
        return shapes["train_labels"][0]

    def _paths(self):
        """{file key: path} of the four files, None when there are none."""
        paths = {key: find_idx(self.dir, name) for key, name in FILES.items()}
        if not any(paths.values()):
            if self.searched:  # no dataset.dir given: nothing to second-guess
                return None
            nested = sorted(
                sub.name
                for sub in (self.dir.iterdir() if self.dir.is_dir() else ())
                if sub.is_dir() and any(find_idx(sub, name) for name in FILES.values())
            )
            if nested:
                mine = [n for n in nested if n.replace("-", "_") == self.name] or nested
                raise ConfigError(
                    f"dataset.dir={self.dir} holds the folders {', '.join(nested)}, "
                    "not the four IDX files",
                    fix=f"set dataset.dir={self.dir / mine[0]}, or LRLAB_DATA_DIR={self.dir} "
                    "(the folder that holds mnist/ and fashion-mnist/)",
                )
            return None
        missing = [FILES[k] for k, p in paths.items() if p is None]
        if missing:
            raise ConfigError(
                f"dataset.dir={self.dir} holds some of the IDX files but not {', '.join(missing)}",
                fix="put all four there (gzip'd or raw; README: Getting the data), "
                "or point dataset.dir elsewhere",
            )
        return paths

    def load(self) -> Splits:
        arrays, source = self._from_disk()
        if arrays is None:
            arrays, source = self._from_keras()
        x_train, y_train, x_test, y_test = arrays
        if not 0 <= self.val_size < len(x_train):
            raise ConfigError(
                f"dataset.val_size={self.val_size} must be below the "
                f"{len(x_train)} training samples"
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
        paths = self._paths()
        if paths is None:
            return None, None
        arrays = [read_idx(paths[k]) for k in FILES]
        x_train, y_train, x_test, y_test = arrays
        for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
            if len(images) != len(labels):
                raise ConfigError(
                    f"{self.dir}: {split} images ({len(images)}) and labels "
                    f"({len(labels)}) differ in number",
                    fix=REFETCH,
                )
        arrays = (x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32))
        return arrays, str(self.dir.resolve())

    def where_looked(self):
        """Where the files were looked for, as the subject of a sentence: `dataset.dir=/abs`,
        or the folders searched (`no IDX files in data/mnist, ../shared/datasets/mnist`)."""
        if not self.searched:
            return f"dataset.dir={self.dir.resolve()} holds no IDX files"
        return "no IDX files in " + ", ".join(str(p) for p in self.looked)

    def _from_keras(self):
        import keras

        log.info(
            "no IDX files (looked in %s); trying the Keras download of %s",
            ", ".join(str(p.resolve()) for p in self.looked),
            self.keras_name,
        )
        try:
            module = getattr(keras.datasets, self.keras_name)
            (x_train, y_train), (x_test, y_test) = module.load_data()
        except Exception as err:
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise ConfigError(
                f"{self.where_looked()}, and the Keras download of {self.keras_name} "
                f"failed ({reason})",
                fix=f"put the four files ({', '.join(FILES.values())}, gzip'd or raw) in "
                f"{self.looked[0]} (README: Getting the data), set LRLAB_DATA_DIR to the "
                "folder that holds mnist/ and fashion-mnist/, or set dataset.dir=<folder>",
            ) from err
        arrays = (x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32))
        return arrays, f"keras.datasets.{self.keras_name}"
