"""Where the project and the real datasets are, and the real config, composed as the apps do.

Plain names for module-level use (test parameters, helpers); `conftest.py` offers the same
as fixtures to tests.
"""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

import trainer.config.resolvers  # noqa: F401  (the configs use ${times:...})
from trainer.config.location import CONF
from trainer.data import data_root

ROOT = Path(__file__).resolve().parents[1]
# The folder holding mnist/ and fashion-mnist/, found as `python -m trainer` run from the
# checkout finds it: $LRLAB_DATA_DIR, else ./data, else ../shared/datasets.
DATASETS = data_root(base=ROOT)
SCHEDULE_NAMES = sorted(p.stem for p in (CONF / "schedule").glob("*.yaml"))


def compose_config(config_name, overrides=()):
    """The real composed config, as the app would see it, with test overrides."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def trainer_command(*args, **env):
    """argv and environment for `python -m trainer ARGS` as a user runs it, on the real data."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LRLAB_DATA_DIR": str(DATASETS)}
    return [sys.executable, "-m", "trainer", *args], {**environment, **env}


def run_trainer(*args, cwd=None, timeout=300, **env):
    """`python -m trainer ARGS` in a fresh process, as a user runs it; the finished process.
    It runs in `cwd`, by default a fresh temporary folder: never in the checkout, where
    Hydra's `outputs/` would pile up in the user's own."""
    cwd = cwd or tempfile.mkdtemp(prefix="lrlab-test-")
    argv, environment = trainer_command(*args, **env)
    return subprocess.run(
        argv, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
