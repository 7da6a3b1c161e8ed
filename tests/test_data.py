"""The loader on the real MNIST and Fashion-MNIST files in ../shared/datasets."""

import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from trainer.config.errors import ConfigError
from trainer.data import FILES, IdxDataset, read_idx

MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_files_on_disk_match_their_checksums(datasets):
    sums = dict(line.split()[::-1] for line in (datasets / "SHA256SUMS").read_text().splitlines())
    for name, digest in sums.items():
        assert hashlib.sha256((datasets / name).read_bytes()).hexdigest() == digest, name


def test_mnist_splits(datasets):
    splits = IdxDataset("mnist", datasets / "mnist", "mnist").load()
    assert splits.x_train.shape == (55000, 28, 28) and splits.x_train.dtype == np.uint8
    assert splits.x_val.shape == (5000, 28, 28) and splits.x_test.shape == (10000, 28, 28)
    labels = np.concatenate([splits.y_train, splits.y_val])
    assert np.bincount(labels).tolist() == MNIST_TRAIN_LABEL_COUNTS
    assert splits.source == str(datasets / "mnist") and len(splits.checksum) == 64


def test_fashion_mnist_is_balanced(datasets):
    splits = IdxDataset(
        "fashion_mnist", datasets / "fashion-mnist", "fashion_mnist", val_size=0
    ).load()
    assert np.bincount(splits.y_train).tolist() == [6000] * 10
    assert np.bincount(splits.y_test).tolist() == [1000] * 10


def test_raw_and_gzipped_files_read_the_same(datasets, tmp_path):
    gz = datasets / "mnist" / f"{FILES['test_labels']}.gz"
    raw = tmp_path / FILES["test_labels"]
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), read_idx(gz))


def test_corrupt_and_truncated_files_name_the_file(datasets, tmp_path):
    bad = tmp_path / "bad-idx1-ubyte"
    bad.write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match=rf"{bad}: not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(
        gzip.decompress((datasets / "mnist" / f"{FILES['test_labels']}.gz").read_bytes())[:100]
    )
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(short)


def test_some_files_missing_is_an_error_naming_them(datasets, tmp_path):
    (tmp_path / f"{FILES['train_images']}.gz").write_bytes(
        (datasets / "mnist" / f"{FILES['train_images']}.gz").read_bytes()
    )
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte"):
        IdxDataset("mnist", tmp_path, "mnist").load()
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte"):
        IdxDataset("mnist", tmp_path, "mnist").check()


def test_check_reads_headers_only_and_counts_the_training_samples(datasets):
    assert IdxDataset("mnist", datasets / "mnist", "mnist").check() == 60000
    assert IdxDataset("mnist", datasets / "nowhere", "mnist").check() is None  # download


def test_the_folder_above_the_datasets_is_recognised(datasets):
    with pytest.raises(ConfigError, match=r"(?s)holds the folders .*fix: set dataset.dir=.*mnist"):
        IdxDataset("mnist", datasets, "mnist").check()


def test_no_files_tries_the_keras_download_and_says_how_to_get_the_files(tmp_path, monkeypatch):
    # The real download, made to fail the same way with or without a network: through a
    # proxy on a port nothing listens on, with an empty Keras cache.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(ConfigError) as err:
        IdxDataset("mnist", tmp_path / "empty", "mnist").load()
    message = str(err.value)
    assert str((tmp_path / "empty").resolve()) in message
    assert "Keras download of mnist failed" in message and "LRLAB_DATA_DIR" in message
    assert "README: Getting the data" in message


def test_val_size_must_leave_training_data(datasets):
    with pytest.raises(ValueError, match=r"dataset\.val_size=60000"):
        IdxDataset("mnist", datasets / "mnist", "mnist", val_size=60000).load()


def test_epoch_batches_are_a_pure_function_of_seed_and_epoch():
    from trainer.batches import EpochBatches

    images = np.arange(100 * 4, dtype=np.uint8).reshape(100, 2, 2)
    labels = np.arange(100)

    def epoch(batches, number, skip=0):
        batches.callback.on_epoch_begin(number)  # as Keras does, before the epoch's iterator
        return [np.asarray(y).tolist() for _, y in batches.dataset(skip)]

    def samples(epoch_batches):
        return [label for batch in epoch_batches for label in batch]

    batches = EpochBatches(images, labels, 32, 4, seed=7)
    first, second = epoch(batches, 0), epoch(batches, 1)
    assert [len(b) for b in first] == [32, 32, 32, 4]
    assert sorted(samples(first)) == list(range(100)) == sorted(samples(second))
    assert first != second  # reshuffled every epoch
    # Another object, another process: epoch 1 alone, and from its third batch on.
    again = EpochBatches(images, labels, 32, 4, seed=7)
    assert epoch(again, 1) == second and epoch(again, 1, skip=2) == second[2:]
    assert epoch(EpochBatches(images, labels, 32, 2, seed=7), 1) == second[:2]  # a limit
    assert samples(epoch(EpochBatches(images, labels, 32, 4, seed=None), 3)) == list(range(100))


def test_the_default_config_finds_the_data_as_python_m_trainer_does(
    datasets, tmp_path, monkeypatch, compose
):
    """No dataset.dir: $LRLAB_DATA_DIR, else ./data, else ../shared/datasets (the README's
    first command in a checkout beside shared/); nothing there names every folder looked at."""
    from hydra.utils import instantiate

    checkout, shared = tmp_path / "lrlab", tmp_path / "shared"
    checkout.mkdir()
    shared.mkdir()
    (shared / "datasets").symlink_to(datasets)
    monkeypatch.delenv("LRLAB_DATA_DIR", raising=False)
    monkeypatch.chdir(checkout)
    for name, folder in (("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")):
        found = instantiate(compose("train", [f"dataset={name}"]).dataset)
        assert found.dir.resolve() == (datasets / folder).resolve()
        assert found.check() == 60000
    monkeypatch.setenv("LRLAB_DATA_DIR", str(tmp_path / "elsewhere"))
    assert instantiate(compose("train").dataset).check() is None  # the variable wins: download
    monkeypatch.delenv("LRLAB_DATA_DIR")
    (shared / "datasets").unlink()
    lost = instantiate(compose("train").dataset)
    assert lost.check() is None
    assert lost.where_looked() == "no IDX files in data/mnist, ../shared/datasets/mnist"


NOISE_DATASET = '''
import numpy as np

from trainer.data import Splits


class NoiseDataset:
    """Random colour images of 3 classes, made on the spot: a dataset no one shipped."""

    def __init__(self, name, val_size, num_classes, input_shape, class_names, samples=700):
        self.name, self.val_size, self.samples = name, val_size, samples
        self.num_classes, self.class_names = num_classes, list(class_names)
        self.input_shape = tuple(input_shape)

    def check(self):
        return self.samples

    def load(self):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (self.samples + 200, *self.input_shape), dtype=np.uint8)
        y = rng.integers(0, self.num_classes, self.samples + 200)
        cut, end = self.samples - self.val_size, self.samples
        return Splits(
            x[:cut], y[:cut], x[cut:end], y[cut:end], x[end:], y[end:],
            source="synthetic://noise", checksum="0" * 16,
        )
'''


def test_a_new_dataset_is_one_class_and_one_yaml(tmp_path):
    # Defined outside the package, as a user's own: the class beside the working folder,
    # the YAML in a config folder of their own; the models take its shape and classes.
    (tmp_path / "noise_data.py").write_text(NOISE_DATASET)
    yaml = tmp_path / "conf" / "dataset" / "noise.yaml"
    yaml.parent.mkdir(parents=True)
    yaml.write_text(
        "_target_: noise_data.NoiseDataset\nname: noise\nval_size: 100\nnum_classes: 3\n"
        "input_shape: [12, 12, 3]\nclass_names: [red, green, blue]\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            "dataset=noise",
            "model=cnn",
            "trainer.epochs=1",
            "trainer.batch_size=50",
            "sink=[csv]",
            f"output_dir={tmp_path}/run",
        ],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    steps = (run / "steps.csv").read_text().splitlines()[1:]
    assert len(steps) == 12  # 600 training images in batches of 50
    iou = (run / "iou_per_class.csv").read_text()
    assert all(name in iou for name in ("red", "green", "blue"))
    assert "cnn-noise" in out.stdout + out.stderr  # its name in the run's name
