"""Shared test helpers: composing the real config, and where the real datasets live."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from hydra import compose, initialize_config_dir

import schedules.resolvers  # noqa: F401  (the configs use ${times:...})

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATASETS = Path(os.environ.get("LRLAB_DATA_DIR", ROOT.parent / "shared" / "datasets"))
SCHEDULE_NAMES = sorted(p.stem for p in (CONF / "schedule").glob("*.yaml"))


def compose_config(config_name, overrides=()):
    """The real composed config, as the app would see it, with test overrides."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


@pytest.fixture
def datasets():
    if not (DATASETS / "mnist").is_dir():
        pytest.fail(f"real datasets not found at {DATASETS}; set LRLAB_DATA_DIR")
    return DATASETS
