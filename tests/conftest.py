"""Fixtures shared by the tests: the real datasets, a working folder, the composed config."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

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


@pytest.fixture
def mlflow_server(workdir):
    """A real `mlflow server` on a free local port (SQLite store, artifacts in workdir),
    its URI; stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{workdir}/server.db",
            "--artifacts-destination",
            str(workdir / "server-artifacts"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)
