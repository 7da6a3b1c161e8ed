"""OmegaConf resolvers the configs use; registered when `schedules` is imported.

- `${times:0.1,${optimizer.learning_rate}}`: a product, so that a schedule's rates are
  fractions of the optimizer's peak rate and follow it.
- `${config_groups:schedule,warmup}`: the options of those config groups, one line each,
  for an app's `--help`.
- `${cwd:}`: the launching process's working folder, so that a sweep's folder is an absolute
  path. Cached: Hydra hands the launching config's resolved values to every job's config, so a
  trial on a Ray node (which runs in that node's own folder) gets the launcher's folder, not
  its own. (`${hydra:runtime.cwd}` cannot be used there: Hydra's multirun callbacks read the
  sweep folder before its HydraConfig is set.)
"""

from __future__ import annotations

import numbers
import os

from omegaconf import OmegaConf

from trainer.config.location import CONF


def times(*factors):
    product = 1.0
    for factor in factors:
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            raise ValueError(f"${{times:...}} multiplies numbers. Received: {factor!r}")
        product *= factor
    return product


def config_groups(*groups):
    lines = []
    for group in groups:
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        lines.append(f"  {group}: {', '.join(options)}")
    return "\n".join(lines)


def register():
    OmegaConf.register_new_resolver("times", times, replace=True)
    OmegaConf.register_new_resolver("config_groups", config_groups, replace=True)
    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True, use_cache=True)


register()
