"""Lengths with their unit: optimizer steps, epochs (`"2ep"`) or a fraction of the run (`"0.3dur"`).

A config length is one key, named as the constructor argument (`decay_steps`, `step_size`,
`boundaries`, ...), holding:

- an integer: optimizer steps, as the schedule classes take them;
- `"<x>ep"`: x epochs (fractions allowed), `round(x * steps_per_epoch)` steps;
- `"<x>dur"`: a fraction x of the span the schedule drives, `round(x * span)` steps. The
  span is the run's total steps, less any warmup in front of the schedule; `"1dur"` is all
  of it. MosaicML Composer's time strings (`"1ep"`, `"0.5dur"`) are the model.

This module only parses; `trainer.config.build` decides each key's span.
"""

from __future__ import annotations

import math
import re

from trainer.config.errors import ConfigError

UNITS = {"ep": "epochs", "dur": "fraction of the run"}
_LENGTH = re.compile(r"^\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(ep|dur)\s*$", re.IGNORECASE)

FORMS = "a whole number of steps, '<x>ep' (epochs) or '<x>dur' (a fraction of the run)"


def to_steps(key, value, steps_per_epoch=None, span=None):
    """The steps `value` stands for: an int as is, `"2ep"` and `"0.3dur"` converted.

    Args:
        key: the full config key, for messages (`schedule.decay_steps`).
        value: an int, an integral float (`1e3`), or a string with a unit.
        steps_per_epoch: converts `ep`; None where it is not known.
        span: the steps `1dur` stands for; None where it is not known.

    Raises:
        ConfigError naming the key, the forms it takes and a fix.
    """
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{key} must be {FORMS}. Received: {key}={value!r}", fix=_example(key))
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return int(value)
        raise ConfigError(
            f"{key} must be {FORMS}. Received: {key}={value!r} (a fraction of a step)",
            fix=f"{key}={value}ep for epochs, or {key}={round(value)} for steps",
        )
    match = _LENGTH.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{key} must be {FORMS}. Received: {key}={value!r}", fix=_example(key))
    amount, unit = float(match.group(1)), match.group(2).lower()
    if unit == "ep":
        if not steps_per_epoch:
            raise ConfigError(
                f"{key}={value!r} is in epochs, but the steps per epoch are not known here",
                fix=f"give {key} in steps, or set preview.steps_per_epoch",
            )
        return round(amount * steps_per_epoch)
    if span is None:
        raise ConfigError(
            f"{key}={value!r} is a fraction of the run, but the run's length is not known here",
            fix=f"give {key} in steps or epochs",
        )
    return round(amount * span)


def _example(key):
    return f"e.g. {key}=500, {key}=2ep or {key}=0.5dur"
