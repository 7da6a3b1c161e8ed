"""Check command-line overrides before Hydra composes: an unknown key gets "did you mean".

Hydra answers `trainer.epoch=3` with "Key 'epoch' is not in struct" and advises
`+trainer.epoch=3`, which then adds a key nothing reads. Here every key override is checked
against the config it will land in (composed with the same group choices, each option of a
swept group in turn), with or without `+`. A `+key` under a node with a `_target_` is a new
constructor argument and passes; `trainer.config.build.check_keys` checks it against the target.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from omegaconf import OmegaConf

from trainer.config.errors import ConfigError
from trainer.config.location import CONF


def check_overrides(config_name, args, app):
    """Raise a ConfigError for the first key override that names no key of the config."""
    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in args):
        return  # --help, --cfg job, ...: Hydra's own flags, nothing to train
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    args = [a for a in args if a not in ("-m", "--multirun")]
    try:
        overrides = parser.parse_overrides(args)
    except Exception:
        _syntax_error(parser, args)
        return  # not one argument alone: Hydra reports it
    searchpath = [o for o in overrides if o.key_or_group == "hydra.searchpath"]
    folders = [CONF, *_folders(searchpath)]
    for o in overrides:
        if o.key_or_group in ("hydra.run.dir", "hydra.sweep.dir"):
            _check_output_folder(o.key_or_group, o.value())
    overrides = [o for o in overrides if not o.is_hydra_override() and not o.is_delete()]
    groups = [o for o in overrides if any((f / o.key_or_group).is_dir() for f in folders)]
    for o in groups:
        _check_options(o, app, folders, config_name)
    _check_yaml(config_name, groups, folders)
    keys = [o for o in overrides if o not in groups]
    if not keys:
        return
    extra = [f"hydra.searchpath={o.get_value_element_as_str()}" for o in searchpath]
    # The usual case, settled by one composition: keys that exist, values of their type.
    # A `+key` may add a key nothing reads, so it always gets the checks below.
    adds = any(o.is_add() or o.is_force_add() for o in keys)
    if not adds and _refusal(config_name, groups, keys, extra, all_keys=True) is None:
        return
    known = _known_keys(config_name, groups, extra)
    if known is None:
        return  # the groups do not compose: Hydra reports why
    paths, targets = known
    for o in keys:
        key = o.key_or_group
        parent = _parent(key)
        if key in paths and o.is_add():
            raise ConfigError(
                f"+{key} adds a key, but {key} exists already",
                fix=f"set it without the +: {key}={o.get_value_element_as_str()}",
            )
        if key in paths or any(key.startswith(f"{p}.") for p in paths if paths[p] == "list"):
            continue
        if (o.is_add() or o.is_force_add()) and parent in targets:
            continue
        # By the last name: the closest sibling first (trainer.epoch -> trainer.epochs),
        # then the same name anywhere (+epochs -> trainer.epochs).
        name = key.rsplit(".", 1)[-1]
        siblings = [p for p in paths if _parent(p) == parent]
        others = [p for p in paths if p != parent and p not in siblings]
        close = _closest(name, siblings, 0.6) or _closest(name, others, 0.8)
        hint = f"did you mean {close[0]}?" if close else "no key of that name exists"
        fix = f"{app} --cfg job prints every key; {app} --help lists the groups"
        if parent in targets and not close:
            fix = f"to pass a new argument to {parent}'s class, add it with +{key}=<value>"
        raise ConfigError(f"{key} is not a config key ({hint})", fix=fix)
    _check_types(config_name, groups, keys, extra)


def _check_types(config_name, groups, keys, extra=()):
    """A value of the wrong type for a typed key (`trainer.epochs=abc`): OmegaConf refuses it
    as Hydra composes; say it with the key's rule (`trainer.config.settings`), as a value of
    the right type that breaks the rule is said."""
    from trainer.config import settings

    typed = [o for o in keys if settings.rule_for(o.key_or_group) is not None]
    refused = _refusal(config_name, groups, typed, extra)
    if refused is None:
        return
    key, value, err = refused
    rule = settings.rule_for(key) if key is not None else None
    if rule is None:
        return  # something else: Hydra reports it
    raise ConfigError(settings.problem(key, rule.text, value), fix=f"{key}=<{rule.text}>") from err


def _refusal(config_name, groups, keys, extra=(), all_keys=False):
    """Compose with the key overrides `keys` (each value of a swept key in turn): None if
    every composition succeeds, else (the refused key, its value, the error), the key being
    the one OmegaConf names (None where it names none). With `all_keys`, a sweep that
    cannot be listed (`interval(...)`) counts as a refusal: the caller checks it otherwise."""
    from hydra import compose, initialize_config_dir

    if not keys:
        return None
    given = {}
    for o in keys:
        try:
            given[o.key_or_group] = (
                _options(o) if o.is_sweep_override() else [o.get_value_element_as_str()]
            )
        except Exception:  # a range or interval: no values to list
            if all_keys:
                return (None, None, None)
    base = [*extra, *(_choice(o.key_or_group, _options(o)[0]) for o in groups)]
    first = {key: values[0] for key, values in given.items()}
    variants = [first] + [
        {**first, key: value} for key, values in given.items() for value in values[1:]
    ]
    for variant in variants:
        try:
            with initialize_config_dir(str(CONF), version_base="1.3"):
                compose(config_name, overrides=[*base, *(f"{k}={v}" for k, v in variant.items())])
        except Exception as err:
            key = _refused_key(err)
            return (key, variant.get(key), err)
    return None


def _refused_key(err):
    """The `full_key` of the OmegaConf ValidationError behind `err`, or None."""
    from omegaconf.errors import ValidationError

    while err is not None:
        if isinstance(err, ValidationError):
            return err.full_key
        err = err.__cause__ or err.__context__
    return None


def _syntax_error(parser, args):
    """Raise a ConfigError naming the first argument Hydra's grammar refuses, with the fix
    (Hydra's own message is a parser exception with a caret, and a traceback hint)."""
    for arg in args:
        try:
            parser.parse_overrides([arg])
        except Exception as err:
            key, _, value = arg.partition("=")
            detail = str(err).strip().splitlines()[0][:200]
            # Letters beyond ASCII, and spaces, need quotes in Hydra's grammar.
            if any(not c.isascii() or c.isspace() for c in value):
                fix = (
                    f"quote the value for Hydra, and the whole for the shell: "
                    f"'{key}=\"{value}\"' (docs: hydra.cc override grammar)"
                )
            else:
                fix = "see https://hydra.cc/docs/advanced/override_grammar/basic/"
            raise ConfigError(
                f"{arg!r} is not an override Hydra can read ({detail})", fix=fix
            ) from err


def _check_output_folder(key, value):
    """The run (or sweep) folder can be made: Hydra makes it before any code of ours runs,
    and a folder it cannot make is two chained tracebacks there."""
    if not isinstance(value, str) or "${" in value:
        return  # resolved by Hydra at run time (${now:...}): checked when it is made
    folder = Path(value).expanduser().absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    fix = f"choose a folder you can write: {key}=PATH (e.g. under your home or the project)"
    if existing.is_dir() and existing == folder:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}={value}: the folder is read-only for this user", fix=fix)
        return
    if not existing.is_dir():
        raise ConfigError(f"{key}={value}: {existing} is a file, not a folder", fix=fix)
    # Made and removed again, exactly as deep as it was missing: the only reliable test
    # (/proc and read-only mounts refuse what access(2) allows root).
    made = []
    try:
        for part in reversed(
            [folder, *folder.parents][: len(folder.parents) - len(existing.parents)]
        ):
            part.mkdir()
            made.append(part)
    except OSError as err:
        raise ConfigError(
            f"{key}={value}: the folder cannot be made ({err.strerror}: {err.filename})", fix=fix
        ) from err
    finally:
        for part in reversed(made):
            part.rmdir()


def _check_yaml(config_name, groups, folders):
    """The primary config and each chosen option's file are valid YAML: Hydra's answer to a
    syntax error is PyYAML's traceback (the file and line are deep inside it)."""
    import yaml

    files = [f / f"{config_name}.yaml" for f in folders]
    for o in groups:
        for option in (o for choice in _options(o) for o in _as_list(choice)):
            files += [f / o.key_or_group / f"{option}.yaml" for f in folders]
    for path in files:
        if not path.is_file():
            continue
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            context = getattr(err, "context", None)
            detail = f"{context}: {problem}" if context else problem
            raise ConfigError(
                f"{where}: not valid YAML ({detail})",
                fix="correct the file there (a missing ] or }, a tab, an unquoted ': ' in "
                'a value); python -c "import yaml,sys; yaml.safe_load(open(sys.argv[1]))" '
                "FILE checks it",
            ) from err


def _parent(path):
    """`trainer` for `trainer.epochs`, "" for a top-level key."""
    return path.rsplit(".", 1)[0] if "." in path else ""


def _closest(name, candidates, cutoff):
    """The candidate path whose last name is closest to `name`, as a one-item list (or [])."""
    by_name = {}
    for path in candidates:
        by_name.setdefault(path.rsplit(".", 1)[-1], path)
    found = difflib.get_close_matches(name, list(by_name), n=1, cutoff=cutoff)
    return [by_name[found[0]]] if found else []


def _folders(searchpath):
    """The config folders a `hydra.searchpath=[file://...]` override adds (pkg:// is not
    looked into: Hydra reports its own options there)."""
    found = []
    for o in searchpath:
        value = o.value()
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, str) and entry.startswith("file://"):
                found.append(Path(entry[len("file://") :]))
    return found


# Groups whose options each choose an option of another group: `mode=lr_find` is
# `task=lr_find` (conf/mode/, the task's name before tasks were a group).
ALIASES = {"mode": "task"}


def _check_options(override, app, folders=(CONF,), config_name="train"):
    group = override.key_or_group
    available = sorted({p.stem for f in folders for p in (f / group).glob("*.yaml")})
    chosen = [o for option in _options(override) for o in _as_list(option)]
    for option in chosen:
        if option != "null" and option not in available:
            close = difflib.get_close_matches(option, available, n=1, cutoff=0.6)
            hint = f"did you mean {group}={close[0]}? " if close else ""
            if group in ALIASES:
                default = _default_choice(config_name, ALIASES[group], folders)
                ordered = sorted(available, key=lambda o: o != default)
                raise ConfigError(
                    f"{group} must be {' or '.join(ordered)} ({hint}{group}={option} is "
                    f"{ALIASES[group]}={option}, and there is no such {ALIASES[group]}). "
                    f"Received: {group}={option}",
                    fix=f"{app} --help lists every group and option",
                )
            raise ConfigError(
                f"{group}={option}: no such option ({hint}{group} takes {', '.join(available)})",
                fix=f"{app} --help lists every group and option",
            )


def _default_choice(config_name, group, folders):
    """The option of `group` that the primary config's defaults list chooses, or None."""
    import yaml

    for folder in folders:
        path = folder / f"{config_name}.yaml"
        if path.is_file():
            for entry in yaml.safe_load(path.read_text()).get("defaults", []):
                if isinstance(entry, dict) and group in entry:
                    return entry[group]
    return None


def _known_keys(config_name, groups, extra=()):
    """{dotted path: "node"|"list"|"value"} and the set of paths with a `_target_`."""
    from hydra import compose, initialize_config_dir

    choices = [(o.key_or_group, _options(o)) for o in groups]
    base = [_choice(group, options[0]) for group, options in choices]
    variants = [base]
    for i, (group, options) in enumerate(choices):
        variants += [[*base[:i], _choice(group, option), *base[i + 1 :]] for option in options[1:]]
    variants = [[*extra, *variant] for variant in variants]
    paths, targets = {}, set()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            for variant in variants:
                cfg = compose(config_name, overrides=variant)
                _walk(OmegaConf.to_container(cfg, resolve=False), "", paths, targets)
    except Exception:
        return None
    return paths, targets


def _options(override):
    """The options an override chooses: one per sweep value; a list (`sink=[csv,mlflow]`)
    is one choice of several options."""
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    value = override.value()
    if isinstance(value, list):
        return [[str(v) for v in value]]
    return ["null" if value is None else str(value)]


def _as_list(option):
    return option if isinstance(option, list) else [option]


def _choice(group, option):
    """The override that makes `option` (one name, or a list of names) the group's choice."""
    if isinstance(option, list):
        return f"{group}=[{','.join(option)}]"
    return f"{group}={option}"


def _walk(node, prefix, paths, targets):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths[path] = "node"
            if "_target_" in value:
                targets.add(path)
            _walk(value, f"{path}.", paths, targets)
        else:
            paths[path] = "list" if isinstance(value, list) else "value"
