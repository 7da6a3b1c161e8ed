"""From the command line to objects: what both apps (`python -m trainer`, `python -m
schedules`) share between the user's input and the schedule library.

- `build`: schedules, optimizers and Keras objects from config nodes (`_target_`), with the
  user's units of length (`lengths`: 500, 2ep, 0.3dur) and checked arguments;
- `overrides`: command-line overrides checked before Hydra composes ("did you mean");
- `resolvers`: the OmegaConf resolvers the configs use (registered on import of this package);
- `console`: bad input as a few lines, a quiet TensorFlow import;
- `errors`: `ConfigError`, the one error type for bad input;
- `preview`, `preview_app`: `python -m schedules`, a schedule's curve without training.

- `location`: `CONF`, where the config groups are (`conf/`, shipped in the distribution).
"""

import trainer.config.resolvers  # noqa: F401  (the configs' ${times:...})
from trainer.config.location import CONF, CONF_PACKAGE

__all__ = ["CONF", "CONF_PACKAGE"]
