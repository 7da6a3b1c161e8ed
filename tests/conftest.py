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
    # mlflow.set_tracking_uri (in an earlier test's read-back) also sets this variable, which
    # the trainers a test starts would inherit: each test starts without it.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def compose():
    """`compose(config_name, overrides)`: the real config, as the app composes it."""
    return compose_config


@pytest.fixture
def postgres_database():
    """`postgres_database()`: the SQLAlchemy URL of a fresh database on the local PostgreSQL
    (127.0.0.1:5432, trust auth), each dropped afterwards. Skips where no server answers,
    except under CI, which has one."""
    import uuid

    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    except psycopg2.OperationalError as err:
        if os.environ.get("CI"):  # CI has the server: its absence is a failure there
            raise
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 (database test): {err}")
    admin.autocommit = True
    made = []

    def new():
        name = f"lrlab_{uuid.uuid4().hex[:10]}"
        admin.cursor().execute(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"

    yield new
    for name in made:
        admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def mlflow_server(workdir):
    """A real `mlflow server` on a free local port (SQLite store, artifacts in workdir),
    its URI; stopped afterwards."""
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(f"sqlite:///{workdir}/server.db", workdir / "server-artifacts")
    try:
        yield server.start().uri
    finally:
        server.kill()
