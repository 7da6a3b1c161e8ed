"""Where the config groups are: the `lrlab_conf` package, which is the repository's `conf/`
(pyproject.toml maps it) and is shipped inside the distribution, so that an installed lrlab
finds its configs from any folder. Hydra reads it as `pkg://lrlab_conf`.

Importing this also stores the groups' typed schemas (`trainer.config.settings`) in Hydra's
ConfigStore, which the YAML files there name: whatever composes the configs finds them here.
"""

from pathlib import Path

import lrlab_conf

from trainer.config import settings

settings.register()

CONF = Path(lrlab_conf.__file__).parent
CONF_PACKAGE = "pkg://lrlab_conf"
