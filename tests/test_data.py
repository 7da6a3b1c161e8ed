"""The loader on the real MNIST and Fashion-MNIST files in ../shared/datasets."""

import gzip
import hashlib

import numpy as np
import pytest

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
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        IdxDataset("mnist", tmp_path, "mnist").load()


def test_no_files_falls_back_to_the_keras_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    dataset = IdxDataset("mnist", tmp_path / "empty", "mnist")
    try:
        splits = dataset.load()
    except FileNotFoundError as err:  # no network: the message must say where and how
        message = str(err)
        assert str((tmp_path / "empty").resolve()) in message
        assert "Keras download failed" in message and "LRLAB_DATA_DIR" in message
    else:  # network: the download is real MNIST
        assert splits.source == "keras.datasets.mnist" and splits.x_test.shape == (10000, 28, 28)


def test_val_size_must_leave_training_data(datasets):
    with pytest.raises(ValueError, match=r"dataset\.val_size=60000"):
        IdxDataset("mnist", datasets / "mnist", "mnist", val_size=60000).load()
