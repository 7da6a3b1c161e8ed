"""The typed settings of `conf/trainer`, `conf/tracking` and `conf/lr_find`: their schema.

Each group's YAML starts from the dataclass stored here in Hydra's ConfigStore (`defaults:
[settings, _self_]`), so OmegaConf itself refuses a key that does not exist and a value of
the wrong type (`trainer.epochs=abc`) while Hydra composes. What a type cannot say (a range,
a choice) is the field's `Rule`, next to it; `check(cfg)` applies every rule and reports each
bad value in one line: "trainer.epochs must be a whole number >= 1. Received: ...". The same
rule's text answers a type error (`rule_for`), so both read alike.

No TensorFlow, no Keras: these run before anything heavy is imported.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from schedules.choices import RANGE_TEST_SWEEPS
from trainer.choices import JIT_COMPILE, MODELS, SUGGESTION_RULES


@dataclass(frozen=True)
class Rule:
    """A value's rule: `test(value)` and what it says (`"a whole number >= 1"`)."""

    text: str
    test: Callable[[Any], bool]

    def __call__(self, value):
        return self.test(value)


def whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def either(choices):
    """ "a, b or c" """
    choices = [str(c).lower() if isinstance(c, bool) else str(c) for c in choices]
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


def at_least(low):
    return Rule(f"a whole number >= {low}", lambda v: whole(v) and v >= low)


def above(low):
    return Rule(f"a number > {low:g}", lambda v: number(v) and v > low)


def one_of(choices):
    return Rule(either(choices), lambda v: v in choices)


def optional(rule):
    return Rule(f"null or {rule.text}", lambda v: v is None or rule(v))


def length(example):
    """A length: whole steps, or a string with its unit (checked by trainer.config.lengths)."""
    return Rule(
        f"null, a whole number of steps >= 1 or a length such as {example}",
        lambda v: v is None or (whole(v) and v >= 1) or isinstance(v, str),
    )


ANY_WHOLE = Rule("a whole number", whole)
FLAG = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("text", lambda v: isinstance(v, str))


def setting(rule):
    """A field with its rule beside it. Its value comes from the group's YAML, where the
    comments are (`???` here: OmegaConf's "missing", so no default is stated twice)."""
    return field(default=MISSING, metadata={"rule": rule})


@dataclass
class TrainerSettings:
    """`trainer.*` (conf/trainer/default.yaml says what each does)."""

    epochs: int = setting(at_least(1))
    batch_size: int = setting(at_least(1))
    eval_batch_size: int = setting(at_least(1))
    limit_train_batches: int | None = setting(optional(at_least(1)))
    seed: int = setting(ANY_WHOLE)
    early_stopping_patience: int | None = setting(optional(at_least(0)))
    checkpoint: bool = setting(FLAG)
    checkpoint_every: Any = setting(length("'1ep'"))  # steps or a length with a unit
    resume: bool = setting(FLAG)
    test_every: Any = setting(length("'0.25ep'"))
    steps_per_execution: int = setting(at_least(1))
    jit_compile: Any = setting(one_of(JIT_COMPILE))  # "auto" or a bool
    divergence_factor: float | None = setting(optional(above(1)))
    models: str = setting(one_of(MODELS))
    threads: int | None = setting(optional(at_least(1)))


@dataclass
class TrackingSettings:
    """`tracking.*` (conf/tracking/default.yaml)."""

    experiment: str = setting(TEXT)
    uri: str = setting(TEXT)
    flush_every_steps: int = setting(at_least(1))
    strict: bool = setting(FLAG)


@dataclass
class LrFindSettings:
    """`lr_find.*` (conf/lr_find/default.yaml); `max_lr > min_lr` is checked across keys."""

    min_lr: float = setting(Rule("> 0", lambda v: number(v) and v > 0))
    max_lr: float = setting(Rule("a number", number))
    num_steps: int = setting(at_least(2))
    sweep: str = setting(one_of(RANGE_TEST_SWEEPS))
    smoothing: float = setting(Rule("in [0, 1)", lambda v: number(v) and 0 <= v < 1))
    divergence_factor: float = setting(Rule("> 1", lambda v: number(v) and v > 1))
    suggestion: str = setting(one_of(SUGGESTION_RULES))


# The groups these are the schema of: {group: settings class}.
SCHEMAS = {"trainer": TrainerSettings, "tracking": TrackingSettings, "lr_find": LrFindSettings}
SCHEMA_NAME = "settings"  # each group's YAML lists it first in its defaults


def register():
    """Store each schema as `<group>/settings` in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(group=group, name=SCHEMA_NAME, node=schema)


def rule_for(key):
    """The Rule of a dotted key (`trainer.epochs`), or None where no schema has it."""
    group, _, name = key.partition(".")
    schema = SCHEMAS.get(group)
    if schema is None:
        return None
    found = {f.name: f for f in dataclasses.fields(schema)}.get(name)
    return found.metadata.get("rule") if found is not None else None


def problem(key, rule_text, value):
    """The one line every bad value gets."""
    return f"{key} must be {rule_text}. Received: {key}={value!r}"


def check(cfg):
    """Every bad value of the typed groups of the composed `cfg`, as lines (see `problem`)."""
    problems = []
    for group, schema in SCHEMAS.items():
        node = cfg.get(group)
        if node is None:
            continue
        for f in dataclasses.fields(schema):
            rule, value = f.metadata["rule"], node.get(f.name)
            if not rule(value):
                problems.append(problem(f"{group}.{f.name}", rule.text, value))
    return problems
