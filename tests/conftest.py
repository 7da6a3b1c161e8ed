"""Fixtures shared by the tests: the real datasets, a working folder, the composed config."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from tests.project import DATASETS, compose_config


@pytest.fixture
def datasets():
    """The folder holding mnist/ and fashion-mnist/ (the real IDX files)."""
    if not (DATASETS / "mnist").is_dir():
        pytest.fail(f"real datasets not found at {DATASETS}; set LRLAB_DATA_DIR")
    return DATASETS


@pytest.fixture
def workdir(tmp_path, monkeypatch, datasets):
    """A fresh working folder, made current (MLflow's default store lands there), with the
    real data found through LRLAB_DATA_DIR and the folder importable (a user's own sink)."""
    monkeypatch.setenv("LRLAB_DATA_DIR", str(datasets))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def compose():
    """`compose(config_name, overrides)`: the real config, as the app composes it."""
    return compose_config
