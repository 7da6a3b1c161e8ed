"""Where the project and the real datasets are, and the real config, composed as the apps do.

Plain names for module-level use (test parameters, helpers); `conftest.py` offers the same
as fixtures to tests.
"""

import os
from pathlib import Path

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
